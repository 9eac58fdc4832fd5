#!/usr/bin/env bash
# bench/run.sh: builds lockerd, lockerctl and the benchmark programs,
# starts redis-server, the raw ZeroMQ echo server, lockerd, and three
# federated lockerd when lockerd has --peer, all on loopback; runs every
# comparison as alternating rounds A B A B ... so drift on a shared machine
# cancels out, and writes the table to bench/RESULTS.md.
#
# It then times `lockerctl probe` as a whole process beside `redis-cli`
# making the same Lua call (hyperfine, when installed), sweeps 1 to 256
# goroutines against lockerd, Redis and the echo server and draws them
# (bench/plot: bench/scaling.svg), and measures what scale costs
# (bench/scale: the scale table). The section "Algorithms and keys"
# compares sliding and gcra keys with fixed ones through the Go client,
# and measures keys made on demand at 1,000,000 live keys (bench/scale
# -steps ondemand, and BenchmarkTemplateDecision1M); a failed measurement
# of it stops the run with status 1 before anything is written.
#
#   bench/run.sh                 # 3 rounds of 3 s per configuration
#   DUR=5s ROUNDS=5 bench/run.sh
#   LOCKS=1 bench/run.sh         # also locks vs Redis, etcd and ZooKeeper
#                                # (bench/lockcmp; see scripts/lockbench)
#   SWEEP_DUR=1s SCALE=0 bench/run.sh   # shorter sweep, no scale table
#   SCALE_ARGS="-idle 1000 -keys 10000" bench/run.sh   # flags of bench/scale
#   ALGS=0 bench/run.sh          # no "Algorithms and keys" section
#   ALG_BENCHTIME=1s bench/run.sh   # -benchtime of BenchmarkTemplateDecision1M
#   ALG_DUR=2s ALG_ROUNDS=5 bench/run.sh   # the algorithms' client rounds
#                                # (default 1s, 3 x ROUNDS)
#   BASE=main bench/run.sh       # also the Go client of git revision BASE
#                                # against this one, in the same rounds
#
# With the defaults it takes about 7 minutes on 2 cores (2 of them for
# "Algorithms and keys", which ALGS=0 skips). Every process it
# starts is stopped on exit.
set -euo pipefail

DUR=${DUR:-3s}
ROUNDS=${ROUNDS:-3}
LOCKS=${LOCKS:-}
SWEEP_DUR=${SWEEP_DUR:-1s}
SCALE=${SCALE:-1}
ALGS=${ALGS:-1}
ALG_DUR=${ALG_DUR:-1s}
ALG_ROUNDS=${ALG_ROUNDS:-$((3 * ROUNDS))}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
BIN=$WORK/bin
OUT=${OUT:-$ROOT/bench/RESULTS.md}
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "bench: $*" >&2; }

cd "$ROOT"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "building"
mkdir -p "$BIN"
go build -o "$BIN/" ./cmd/lockerd ./cmd/lockerctl ./bench/load ./bench/echo ./bench/report
(cd bench/redislimit && go build -o "$BIN/redislimit" .)
if [ -n "$LOCKS" ]; then
	(cd bench/lockcmp && go build -o "$BIN/lockcmp" .)
fi
(cd bench/plot && go build -o "$BIN/plot" .)
if [ -n "${BASE:-}" ]; then
	# lockerctl as of git revision BASE, to compare the Go client before
	# and after a change against the same server in the same rounds.
	mkdir -p "$WORK/base"
	git archive "$BASE" | tar -x -C "$WORK/base"
	(cd "$WORK/base" && go build -o "$BIN/base-lockerctl" ./cmd/lockerctl)
fi
go build -o "$BIN/" ./bench/scale

# start NAME CMD...: runs CMD in the background; it prints its endpoint on
# its first line of stdout, which is returned in $EP.
start() {
	local name=$1
	shift
	"$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
	PIDS+=($!)
	for _ in $(seq 100); do
		if [ -s "$WORK/$name.out" ]; then
			EP=$(head -n1 "$WORK/$name.out")
			return 0
		fi
		sleep 0.05
	done
	log "$name did not start:"; cat "$WORK/$name.err" >&2
	exit 1
}

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
	>"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
	redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
	sleep 0.05
