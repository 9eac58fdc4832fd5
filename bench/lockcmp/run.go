package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
)

var allSystems = []string{sysRedis, sysEtcd, sysZK, sysLockerd}

// titles are the systems' names in the table.
var titles = map[string]string{sysRedis: "Redis", sysEtcd: "etcd", sysZK: "ZooKeeper", sysLockerd: "lockerd"}

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

type options struct {
	d            time.Duration
	rounds       int
	systems      []string
	out          string
	lockerdBin   string
	lockerdFlags []string
	graceWait    time.Duration
	takeC        int
	sideC        int
	ttl          time.Duration
	redisBackoff time.Duration
	timeout      time.Duration
	dataDir      string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("lockcmp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var systems, lflags string
	fs.DurationVar(&o.d, "d", 3*time.Second, "duration of each measurement")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; figures are medians over them")
	fs.StringVar(&systems, "systems", strings.Join(allSystems, ","), "systems to measure, comma-separated")
	fs.StringVar(&o.out, "o", "", "also write the table and the raw runs (JSON lines) to FILE")
	fs.StringVar(&o.lockerdBin, "lockerd", "", "lockerd binary (default: go build ./cmd/lockerd of the enclosing repository)")
	fs.StringVar(&lflags, "lockerd-flags", "", "extra flags for lockerd, space-separated")
	fs.DurationVar(&o.graceWait, "grace-wait", 15*time.Second, "longest to wait for lockerd's restart grace period to end")
	fs.IntVar(&o.takeC, "take-c", 16, "goroutines taking from the rate-limited key")
	fs.IntVar(&o.sideC, "side-c", 16, "goroutines of lock (or take) traffic beside them")
	fs.DurationVar(&o.ttl, "ttl", 10*time.Second, "lease TTL (Redis PX, etcd session TTL, ZooKeeper session timeout, lockerd TTL)")
	fs.DurationVar(&o.redisBackoff, "redis-backoff", time.Millisecond, "Redis: mean pause before trying a taken lock again (jittered ±50%)")
	fs.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "where etcd and ZooKeeper keep their data (a temporary directory in it)")
	fs.DurationVar(&o.timeout, "timeout", 0, "bound on the whole run (default: from -d, -rounds and -systems, plus 3m)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(systems, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allSystems, s) {
			return o, fmt.Errorf("unknown system %q (want some of %s)", s, strings.Join(allSystems, ","))
		}
		if !slices.Contains(o.systems, s) {
			o.systems = append(o.systems, s)
		}
	}
	// Keep the round order fixed whatever the flag's order.
	slices.SortFunc(o.systems, func(a, b string) int { return slices.Index(allSystems, a) - slices.Index(allSystems, b) })
	o.lockerdFlags = strings.Fields(lflags)
	switch {
	case len(o.systems) == 0:
		return o, errors.New("no systems")
	case o.d <= 0 || o.rounds < 1 || o.takeC < 1 || o.sideC < 1 || o.redisBackoff <= 0:
		return o, errors.New("-d, -redis-backoff must be positive; -rounds, -take-c, -side-c at least 1")
	case o.ttl < time.Second:
		return o, errors.New("-ttl must be at least 1s (etcd leases are in seconds)")
	}
	if o.timeout <= 0 {
		runs := o.rounds * (len(o.systems)*len(scenarios) + 3)
		o.timeout = time.Duration(runs)*(o.d+5*time.Second) + 3*time.Minute
	}
	return o, nil
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
func defaultDataDir() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// bench is one run: its servers, clients and results.
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
	lockerdBin := b.o.lockerdBin
	if has(sysLockerd) && lockerdBin == "" {
		b.logf("building lockerd")
		if lockerdBin, err = buildLockerd(ctx, dir); err != nil {
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

func (b *bench) connect(ctx context.Context, name string, p *proc, addr string) error {
	maxC := 64
	for _, sc := range scenarios {
		maxC = max(maxC, sc.n)
	}
	switch name {
	case sysRedis:
		var r *redisLocks
		err := p.waitReady(ctx, startLimit, func(ctx context.Context) error {
			var err error
			r, err = newRedis(ctx, addr, maxC, b.o.ttl, b.o.redisBackoff)
			return err
		})
		if err != nil {
			return err
		}
		b.systems[name] = r
	case sysEtcd:
		e, err := newEtcd(addr, b.o.ttl)
		if err != nil {
			return fmtErr(name, err)
		}
		b.systems[name] = e
		return p.waitReady(ctx, startLimit, e.ping)
	case sysZK:
		// The client connects in the background and backs off while the
		// server is down: first wait for the server itself.
		if err := p.waitReady(ctx, startLimit, func(ctx context.Context) error { return zkServing(ctx, addr) }); err != nil {
			return err
		}
		z, err := newZooKeeper(ctx, addr, b.o.ttl)
		if err != nil {
			return fmtErr(name, err)
		}
		b.systems[name] = z
		return p.waitReady(ctx, startLimit, z.ping)
	case sysLockerd:
		var clients [3]*lockerdLocks
		for i := range clients {
			c, err := newLockerd(addr, b.o.ttl)
			if err != nil {
				return fmtErr(name, err)
			}
			clients[i] = c
		}
		b.systems[name], b.takeClient, b.sideClient = clients[0], clients[1], clients[2]
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
			if errors.As(err, &ns) {
				b.down[name] = err.Error()
				b.logf("lockerd: %v; its column will say so", err)
				return nil
			}
			if ctx.Err() != nil {
				return err
			}
			b.down[name] = err.Error()
			b.logf("lockerd: %v; its column will say so", err)
		}
	}
	return nil
}

// measureAll runs the rounds.
func (b *bench) measureAll(ctx context.Context) error {
	for r := 1; r <= b.o.rounds; r++ {
		b.logf("round %d of %d", r, b.o.rounds)
		for _, sc := range scenarios {
			for _, name := range b.o.systems {
				if _, down := b.down[name]; down {
					continue
				}
				if err := b.measure(ctx, r, name, sc); err != nil {
					return err
				}
			}
		}
		if _, down := b.down[sysLockerd]; !down && b.systems[sysLockerd] != nil {
			if err := b.measureTakes(ctx, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// record keeps s as a run of its name.
func (b *bench) record(s loadstats.Summary, firstErr error) {
	b.results[s.Name] = append(b.results[s.Name], s)
	b.raw = append(b.raw, s)
	line := fmt.Sprintf("%s: %.0f/s, p50 %.0f µs, p99 %.0f µs", s.Name, s.DecisionsPerSecond, s.P50us, s.P99us)
	if s.Errors > 0 {
		line += fmt.Sprintf(", %d errors (first: %v)", s.Errors, firstErr)
	}
	b.logf("%s", line)
}

// errRecorder keeps the first error of a run.
type errRecorder struct {
	once  sync.Once
	first error
}

func (e *errRecorder) note(err error) { e.once.Do(func() { e.first = err }) }

// loop is one goroutine's measured loop over op.
func loop(ctx context.Context, op func(context.Context) error, errs *errRecorder) loadstats.Work {
	return loadstats.Loop(func() (loadstats.Outcome, error) {
		if err := op(ctx); err != nil {
			if ctx.Err() != nil {
				return loadstats.Skip, err
			}
			errs.note(err)
			return loadstats.Error, err
		}
		return loadstats.Go, nil
	})
}

// errOverlap is a lock that did not exclude: two goroutines held it at once.
var errOverlap = errors.New("two holders of an exclusive lock at once")

// lockState is what the cycles on one lock share: how many goroutines
// are between acquire and release, the last holder, and how often the
// lock went to a goroutine other than the one that held it before.
type lockState struct {
	inside    atomic.Int32
	last      atomic.Int32
	handovers atomic.Int64
}

func newLockState() *lockState {
	st := new(lockState)
	st.last.Store(-1)
	return st
}

// exclusive makes a cycle of acq, by goroutine me, that counts in st the
// goroutines between its acquire and its release: more than one at once
// is an error. It checks that the lock excluded as much as it can without
// slowing the cycle down (a holder preempted in that window would reveal
// a second). It also counts the hand-overs.
func exclusive(acq acquire, st *lockState, me int32) cycle {
	return func(ctx context.Context) error {
		release, err := acq(ctx)
		if err != nil {
			return err
		}
		n := st.inside.Add(1)
		if st.last.Swap(me) != me {
			st.handovers.Add(1)
		}
		st.inside.Add(-1)
		if err := release(ctx); err != nil {
			return err
		}
		if n != 1 {
			return errOverlap
		}
		return nil
	}
}

// measure runs sc on one system for -d.
func (b *bench) measure(ctx context.Context, round int, name string, sc scenario) error {
	sys := b.systems[name]
	var errs errRecorder
	locks := map[string]*lockState{}
	s, err := loadstats.Run(ctx, loadstats.Options{Name: name + " " + sc.id, Goroutines: sc.n, Duration: b.o.d},
		func(i int) (loadstats.Work, func(), error) {
			lock := fmt.Sprintf("lockcmp.r%d.%s.0", round, sc.slug)
			if sc.own {
				lock = fmt.Sprintf("lockcmp.r%d.%s.%d", round, sc.slug, i)
			}
			if locks[lock] == nil {
				locks[lock] = newLockState()
			}
			acq, done, err := sys.worker(ctx, lock)
			if err != nil {
				return nil, done, fmtErr(name, err)
			}
			return loop(ctx, exclusive(acq, locks[lock], int32(i)), &errs), done, nil
		})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	b.record(s, errs.first)
	if !sc.own && s.DurationSeconds > 0 {
		var n int64
		for _, st := range locks {
			n += st.handovers.Load()
		}
		b.handovers[s.Name] = append(b.handovers[s.Name], float64(n)/s.DurationSeconds)
	}
	return nil
}

// Names of the take runs.
const (
	takeAlone      = "take"
	takeBesideLock = "take + locks"
	takeBesideTake = "take + takes"
)

// measureTakes measures take on the key bench from -take-c goroutines
// alone, beside -side-c goroutines cycling locks of their own, and beside
// as many taking from another key (the same load without locks), all on
// the same lockerd, each side load through a client of its own.
func (b *bench) measureTakes(ctx context.Context, round int) error {
	lockSide := func(ctx context.Context, i int) (cycle, error) {
		acq, _, err := b.sideClient.worker(ctx, fmt.Sprintf("lockcmp.r%d.side.%d", round, i))
		return exclusive(acq, newLockState(), 0), err
	}
	takeSide := func(_ context.Context, _ int) (cycle, error) {
		return func(ctx context.Context) error { return b.sideClient.take(ctx, "side") }, nil
	}
	for _, m := range []struct {
		name string
		side func(context.Context, int) (cycle, error)
	}{{takeAlone, nil}, {takeBesideLock, lockSide}, {takeBesideTake, takeSide}} {
		if err := b.measureTake(ctx, m.name, m.side); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) measureTake(ctx context.Context, name string, side func(context.Context, int) (cycle, error)) error {
	var sideSum loadstats.Summary
	var sideErrs errRecorder
	var wg sync.WaitGroup
	sctx, stopSide := context.WithCancel(ctx)
	defer stopSide()
	if side != nil {
		ready := make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			n := 0
			sideSum, _ = loadstats.Run(sctx, loadstats.Options{Name: "side of " + name, Goroutines: b.o.sideC, Duration: time.Hour},
				func(i int) (loadstats.Work, func(), error) {
					c, err := side(sctx, i)
					if err != nil {
						once.Do(func() { ready <- err })
						return nil, nil, err
					}
					if n++; n == b.o.sideC {
						once.Do(func() { ready <- nil })
					}
					return loop(sctx, c, &sideErrs), nil, nil
				})
		}()
		if err := <-ready; err != nil {
			return err
		}
	}
	var errs errRecorder
	s, err := loadstats.Run(ctx, loadstats.Options{Name: name, Goroutines: b.o.takeC, Duration: b.o.d},
		func(int) (loadstats.Work, func(), error) {
			return loop(ctx, func(ctx context.Context) error { return b.takeClient.take(ctx, "bench") }, &errs), nil, nil
		})
	stopSide()
	wg.Wait()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	b.record(s, errs.first)
	if side != nil {
		if sideErrs.first != nil {
			b.logf("%s: side load errors: %v", name, sideErrs.first)
		}
		b.logf("  beside it: %.0f/s", sideSum.DecisionsPerSecond)
	}
	return nil
}
