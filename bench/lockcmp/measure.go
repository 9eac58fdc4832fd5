package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockerd/lockerd/loadstats"
)

// measureAll runs the rounds.
func (b *bench) measureAll(ctx context.Context) error {
	for r := 1; r <= b.o.rounds; r++ {
		b.logf("round %d of %d", r, b.o.rounds)
		for _, sc := range scenarios {
			if !sc.own && b.echo != nil {
				// Right before the runs on one lock, which it bounds.
				if err := b.measureEcho(ctx); err != nil {
					return err
				}
			}
			for _, name := range b.o.systems {
				if _, down := b.down[name]; down || name == sysEcho {
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