done
start echo "$BIN/echo" -endpoint 'tcp://127.0.0.1:*'
ECHO=$EP

# lockerd NAME ARGS...: starts lockerd on a free port with the key bench
# (no sorry: the benchmark measures deciding, not refusing) and waits until
# it answers a ping; its endpoint is returned in $EP.
lockerd() {
	local name=$1
	shift
	EP=tcp://127.0.0.1:$(free_port)
	"$BIN/lockerd" --id "$name" --bind "$EP" --key bench=1000000000/1s \
		--metrics-addr "" --log-level warn "$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do
		"$BIN/lockerctl" ping -s "$EP" --timeout 100ms >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	log "$name did not start:"; cat "$WORK/$name.log" >&2
	exit 1
}
lockerd single
LOCKERD=$EP
log "redis 127.0.0.1:$REDIS_PORT, echo $ECHO, lockerd $LOCKERD"

FED=""
if "$BIN/lockerd" --help 2>&1 | grep -q -- '--peer'; then
	PUBS=()
	for i in 1 2 3; do PUBS+=("tcp://127.0.0.1:$(free_port)"); done
	PEERS=()
	for p in "${PUBS[@]}"; do PEERS+=(--peer "$p"); done
	for i in 1 2 3; do
		lockerd "fed$i" --publish "${PUBS[$((i - 1))]}" "${PEERS[@]}"
		[ "$i" = 1 ] && FEDERATED=$EP
	done
	log "federation: lockerd fed1 $FEDERATED with peers ${PUBS[*]}"
else
	FED="n/a (federation not built: lockerd has no --peer)"
fi

RES=$WORK/results.jsonl
# measure NAME CMD...: one run, its JSON summary labelled NAME.
measure() {
	local name=$1
	shift
	"$@" -d "$DUR" -json -name "$name" >>"$RES"
	log "$(tail -n1 "$RES")"
}

# bench NAME ARGS...: one lockerctl bench run (the Go client), labelled NAME.
bench() {
	local name=$1
	shift
	"$BIN/lockerctl" bench -k bench -d "$DUR" --json "$@" | sed "s/^{/{\"name\":\"$name\",/" >>"$RES"
	log "$(tail -n1 "$RES")"
}

# base C: with BASE set, the Go client of revision BASE with C goroutines,
# measured just before this one's, so that the two are side by side.
base() {
	[ -n "${BASE:-}" ] || return 0
	"$BIN/base-lockerctl" bench -k bench -c "$1" -d "$DUR" --json -s "$LOCKERD" |
		sed "s/^{/{\"name\":\"$BASE client c=$1\",/" >>"$RES"
	log "$(tail -n1 "$RES")"
}

for r in $(seq "$ROUNDS"); do
	log "round $r of $ROUNDS"
	measure "redis c=1" "$BIN/redislimit" -addr "127.0.0.1:$REDIS_PORT" -c 1
	base 1
	bench "lockerd client c=1" -c 1 -s "$LOCKERD"
	measure "echo REQ c=1" "$BIN/load" -mode req -c 1 -endpoint "$ECHO"
	measure "redis c=64" "$BIN/redislimit" -addr "127.0.0.1:$REDIS_PORT" -c 64
	base 64
	bench "lockerd client c=64" -c 64 -s "$LOCKERD"
	measure "echo REQ x64" "$BIN/load" -mode req -c 64 -endpoint "$ECHO"
	measure "lockerd REQ x64" "$BIN/load" -mode req -c 64 -endpoint "$LOCKERD"
	measure "echo DEALER 1x32" "$BIN/load" -mode dealer -c 1 -inflight 32 -endpoint "$ECHO"
	measure "lockerd DEALER 1x32" "$BIN/load" -mode dealer -c 1 -inflight 32 -endpoint "$LOCKERD"
	measure "echo DEALER 4x64" "$BIN/load" -mode dealer -c 4 -inflight 64 -endpoint "$ECHO"
	measure "lockerd DEALER 4x64" "$BIN/load" -mode dealer -c 4 -inflight 64 -endpoint "$LOCKERD"
	if [ -z "$FED" ]; then
		bench "single c=64" -c 64 -s "$LOCKERD"
		bench "federated c=64" -c 64 -s "$FEDERATED"
	fi
