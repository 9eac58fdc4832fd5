package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/lockerd/lockerd/loadstats"
)

// Exit statuses.
const (
	exitOK = 0
	// exitFailed: a server did not start, a client failed, or the run
	// was interrupted.
	exitFailed = 1
	exitUsage  = 2
	// exitNoLockerd: the table was written, but lockerd gave no figures
	// (it does not serve locks, or it was still in its grace period).
	exitNoLockerd = 3
)

// Names of the systems, in the order each round runs them.
const (
	sysRedis   = "redis"
	sysEtcd    = "etcd"
	sysZK      = "zookeeper"
	sysLockerd = "lockerd"
	// sysEcho is no lock service: the bare round trip that bounds the
	// hand-overs on one lock (echo.go).
	sysEcho = "echo"
)

var allSystems = []string{sysRedis, sysEtcd, sysZK, sysLockerd, sysEcho}

// titles are the systems' names in the table.
var titles = map[string]string{sysRedis: "Redis", sysEtcd: "etcd", sysZK: "ZooKeeper", sysLockerd: "lockerd", sysEcho: "echo"}

// scenario is one load shape, measured on every system.
type scenario struct {
	// id names its runs ("redis " + id) and its locks.
	id, slug string
	label    string
	n        int
	// own gives each goroutine a lock of its own; otherwise all contend
	// for one.
	own bool
	// targets is lockerd's target against each other system.
	targets map[string]string
}

var scenarios = []scenario{
	{id: "c=1", slug: "c1", label: "1 goroutine", n: 1, own: true,
		targets: map[string]string{sysRedis: "lower p99", sysEtcd: "lower p99", sysZK: "lower p99"}},
	{id: "own c=64", slug: "own64", label: "64 goroutines, own locks", n: 64, own: true,
		targets: map[string]string{sysRedis: ">= 1.5, lower p99", sysEtcd: ">= 10, lower p99", sysZK: ">= 10, lower p99"}},
	{id: "one lock c=16", slug: "one16", label: "16 goroutines, one lock", n: 16, own: false,
		targets: map[string]string{sysRedis: ">= 3, lower p99", sysEtcd: ">= 10, lower p99", sysZK: ">= 10, lower p99"}},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "lockcmp:", err)
		}
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "lockcmp: "+format+"\n", a...) }

	b := &bench{o: o, logf: logf, results: map[string][]loadstats.Summary{},
		handovers: map[string][]float64{}, systems: map[string]system{}, down: map[string]string{}}
	defer b.cleanup()
	if err := b.start(ctx); err != nil {
		logf("%v", err)
		return exitFailed
	}
	before := loadAvg()
	if err := b.measureAll(ctx); err != nil {
		logf("%v", err)
		if ctx.Err() != nil {
			logf("stopped (%v): no table", context.Cause(ctx))
		}
		return exitFailed
	}
	after := loadAvg()
	if err := b.write(stdout, before, after); err != nil {
		logf("%v", err)
		return exitFailed
	}
	if why, ok := b.down[sysLockerd]; ok && slices.Contains(o.systems, sysLockerd) {
		logf("no lockerd figures: %s", why)
		return exitNoLockerd
	}
	return exitOK
}

// defaultDataDir is /dev/shm where it is a directory: a tmpfs, on which
// etcd's and ZooKeeper's fsyncs cost nothing, as Redis and lockerd keep
// locks in memory. Elsewhere it is the temporary directory.
type bench struct {
	o    options
	logf func(string, ...any)
	dir  string

	data    string
	procs   []*proc
	systems map[string]system
	// down holds the systems that get no figures, and why.
	down map[string]string
	// lockerd's extra clients for the take measurements.
	takeClient, sideClient *lockerdLocks
	// echo is the client of the echo server.
	echo *echoClient

	results map[string][]loadstats.Summary
	// handovers are the hand-overs per second of the runs on one lock.
	handovers map[string][]float64
	raw       []loadstats.Summary
	versions  []string
}

func (b *bench) cleanup() {
	for _, s := range b.systems {
		s.close()
	}
	for _, c := range []*lockerdLocks{b.takeClient, b.sideClient} {
		if c != nil {
			c.close()
		}
	}
	if b.echo != nil {
		b.echo.close()
	}
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
	for _, d := range []string{b.dir, b.data} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
}

