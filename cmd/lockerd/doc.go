// Command lockerd is the go/sorry rate-limiting server.
//
// It answers ZeroMQ requests (`take KEY [N]`, `wait KEY [N] [MAX_MS]`,
// `ping`, `status [KEY]`, or anything else as `take default 1`) from one
// counter per key; PROTOCOL.md specifies the wire format and what each
// reply field means for each algorithm. Run `lockerd --help` for the
// flags.
//
// # Keys
//
// A key is NAME=LIMIT/WINDOW[/ALG[:BURST]][+LIMIT/WINDOW[/ALG[:BURST]]...],
// given with --key and repeatable:
//
//	lockerd --key github=5000/1h --key api=5/800ms
//
// ALG counts the tokens: fixed (the default: epoch-aligned windows),
// sliding (exact: no interval of length WINDOW holds more than LIMIT
// grants; LIMIT at most 100,000) or gcra (a token back every WINDOW/LIMIT,
// at most BURST at once, default LIMIT: api=10/1s/gcra:1 spaces requests
// 100ms apart). A key of several limits (github=10/1s+5000/1h, at most 4)
// grants from every limit or from none.
//
// A NAME ending in * is a template: --key 'tenant:*=100/1m' gives every
// key that starts with tenant: its own counter with that spec, made on
// first use and dropped once idle. A configured key wins over a template,
// the longest template over a shorter one. --max-keys (default 1,000,000)
// caps the keys made on demand that live at once: a request that would
// make one more is answered with an error, never a go, and counted in
// lockerd_keys_refused_total. Metrics and status name a key made on demand
// by its template only; `status KEY` reports one key.
//
// A shared federation (--federation shared) cannot bound sliding, gcra or
// multi-limit keys, configured or templates: lockerd refuses to start with
// one line naming them. A strict federation runs them on each member's
// static share of their limits. Keys made from a template of one fixed
// window are federated in both modes as configured fixed keys are, and
// members exchange counts only for the keys live on them.
//
// The key "default" always exists. -n/--limit and -w/--window set it
// (defaults 1 and 1s); --key default=... sets it too, but not together
// with -n or -w: that is a usage error, since the two would disagree.
//
// # Config file
//
// -c FILE reads settings from FILE, one per line:
//
//	# /etc/lockerd.conf
//	bind = tcp://*:7777
//	key  = github=5000/1h
//	key  = api=5/800ms
//	key  = tenant:*=100/1m
//	max-keys = 100000
//	max-wait = 10s
//	id = "lockerd 1"
//
// Names are the long flag names (a leading -- is allowed). Blank lines
// and lines whose first non-blank character is # are skipped; a value may
// be double-quoted, with Go escapes. A repeatable flag (bind, key, peer)
// repeats, and the file's list replaces the flag's default; any other
// setting given twice is an error naming both lines. config, version and
// help cannot be set in a file; an unknown name is an error that names
// the file and line. The file is read whole, up to 64 MiB (a larger one
// is refused), with lines of any length and a leading UTF-8 byte order
// mark skipped.
//
// # Environment
//
// Every flag can also be set with LOCKER_ and its long name in upper case
// with _ for -: LOCKER_LIMIT=5, LOCKER_MAX_WAIT=10s,
// LOCKER_CONFIG=/etc/lockerd.conf. A repeatable flag takes a
// comma-separated list (LOCKER_KEY=github=5000/1h,api=5/800ms). Set but
// empty counts as set.
//
// # Precedence
//
// The command line wins over the environment, which wins over the config
// file, which wins over the defaults. For a repeatable flag, values from a
// higher source replace those from a lower one; they are not merged.
//
// # Fail closed
//
// lockerd stops rather than serve with a part missing. Every endpoint
// (--bind, --publish, --peer) is checked when the flags are read: a tcp
// endpoint needs a host and a port, an IPv6 host goes in brackets
// (tcp://[::1]:7777), a peer cannot be *, and a published port cannot be
// picked at random. The metrics listener and the federation's PUB socket
// are bound before the request sockets, so "serving" is logged only once
// everything is bound. While serving, lockerd runs four parts (request
// server, federation node, metrics endpoint, SIGHUP reloader), each
// reporting its end on one channel: the first to end by an error, a panic
// or unasked stops the others, held waits are answered sorry, and lockerd
// exits 1 naming the part. The metrics endpoint holds at most
// metrics.MaxConns connections, so it cannot take the file descriptors
// the request sockets need.
//
// # Locks
//
// lockerd also serves leased locks (PROTOCOL.md, "Locks"). Every name is
// a mutex unless given a capacity: --lock licence=4 (a semaphore of 4, or
// a read/write lock with up to 4 readers), --lock 'job:*=2' for every
// name that starts with job: (repeatable). --lock-ttl (default 30s) and
// --lock-max-ttl (5m) bound the leases, --lock-max-wait (30s) how long an
// acquisition is held, --max-locks, --max-lock-waiters and
// --max-lock-slots the memory. For --lock-grace after a start (default
// --lock-max-ttl) no lock is granted, so that no lease given before a
// restart can still be held; --lock-grace=0 is for a first start only. A
// reload does not change lock settings: restart lockerd to apply them.
// A federated lockerd (--publish) refuses every lock request.
//
// # Exit status
//
// 0 after SIGINT or SIGTERM (held waits are answered sorry first) or for
// --help and --version; 1 when lockerd cannot serve or a part of it
// stops, e.g. an endpoint is in use or the federation fails; 2 for a bad
// flag, endpoint, key spec, environment variable or config file, reported
// in one line on stderr before anything is bound. SIGHUP re-reads the
// config file and applies the keys; an invalid file keeps the old
// configuration.
package main