done

# Algorithms and keys. Decisions/s through the Go client at 64 goroutines
# on a sliding and a gcra key against a fixed one of the same limit, on
# one lockerd, taking turns in each round. The limit, 100,000 per 100ms,
# is the largest a sliding key may have (MaxSlidingLimit) and ten times
# what 64 goroutines reach, so every reply must be a go: a sorry or an
# error fails the run. A sliding key then holds about 100ms of grant
# instants and drops the oldest at each take, its whole work. More
# rounds of shorter runs than the other rows (ALG_ROUNDS of ALG_DUR): the
# algorithms differ by far less than the server's cost per request, so
# the ratio is mostly the machine's noise, which a median over more
# rounds bounds better.
ALGSPEC=100000/100ms
ALGMD=$WORK/algs.md
ALGFAIL=0
alg_fail() {
	log "algorithms and keys: FAILED: $*"
	ALGFAIL=1
}
if [ "$ALGS" = 1 ]; then
	ALGRES=$WORK/algs.jsonl
	: >"$ALGRES"
	lockerd algs --key "fixed=$ALGSPEC" --key "sliding=$ALGSPEC/sliding" --key "gcra=$ALGSPEC/gcra"
	ALGEP=$EP
	for r in $(seq "$ALG_ROUNDS"); do
		log "algorithms round $r of $ALG_ROUNDS"
		for alg in fixed sliding gcra; do
			if ! out=$("$BIN/lockerctl" bench -k "$alg" -c 64 -d "$ALG_DUR" --json -s "$ALGEP"); then
				alg_fail "lockerctl bench -k $alg failed"
				continue
			fi
			echo "$out" | sed "s/^{/{\"name\":\"$alg c=64\",/" >>"$ALGRES"
			log "$(tail -n1 "$ALGRES")"
			if ! /usr/bin/python3 -c 'import json, sys; s = json.loads(sys.argv[1]); sys.exit(s["sorry"] + s["errors"] > 0 or s["go"] == 0)' "$out"; then
				alg_fail "lockerctl bench -k $alg: a sorry, an error or no go at all (key $alg=$ALGSPEC): $out"
			fi
		done
	done
	# Keys made on demand: the heap per live key and a decision on one of
	# them against one on a configured key, in one Go benchmark; the RSS
	# per live key of a real lockerd (bench/scale).
	log "algorithms: go test -bench BenchmarkTemplateDecision1M"
	GOBENCH=$WORK/template1m.txt
	if ! go test -run '^$' -bench 'TemplateDecision1M/.*/(conf|live|r[0-9])' -benchtime "${ALG_BENCHTIME:-300ms}" -benchmem ./locker/ >"$GOBENCH" 2>&1; then
		tail -n 20 "$GOBENCH" >&2
		alg_fail "go test -bench BenchmarkTemplateDecision1M failed"
	fi
	log "algorithms: bench/scale -steps ondemand"
	ONDEMAND=$WORK/ondemand.jsonl
	if ! "$BIN/scale" -bin "$BIN" -steps ondemand -live-algs fixed,sliding,gcra -json "$ONDEMAND" >/dev/null; then
		alg_fail "bench/scale -steps ondemand failed"
	fi
	if [ "$ALGFAIL" = 0 ]; then
		"$BIN/report" \
			"sliding vs fixed, Go client, 64 goroutines|fixed c=64|sliding c=64|>= 0.95" \
			"gcra vs fixed, Go client, 64 goroutines|fixed c=64|gcra c=64|>= 0.95" \
			<"$ALGRES" >"$WORK/algclient.md" || alg_fail "bench/report failed on $ALGRES"
		/usr/bin/python3 - "$GOBENCH" "$ONDEMAND" "${ALG_BENCHTIME:-300ms}" >"$WORK/algkeys.md" <<'PY' || alg_fail "no table of the keys made on demand (see above)"
