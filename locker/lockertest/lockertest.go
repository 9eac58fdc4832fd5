// Package lockertest runs lockerd servers on loopback for tests, the way
// net/http/httptest runs HTTP servers.
package lockertest

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// Server is a locker.Server running on a free loopback port.
type Server struct {
	*locker.Server
	// Endpoint is where the server listens, e.g. tcp://127.0.0.1:40123.
	Endpoint string

	tb      testing.TB
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// NewServer starts a server for cfg and stops it when the test ends. With
// no Config.Endpoints it binds tcp://127.0.0.1:* (a free port). It fails
// the test if the server does not start within 5 seconds.
func NewServer(tb testing.TB, cfg locker.Config) *Server {
	tb.Helper()
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = []string{"tcp://127.0.0.1:*"}
	}
	srv, err := locker.NewServer(cfg)
	if err != nil {
		tb.Fatalf("lockertest: NewServer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Server: srv, tb: tb, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-s.done:
		cancel()
		tb.Fatalf("lockertest: Run: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		tb.Fatal("lockertest: server not ready after 5s")
	}
	s.Endpoint = srv.Endpoints()[0]
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server and waits for it, failing the test if it does
// not stop cleanly within 5 seconds. It is idempotent.
func (s *Server) Close() {
	if s.stopped {
		return
	}
	s.stopped = true
	s.cancel()
	select {
	case err := <-s.done:
		if !errors.Is(err, locker.ErrServerClosed) {
			s.tb.Errorf("lockertest: Run returned %v, want ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		s.tb.Error("lockertest: server did not stop within 5s")
	}
}

// FreeEndpoint returns a loopback TCP endpoint that nothing listened on a
// moment ago, for a server that must be told its port before it starts
// (a process taking --bind, or a peer list).
func FreeEndpoint(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("lockertest: %v", err)
	}
	defer l.Close()
	return "tcp://127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// WaitFor polls cond every few milliseconds until it holds, and fails the
// test if it does not within 10 seconds. It is for conditions that no
// event announces, such as a server's waiter count seen through Stats.
func WaitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("lockertest: condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// SkipWithoutIPv6 skips the test, saying why, where the machine cannot
// listen on the IPv6 loopback address ::1.
func SkipWithoutIPv6(tb testing.TB) {
	tb.Helper()
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		tb.Skipf("no IPv6 loopback (::1) on this machine: %v", err)
	}
	l.Close()
}

// NewClient returns a client for cfg that is closed when the test ends.
func NewClient(tb testing.TB, cfg locker.ClientConfig) *locker.Client {
	tb.Helper()
	c, err := locker.NewClient(cfg)
	if err != nil {
		tb.Fatalf("NewClient: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Waiters returns how many waits srv holds for key, -1 for no such key.
func Waiters(srv *locker.Server, key string) int64 {
	for _, k := range srv.Stats().Keys {
		if k.Name == key {
			return k.Waiters
		}
	}
	return -1
}
