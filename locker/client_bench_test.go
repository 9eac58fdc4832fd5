package locker_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

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

// startEcho runs a raw ROUTER echo server (the transport's limit, as in
// bench/echo) on a free loopback port until the benchmark ends, and
// returns its endpoint.
func startEcho(tb testing.TB) string {
	tb.Helper()
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		tb.Fatal(err)
	}
	sock.SetLinger(0)
	sock.SetRcvtimeo(50 * time.Millisecond)
	if err := sock.Bind("tcp://127.0.0.1:*"); err != nil {
		sock.Close()
		tb.Fatal(err)
	}
	ep, _ := sock.GetLastEndpoint()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer sock.Close()
		for {
			select {
			case <-done:
				return
			default:
			}
			msg, err := sock.RecvMessageBytes(0)
			if err != nil {
				continue // timeout: look at done again
			}
			sock.SendMessage(msg)
		}
	}()
	tb.Cleanup(func() {
		close(done)
		<-stopped
	})
	return ep
}

// BenchmarkSingleCaller compares, in the same run and alternating one
// request each, a bare REQ round trip to a raw ROUTER echo server (the
// least a round trip through ZeroMQ costs) with one Take through the Go
// client from one goroutine. It reports the p50 of each and their ratio:
// client-p50/req-p50 is the client's whole overhead for a lone caller.
func BenchmarkSingleCaller(b *testing.B) {
	req, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		b.Fatal(err)
	}
	defer req.Close()
	req.SetLinger(0)
	if err := req.Connect(startEcho(b)); err != nil {
		b.Fatal(err)
	}
	c, err := locker.Dial(newBenchServer(b))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	body := []byte("take bench 1")
	var reqNs, clientNs []float64
	for b.Loop() {
		t0 := time.Now()
		if _, err := req.SendBytes(body, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := req.RecvBytes(0); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := c.Take(ctx, "bench", 1); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		reqNs = append(reqNs, float64(t1.Sub(t0)))
		clientNs = append(clientNs, float64(t2.Sub(t1)))
	}
	rp, cp := median(reqNs), median(clientNs)
	b.ReportMetric(rp/1e3, "req-p50-µs")
	b.ReportMetric(cp/1e3, "client-p50-µs")
	if rp > 0 {
		b.ReportMetric(cp/rp, "client/req-p50")
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}