import json, re, statistics, sys
bench, ondemand, benchtime = sys.argv[1:4]
# BenchmarkTemplateDecision1M/ALG/{conf,live,rN/pairs}-P  N  V ns/op  V UNIT ...
plain, pairs = {}, {}
line_re = re.compile(r"^BenchmarkTemplateDecision1M/(\w+)/(conf|live|r(\d+)/pairs)(?:-\d+)?\s+\d+\s+(.*)$")
for line in open(bench):
    m = line_re.match(line.strip())
    if not m:
        continue
    f = m.group(4).split()
    metrics = {f[i + 1]: float(f[i]) for i in range(0, len(f) - 1, 2)}
    if m.group(3):
        pairs.setdefault(m.group(1), []).append(metrics)
    else:
        plain.setdefault(m.group(1), {})[m.group(2)] = metrics
rss = {}
for line in open(ondemand):
    if line.strip():
        d = json.loads(line)
        rss[d["algorithm"]] = d
algs = ("fixed", "sliding", "gcra")
bad = [a for a in algs if a not in rss or set(plain.get(a, {})) != {"conf", "live"} or len(pairs.get(a, [])) != 3
       or any(k not in p for p in pairs[a] for k in ("live/conf", "conf-ns/decision", "live-ns/decision", "allocs/op"))]
if bad:
    sys.exit("missing figures for %s in %s or %s" % (", ".join(bad), bench, ondemand))
med = statistics.median
print("Keys made on demand, with 1,000,000 of them live: the heap per live key from")
print("`go test -run '^$' -bench 'TemplateDecision1M/.*/(conf|live|r[0-9])' -benchtime %s -benchmem ./locker/`" % benchtime)
print("(a Counter with the template `t:*=1000/1ms/ALG` and 1,000,000 keys made by a take each; HeapAlloc after")
print("and before, after a GC), and the RSS per live key of a real lockerd from")
print("`bench/scale -steps ondemand` (`--key '%s'`, one take of each of 1,000,000 keys over a" % rss["fixed"]["spec"].replace("/fixed", "/ALG"))
print("pipelined DEALER socket; VmRSS before and after, with `status` counting the live keys; it includes the")
print("allocator's slack, which the heap figure does not).")
print()
print("| algorithm | heap per live key | RSS per live key | keys made per second | target |")
print("|---|---:|---:|---:|---|")
for a in algs:
    r = rss[a]
    heap = plain[a]["live"]["bytes/key"]
    target = "≤ 256 bytes per key: heap **%.2f**x of it, RSS %.2fx" % (heap / 256, r["rss_bytes_per_key"] / 256) if a == "fixed" else "- (reported)"
    print("| %s | %.1f bytes | %.0f bytes (%.1f MiB → %.1f MiB) | %.0f | %s |" % (
        a, heap, r["rss_bytes_per_key"], r["rss_before_bytes"] / 2**20, r["rss_after_bytes"] / 2**20,
        r["keys_made_per_second"], target))
