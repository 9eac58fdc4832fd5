package metrics_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/metrics"
	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeStats is a StatsSource whose snapshot the test sets.
type fakeStats struct {
	mu sync.Mutex
	st locker.ServerStats
}

func (f *fakeStats) Stats() locker.ServerStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeStats) set(keys ...locker.ServerKeyStats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = locker.ServerStats{ID: "test", Keys: keys}
}

// keyStat builds a KeyStat.
func keyStat(name string, limit int64, window time.Duration, granted, waiters int64) locker.ServerKeyStats {
	return locker.ServerKeyStats{
		KeyUsage: locker.KeyUsage{
			KeyConfig: locker.KeyConfig{Name: name, Limit: limit, Window: window},
			Granted:   granted,
		},
		Waiters: waiters,
	}
}

// fakePeers is a PeerSource returning fixed stats.
type fakePeers []metrics.PeerStat

func (f fakePeers) PeerStats() []metrics.PeerStat { return f }

// mustMetrics returns Metrics on a fresh bare registry (no Go or
// process collectors, so exposition text can be compared exactly).
func mustMetrics(tb testing.TB, build metrics.BuildInfo) (*metrics.Metrics, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, build)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return m, reg
}

// testBuild is a fixed BuildInfo so that exposition text is stable.
var testBuild = metrics.BuildInfo{Version: "1.2.3", Revision: "abc123", GoVersion: "go1.99"}

// newTestServer runs a locker server on a free loopback port with cfg
// until the test ends, and returns it with its endpoint.
func newTestServer(tb testing.TB, cfg locker.Config) (*locker.Server, string) {
	tb.Helper()
	cfg.Endpoints = []string{"tcp://127.0.0.1:*"}
	srv, err := locker.NewServer(cfg)
	if err != nil {
		tb.Fatalf("NewServer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, locker.ErrServerClosed) {
				tb.Errorf("Run returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			tb.Error("server did not stop within 5s")
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		tb.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		tb.Fatal("server not ready after 5s")
	}
	return srv, srv.Endpoints()[0]
}

// mustSocket returns a socket of type t connected to endpoint, with a
// five-second receive timeout, closed when the test ends. It must be
// used by the test goroutine only.
func mustSocket(tb testing.TB, t zmq.Type, endpoint string) *zmq.Socket {
	tb.Helper()
	s, err := zmq.NewSocket(t)
	if err != nil {
		tb.Fatalf("NewSocket: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	for _, err := range []error{
		s.SetLinger(0),
		s.SetRcvtimeo(5 * time.Second),
		s.SetSndtimeo(5 * time.Second),
		s.Connect(endpoint),
	} {
		if err != nil {
			tb.Fatalf("socket setup: %v", err)
		}
	}
	return s
}

// mustAsk sends body on a REQ socket and returns the reply.
func mustAsk(tb testing.TB, s *zmq.Socket, body string) string {
	tb.Helper()
	if _, err := s.Send(body, 0); err != nil {
		tb.Fatalf("send %q: %v", body, err)
	}
	reply, err := s.Recv(0)
	if err != nil {
		tb.Fatalf("reply to %q: %v", body, err)
	}
	return reply
}

// histogramCount returns the sample count of the histogram name in g.
func histogramCount(tb testing.TB, g prometheus.Gatherer, name string) uint64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && mf.GetType() == dto.MetricType_HISTOGRAM {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	tb.Fatalf("no histogram %s", name)
	return 0
}
