# Runtime image of lockerd and lockerctl. Build it with `make docker`, or:
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t lockerd .
#   docker run --rm -p 7777:7777 lockerd --bind 'tcp://*:7777' --key api=5/800ms
# Arguments after the image name replace CMD and go to lockerd.

# GO_VERSION must be at least the go line of go.mod: the golang images set
# GOTOOLCHAIN=local, so they do not fetch a newer toolchain.
ARG GO_VERSION=1.24

FROM golang:${GO_VERSION}-bookworm AS build
# The ZeroMQ binding is cgo: it needs the libzmq headers and a C toolchain
# (gcc and libc6-dev come with the golang image).
RUN apt-get update \
	&& apt-get install -y --no-install-recommends libzmq3-dev pkg-config \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
ENV CGO_ENABLED=1
RUN go build -trimpath \
		-ldflags "-s -w -X main.Version=${VERSION} -X main.Revision=${REVISION}" \
		-o /out/ ./cmd/lockerd ./cmd/lockerctl

FROM debian:bookworm-slim
# libzmq5 is the runtime library the binaries link against (it pulls in
# its own dependencies); ca-certificates for any TLS a later feature needs.
RUN apt-get update \
	&& apt-get install -y --no-install-recommends libzmq5 ca-certificates \
	&& rm -rf /var/lib/apt/lists/* \
	&& groupadd --system --gid 10001 lockerd \
	&& useradd --system --uid 10001 --gid lockerd --no-create-home \
		--home-dir /nonexistent --shell /usr/sbin/nologin lockerd
COPY --from=build /out/lockerd /out/lockerctl /usr/local/bin/
USER 10001:10001
# lockerctl inside the container (the health check, `docker exec ... lockerctl
# status`) talks to the local server. Change it if CMD binds another port.
ENV LOCKER_SERVER=tcp://127.0.0.1:7777
# 7777: the go/sorry protocol. 9777: metrics, when enabled.
EXPOSE 7777 9777
# ping spends no token, unlike a probe every few seconds would.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
	CMD ["lockerctl", "ping"]
ENTRYPOINT ["lockerd"]
CMD ["--bind", "tcp://*:7777"]