print()
print("A decision on a key made on demand among the 1,000,000 live (B) against one on a configured key of")
print("the same spec (A), in the same Go benchmark (the clock 2µs on per take, every decision a go, both keys")
print("warmed first). The two alternate in blocks of 256 decisions, A then B; B/A is the median over the")
print("pairs of blocks of the time of B's block over A's, in each of 3 rounds; the ns are the medians of the")
print("blocks' ns per decision (median over the rounds). The allocations are those of every round and of")
print("runs of A alone and B alone.")
print()
print("| algorithm | A: configured key, ns/decision | B: key made on demand, ns/decision | B/A per round (median [min..max]) | allocs/op B (A) | target |")
print("|---|---:|---:|---:|---:|---|")
for a in algs:
    ps = pairs[a]
    ratios = sorted(p["live/conf"] for p in ps)
    allocs_pairs = max(p["allocs/op"] for p in ps)
    print("| %s | %.1f | %.1f | **%.2f** [%.2f..%.2f] | %.0f (%.0f) | ≤ 1.2, 0 allocs |" % (
        a, med(p["conf-ns/decision"] for p in ps), med(p["live-ns/decision"] for p in ps),
        med(ratios), ratios[0], ratios[-1],
        max(allocs_pairs, plain[a]["live"]["allocs/op"]), max(allocs_pairs, plain[a]["conf"]["allocs/op"])))
PY
	fi
	if [ "$ALGFAIL" = 0 ]; then
		{
			echo "Decisions/s through one Go client shared by 64 goroutines (\`lockerctl bench -k KEY -c 64 -d $ALG_DUR\`, $ALG_ROUNDS rounds),"
			echo "against one lockerd with \`--key fixed=$ALGSPEC --key sliding=$ALGSPEC/sliding --key gcra=$ALGSPEC/gcra\`:"
			echo "the same limit, the largest a sliding key may have, ten times what the goroutines reach, so every"
			echo "reply is a go (the run fails on a sorry). Each round runs fixed, sliding, gcra in turn."
			echo
			cat "$WORK/algclient.md"
			echo
			cat "$WORK/algkeys.md"
		} >"$ALGMD"
	fi
	if [ "$ALGFAIL" = 1 ]; then
		log "algorithms and keys: a measurement failed (see the FAILED lines above); $OUT is left as it was"
		exit 1
	fi
else
	echo "Not measured in this run (ALGS=0)." >"$ALGMD"
fi

# Locks: bench/lockcmp starts its own Redis, etcd, ZooKeeper and lockerd.
# Its section is left out when lockerd does not serve locks (status 3).
LOCKMD=""
if [ -n "$LOCKS" ]; then
	log "locks: bench/lockcmp"
	rc=0
	"$BIN/lockcmp" -lockerd "$BIN/lockerd" -echo "$BIN/echo" -d "$DUR" -rounds "$ROUNDS" -o "$WORK/locks.md" >&2 || rc=$?
	case $rc in
	0) LOCKMD=$WORK/locks.md ;;
	3) log "locks: lockerd does not serve locks: no lock section in $OUT" ;;
	*)
		log "locks: lockcmp failed (status $rc)"
		exit 1
		;;
	esac
fi

FED=${FED:-">= 0.80"}

# lockerctl probe as a whole process (start, connect, one take, exit), as
# a shell calls it, beside redis-cli making the same Lua call as
# bench/redislimit; hyperfine runs each RUNS times, A then B, per round.
PROBE=$WORK/probe.md
LUA="local n = redis.call('INCRBY', KEYS[1], ARGV[1]) if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end if n > tonumber(ARGV[3]) then return 0 end return 1"
if command -v hyperfine >/dev/null 2>&1; then
	for r in $(seq "$ROUNDS"); do
		log "probe round $r of $ROUNDS"
		hyperfine -N --style none --warmup 10 --runs "${PROBE_RUNS:-200}" --export-json "$WORK/probe$r.json" \
			-n redis-cli "redis-cli -p $REDIS_PORT EVAL \"$LUA\" 1 probe 1 1000 1000000000" \
			-n "lockerctl probe" "$BIN/lockerctl probe -k bench -s $LOCKERD" \
			-n "lockerctl --version" "$BIN/lockerctl --version" >/dev/null
	done
	/usr/bin/python3 - "$WORK"/probe*.json >"$PROBE" <<'PY'