// start starts the servers, then waits for each and connects its client.
func (b *bench) start(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "lockcmp-")
	if err != nil {
		return err
	}
	b.dir = dir
	if b.data, err = os.MkdirTemp(b.o.dataDir, "lockcmp-data-"); err != nil {
		return err
	}
	has := func(s string) bool { return slices.Contains(b.o.systems, s) }
	lockerdBin, echoBin := b.o.lockerdBin, b.o.echoBin
	if has(sysLockerd) && lockerdBin == "" {
		b.logf("building lockerd")
		if lockerdBin, err = buildLockerd(ctx, dir); err != nil {
			return err
		}
	}
	if has(sysEcho) && echoBin == "" {
		b.logf("building bench/echo")
		if echoBin, err = buildEcho(ctx, dir); err != nil {
			return err
		}
	}
	type started struct {
		name string
		p    *proc
		addr string
	}
	var all []started
	for _, s := range b.o.systems {
		var p *proc
		var addr string
		switch s {
		case sysRedis:
			p, addr, err = startRedis(dir)
		case sysEtcd:
			p, addr, err = startEtcd(dir, b.data)
		case sysZK:
			p, addr, err = startZooKeeper(dir, b.data)
		case sysLockerd:
			p, addr, err = startLockerd(dir, lockerdBin, b.o.lockerdFlags)
		case sysEcho:
			p, addr, err = startEcho(dir, echoBin)
		}
		if err != nil {
			return err
		}
		b.procs = append(b.procs, p)
		all = append(all, started{s, p, addr})
	}
	for _, st := range all {
		if err := b.connect(ctx, st.name, st.p, st.addr); err != nil {
			return err
		}
		b.logf("%s ready on %s", st.name, st.addr)
	}
	b.versions = versions(b.o.systems, lockerdBin)
	return nil
}

// startLimit bounds how long a server may take to answer after it starts
// (a JVM on a loaded machine is slow).
const startLimit = 60 * time.Second

// connect connects the client of one started server, once it answers.
func (b *bench) connect(ctx context.Context, name string, p *proc, addr string) error {
	switch name {
	case sysRedis:
		return b.connectRedis(ctx, p, addr)
	case sysEtcd:
		return b.connectEtcd(ctx, p, addr)
	case sysZK:
		return b.connectZooKeeper(ctx, p, addr)
	case sysLockerd:
		return b.connectLockerd(ctx, p, addr)
	case sysEcho:
		return b.connectEcho(ctx, p, addr)
	}
	return nil
}

func (b *bench) connectRedis(ctx context.Context, p *proc, addr string) error {
	maxC := 64
	for _, sc := range scenarios {
		maxC = max(maxC, sc.n)
	}
	var r *redisLocks
	err := p.waitReady(ctx, startLimit, func(ctx context.Context) error {
		var err error
		r, err = newRedis(ctx, addr, maxC, b.o.ttl, b.o.redisBackoff)
		return err
	})
	if err != nil {
		return err
	}
	b.systems[sysRedis] = r
	return nil
}

func (b *bench) connectEtcd(ctx context.Context, p *proc, addr string) error {
	e, err := newEtcd(addr, b.o.ttl)
	if err != nil {
		return fmtErr(sysEtcd, err)
	}
	b.systems[sysEtcd] = e
	return p.waitReady(ctx, startLimit, e.ping)
}

func (b *bench) connectZooKeeper(ctx context.Context, p *proc, addr string) error {
	// The client connects in the background and backs off while the
	// server is down: first wait for the server itself.
	if err := p.waitReady(ctx, startLimit, func(ctx context.Context) error { return zkServing(ctx, addr) }); err != nil {
		return err
	}
	z, err := newZooKeeper(ctx, addr, b.o.ttl)
	if err != nil {
		return fmtErr(sysZK, err)
	}
	b.systems[sysZK] = z
	return p.waitReady(ctx, startLimit, z.ping)
}

// connectLockerd makes lockerd's three clients (locks, takes, side load)
// and waits until it serves locks. A lockerd that does not serve them, or
// is still in its grace period after -grace-wait, is marked down: its
// column says so.
func (b *bench) connectLockerd(ctx context.Context, p *proc, addr string) error {
	var clients [3]*lockerdLocks
	for i := range clients {
		c, err := newLockerd(addr, b.o.ttl)
		if err != nil {
			return fmtErr(sysLockerd, err)
		}
		clients[i] = c
	}
	b.systems[sysLockerd], b.takeClient, b.sideClient = clients[0], clients[1], clients[2]
	l := clients[0]
	err := p.waitReady(ctx, startLimit, func(ctx context.Context) error {
		_, err := l.c.Ping(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if err := l.ready(ctx, b.o.graceWait); err != nil {
		var ns notServed
		if !errors.As(err, &ns) && ctx.Err() != nil {
			return err
		}
		b.down[sysLockerd] = err.Error()
		b.logf("lockerd: %v; its column will say so", err)
	}
	return nil
}
