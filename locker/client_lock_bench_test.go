package locker_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/loadstats"
	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// BenchmarkClientLockCycle measures acquire-and-release cycles through
// the Go client against an in-process server on loopback: one goroutine;
// 64 goroutines each on its own lock; 16 goroutines contending for one
// lock (the server hands it over from one to the next in its queue).
//
//	go test -run '^$' -bench ClientLockCycle -benchtime 5000x ./locker/
func BenchmarkClientLockCycle(b *testing.B) {
	for _, bc := range []struct {
		name       string
		goroutines int
		shared     bool // all on one lock
	}{
		{"1", 1, false},
		{"64-own-locks", 64, false},
		{"16-one-lock", 16, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, c := lockServer(b, locker.LockTableConfig{})
			ctx := context.Background()
			per := b.N / bc.goroutines
			b.ResetTimer()
			var wg sync.WaitGroup
			for g := range bc.goroutines {
				name := "own-" + strconv.Itoa(g)
				if bc.shared {
					name = "one"
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range per {
						l, err := c.Lock(ctx, name, locker.LockOptions{})
						if err != nil {
							b.Error(err)
							return
						}
						if err := l.Unlock(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkClientLockCyclePhases explains the tail of a lock cycle with
// 64 goroutines each on its own lock, through one client. In the same
// run, in alternating blocks so that the machine's load falls on all
// alike, it measures: the lock cycle, with its acquire and its release
// apart; two takes in a row through a client of the same server (the
// cycle's two requests without the lock work); and two requests in a
// row through a client of a raw ROUTER echo (the least two round trips
// through the client and ZeroMQ cost). It reports their p50 and p99 and
// the ratios of the cycle's p99 to the others'.
//
//	go test -run '^$' -bench ClientLockCyclePhases -benchtime 20000x ./locker/
func BenchmarkClientLockCyclePhases(b *testing.B) {
	const goroutines, rounds = 64, 4
	srv := lockertest.NewServer(b, locker.Config{
		Locks: locker.LockTableConfig{NoGrace: true},
		Keys:  []locker.KeyConfig{{Name: "bench", Limit: locker.MaxLimit, Window: time.Millisecond}},
	})
	c := lockertest.NewClient(b, locker.ClientConfig{Endpoints: []string{srv.Endpoint}})
	e := lockertest.NewClient(b, locker.ClientConfig{Endpoints: []string{startEcho(b)}})
	ctx := context.Background()
	// pair is two requests in a row by goroutine g; it returns when the
	// first was answered.
	type pair func(g int) (time.Time, error)
	lockCycle := func(g int) (time.Time, error) {
		l, err := c.Lock(ctx, "own-"+strconv.Itoa(g), locker.LockOptions{})
		if err != nil {
			return time.Time{}, err
		}
		mid := time.Now()
		return mid, l.Unlock(ctx)
	}
	takes := func(int) (time.Time, error) {
		if _, err := c.Take(ctx, "bench", 1); err != nil {
			return time.Time{}, err
		}
		mid := time.Now()
		_, err := c.Take(ctx, "bench", 1)
		return mid, err
	}
	echoes := func(g int) (time.Time, error) {
		// The echo sends the request back, which the client cannot
		// parse as a reply: the round trip is what counts.
		name := "own-" + strconv.Itoa(g)
		e.Do(ctx, []byte("acquire "+name+" exclusive 0 30000 host:1234"))
		mid := time.Now()
		e.Do(ctx, []byte("release "+name+" 1"))
		return mid, nil
	}
	kinds := []struct {
		name             string
		run              pair
		first, second, w loadstats.Histogram
	}{{name: "cycle", run: lockCycle}, {name: "takes", run: takes}, {name: "echo", run: echoes}}
	per := max(b.N/(goroutines*rounds), 1)
	var mu sync.Mutex
	b.ResetTimer()
	for range rounds {
		for k := range kinds {
			kd := &kinds[k]
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var first, second, whole loadstats.Histogram
					for range per {
						t0 := time.Now()
						mid, err := kd.run(g)
						if err != nil {
							b.Error(err)
							return
						}
						t2 := time.Now()
						first.Record(mid.Sub(t0))
						second.Record(t2.Sub(mid))
						whole.Record(t2.Sub(t0))
					}
					mu.Lock()
					kd.first.Merge(&first)
					kd.second.Merge(&second)
					kd.w.Merge(&whole)
					mu.Unlock()
				}()
			}
			wg.Wait()
		}
	}
	b.StopTimer()
	us := func(h *loadstats.Histogram, q float64) float64 { return float64(h.Quantile(q).Microseconds()) }
	cyc := &kinds[0]
	b.ReportMetric(us(&cyc.w, 0.5), "cycle-p50-us")
	b.ReportMetric(us(&cyc.w, 0.99), "cycle-p99-us")
	b.ReportMetric(us(&cyc.first, 0.99), "acquire-p99-us")
	b.ReportMetric(us(&cyc.second, 0.99), "release-p99-us")
	for _, kd := range kinds[1:] {
		b.ReportMetric(us(&kd.w, 0.5), kd.name+"-p50-us")
		b.ReportMetric(us(&kd.w, 0.99), kd.name+"-p99-us")
		b.ReportMetric(us(&cyc.w, 0.99)/max(us(&kd.w, 0.99), 1), "cycle/"+kd.name+"-p99")
	}
	b.ReportMetric(0, "ns/op")
}
