package locker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// newBenchServer runs a server with a key that never says sorry on a free
// loopback port until the benchmark ends, and returns its endpoint.
func newBenchServer(tb testing.TB) string {
	tb.Helper()
	srv, err := locker.NewServer(locker.Config{
		Endpoints: []string{"tcp://127.0.0.1:*"},
		Keys:      []locker.KeyConfig{{Name: "bench", Limit: locker.MaxLimit, Window: time.Millisecond}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-errc; !errors.Is(err, locker.ErrServerClosed) {
			tb.Errorf("Run()=%v, want ErrServerClosed", err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-errc:
		tb.Fatal(err)
	case <-time.After(10 * time.Second):
		tb.Fatal("server not ready")
	}
	return srv.Endpoints()[0]
}

// BenchmarkClientTake is one take round trip through the Go client to a
// server on loopback, one goroutine at a time.
func BenchmarkClientTake(b *testing.B) {
	c, err := locker.Dial(newBenchServer(b))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Take(ctx, "bench", 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientTakeParallel is the same with GOMAXPROCS×p goroutines
// sharing one client, as a busy application would.
func BenchmarkClientTakeParallel(b *testing.B) {
	for _, p := range []int{1, 32} {
		b.Run(map[int]string{1: "p1", 32: "p32"}[p], func(b *testing.B) {
			c, err := locker.Dial(newBenchServer(b))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(p)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Take(ctx, "bench", 1); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
