package locker_test

import (
	"context"
	"errors"
	"strings"
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
//
// A port just released by a stopped server may still be held by ZeroMQ's
// I/O thread for a moment, so a bind that finds it in use is retried for
// up to 5 seconds.
func startServer(tb testing.TB, cfg locker.Config) (*locker.Server, func()) {
	tb.Helper()
	var (
		srv    *locker.Server
		cancel context.CancelFunc
		done   chan error
	)
	for deadline := time.Now().Add(5 * time.Second); ; {
		var err error
		srv, err = locker.NewServer(cfg)
		if err != nil {
			tb.Fatalf("NewServer: %v", err)
		}
		var ctx context.Context
		ctx, cancel = context.WithCancel(context.Background())
		done = make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		select {
		case <-srv.Ready():
		case err := <-done:
			cancel()
			if strings.Contains(err.Error(), "address already in use") && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond) // the port is freed by another thread, with no event to await
				continue
			}
			tb.Fatalf("Run: %v", err)
		case <-time.After(5 * time.Second):
			cancel()
			tb.Fatal("server not ready after 5s")
		}
		break
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
