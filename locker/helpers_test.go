package locker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// newTestServer runs a server on a free loopback port until the test ends
// and returns it with its endpoint.
func newTestServer(tb testing.TB, cfg locker.Config) (*locker.Server, string) {
	tb.Helper()
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = []string{"tcp://127.0.0.1:*"}
	}
	srv, stop := startServer(tb, cfg)
	tb.Cleanup(stop)
	return srv, srv.Endpoints()[0]
}

// startServer runs a server and returns a function that stops it and
// waits for Run to return.
func startServer(tb testing.TB, cfg locker.Config) (*locker.Server, func()) {
	tb.Helper()
	srv, err := locker.NewServer(cfg)
	if err != nil {
		tb.Fatalf("NewServer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		tb.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		tb.Fatal("server not ready after 5s")
	}
	stopped := false
	return srv, func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, locker.ErrServerClosed) {
				tb.Errorf("Run returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			tb.Error("server did not stop within 5s")
		}
	}
}

// mustClient returns a client for cfg that is closed when the test ends.
func mustClient(tb testing.TB, cfg locker.ClientConfig) *locker.Client {
	tb.Helper()
	c, err := locker.NewClient(cfg)
	if err != nil {
		tb.Fatalf("NewClient: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