import json, statistics, sys
rows = {}
ratios = []
for f in sys.argv[1:]:
    res = {r["command"]: r for r in json.load(open(f))["results"]}
    for name, r in res.items():
        rows.setdefault(name, []).append(r)
    ratios.append(statistics.median(res["lockerctl probe"]["times"]) / statistics.median(res["redis-cli"]["times"]))
print("| command | median ms | mean ms | min ms | user ms | system ms |")
print("|---|---:|---:|---:|---:|---:|")
for name in ("redis-cli", "lockerctl probe", "lockerctl --version"):
    rs = rows[name]
    med = lambda k: statistics.median(r[k] for r in rs) * 1e3
    print("| `%s` | %.2f | %.2f | %.2f | %.2f | %.2f |" % (name, statistics.median(statistics.median(r["times"]) for r in rs) * 1e3, med("mean"), min(r["min"] for r in rs) * 1e3, med("user"), med("system")))
ratios.sort()
print()
print("lockerctl probe / redis-cli, median time per round: **%.2f** [%.2f..%.2f] (%d rounds)." % (statistics.median(ratios), ratios[0], ratios[-1], len(ratios)))
PY
else
	echo "n/a: hyperfine is not installed (apt-get install hyperfine)." >"$PROBE"
fi

# The sweep behind the chart: decisions/s and p99 against goroutines, one
# short run each, systems alternating at each point.
SWEEP=$WORK/sweep.jsonl
for c in 1 2 4 8 16 32 64 128 256; do
	log "sweep c=$c"
	"$BIN/redislimit" -addr "127.0.0.1:$REDIS_PORT" -c "$c" -d "$SWEEP_DUR" -json -name "Redis (go-redis + Lua)" >>"$SWEEP"
	"$BIN/lockerctl" bench -k bench -c "$c" -d "$SWEEP_DUR" --json -s "$LOCKERD" |
		sed 's/^{/{"name":"lockerd (Go client)",/' >>"$SWEEP"
	"$BIN/load" -mode req -c "$c" -endpoint "$ECHO" -d "$SWEEP_DUR" -json -name "raw ZeroMQ echo (REQ)" >>"$SWEEP"
done
"$BIN/plot" -o "$ROOT/bench/scaling.svg" \
	-title "loopback, $(nproc) CPUs, $SWEEP_DUR per point, $(date -u +%Y-%m-%d)" <"$SWEEP"
log "wrote bench/scaling.svg"

SCALETAB=$WORK/scale.md
if [ "$SCALE" = 1 ]; then
	log "scale (bench/scale)"
	# shellcheck disable=SC2086 # SCALE_ARGS is a list of flags
	# The keys made on demand are measured in "Algorithms and keys".
	"$BIN/scale" -bin "$BIN" -steps idle,waits,keys,fed ${SCALE_ARGS:-} >"$SCALETAB"
else
	echo "Not measured in this run (SCALE=0)." >"$SCALETAB"
fi

