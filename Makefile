# Thin wrappers around scripts/ and go; the scripts work on their own too.

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
FUZZTIME ?= 1m
IMAGE    ?= lockerd

export VERSION REVISION

.PHONY: build demo test bench fuzz docker clean

## build: bin/lockerd and bin/lockerctl, version stamped
build:
	./scripts/build

## demo: install what is needed, build, run a demo lockerd on tcp://127.0.0.1:7777
demo:
	./scripts/demo

## test: everything CI runs (deps, gofmt, vet, race tests, short fuzz)
test:
	./scripts/test

## bench: the benchmarks (scripts/bench when there is one)
bench:
	@if [ -x scripts/bench ]; then ./scripts/bench; \
	else go test -run '^$$' -bench . -benchmem ./...; fi

## fuzz: every fuzz target for FUZZTIME each (make fuzz FUZZTIME=5m)
fuzz:
	./scripts/fuzz $(FUZZTIME)

## docker: the runtime image $(IMAGE):$(VERSION), also tagged latest
docker:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):latest .

clean:
	rm -rf bin