{
	echo "# Benchmark results"
	echo
	echo "Written by \`bench/run.sh\` (DUR=$DUR, ROUNDS=$ROUNDS) on $(date -u +%Y-%m-%d) at $(git rev-parse --short HEAD 2>/dev/null || echo unknown);"
	echo "load average before the run: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo "$(nproc) CPUs, $(uname -sr), $(go version | cut -d' ' -f3), redis $(redis-server --version | sed -n "s/.*v=\([0-9.]*\).*/\1/p")."
	echo "Loopback, separate processes. Each configuration ran $ROUNDS times, A and B alternating;"
	echo "figures are medians over rounds, the ratio is B/A per round. Absolute numbers vary with"
	echo "the machine's load; the ratios are what to compare."
	echo
	echo "Commands: \`lockerctl bench -k bench -c C -d $DUR --json -s EP\`, \`redislimit -c C\`,"
	echo "\`load -mode req -c 64\`, \`load -mode dealer -c S -inflight F\` (bench/load), against"
	echo "\`lockerd --key bench=1000000000/1s\` and the ROUTER echo server of bench/echo."
	echo
	"$BIN/report" -title "$(date -u +%Y-%m-%d), $DUR x $ROUNDS rounds, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown):" \
		"Go client, 1 goroutine vs Redis (go-redis + Lua)|redis c=1|lockerd client c=1|>= 1.0" \
		"Go client, 1 goroutine vs a bare REQ round trip to raw echo|echo REQ c=1|lockerd client c=1|p50 <= 1.15" \
		"Go client, 64 goroutines vs Redis|redis c=64|lockerd client c=64|>= 1.5, lower p99" \
		${BASE:+"Go client, 1 goroutine: $BASE vs this commit|$BASE client c=1|lockerd client c=1|-"} \
		${BASE:+"Go client, 64 goroutines: $BASE vs this commit|$BASE client c=64|lockerd client c=64|>= 1.0"} \
		"REQ lock step, 64 sockets: lockerd vs raw echo|echo REQ x64|lockerd REQ x64|>= 0.90" \
		"pipelined DEALER 1x32: lockerd vs raw echo|echo DEALER 1x32|lockerd DEALER 1x32|>= 0.85" \
		"pipelined DEALER 4x64: lockerd vs raw echo|echo DEALER 4x64|lockerd DEALER 4x64|>= 0.85" \
		"3-peer federation (Go client c=64 on one member) vs single|single c=64|federated c=64|$FED" \
		<"$RES" | tee "$WORK/table.md"
	echo
	echo "## \`lockerctl probe\` as a whole process"
	echo
	echo "\`hyperfine -N --warmup 10 --runs ${PROBE_RUNS:-200}\`, $ROUNDS rounds: \`lockerctl probe -k bench -s EP\` against"
	echo "the lockerd above, and \`redis-cli EVAL\` of the same Lua script as bench/redislimit against"
	echo "the redis-server above. Each is a new process per call, as from a shell. \`lockerctl --version\`,"
	echo "which talks to no server, is the floor: starting a Go program linked against libzmq."
	echo
	cat "$PROBE"
	echo
	echo "## Scaling with goroutines"
	echo
	echo "![decisions/s and p99 against goroutines](scaling.svg)"
	echo
	echo "One $SWEEP_DUR run per point, the three systems alternating at each point:"
	echo "\`lockerctl bench -c N\`, \`redislimit -c N\` and \`load -mode req -c N\` (one REQ socket per"
	echo "goroutine) against the raw echo server; drawn by bench/plot."
	echo
	echo "## Algorithms and keys"
	echo
	cat "$ALGMD"
	echo
	echo "## Scale"
	echo
	cat "$SCALETAB"
	echo
	echo "Raw runs (JSON lines):"
	echo
	echo '```'
	cat "$RES"
	if [ "$ALGS" = 1 ]; then cat "$ALGRES"; fi
	echo '```'
	if [ -n "$LOCKMD" ]; then
		echo
		echo "## Locks: lockerd vs Redis, etcd and ZooKeeper"
		echo
		cat "$LOCKMD"
	fi
	echo
	echo "Sweep (JSON lines):"
	echo
	echo '```'
	cat "$SWEEP"
	echo '```'
} >"$OUT"
log "wrote $OUT"

# The README shows the latest tables between its bench-table and
# scale-table markers.
if [ "$OUT" = "$ROOT/bench/RESULTS.md" ]; then
	for t in bench:"$WORK/table.md" alg:"$ALGMD" scale:"$SCALETAB"; do
		grep -q "^<!-- ${t%%:*}-table" README.md || continue
		awk -v name="${t%%:*}" -v table="${t#*:}" '
			$0 ~ "^<!-- " name "-table" { print; while ((getline l < table) > 0) print l; skip = 1; next }
			$0 ~ "^<!-- /" name "-table -->" { skip = 0 }
			!skip' README.md >"$WORK/README.md"
		cp "$WORK/README.md" README.md
		log "updated the ${t%%:*} table in README.md"
	done
fi
cat "$OUT" | sed -n '1,20p'
