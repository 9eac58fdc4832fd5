package locker_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// TestClientAllowed checks the Config.ClientAllowed hook without CURVE:
// it is asked about every request's User-Id ("" on a plaintext
// connection), and once it rejects the id, the open connection's
// requests and its held wait are answered with an error.
func TestClientAllowed(t *testing.T) {
	var allowed atomic.Bool
	allowed.Store(true)
	var mu sync.Mutex
	seen := map[string]bool{}
	srv, ep := newTestServer(t, locker.Config{ID: "hooked",
		Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}, {Name: "free", Limit: 1000, Window: time.Hour}},
		ClientAllowed: func(userID string) bool {
			mu.Lock()
			seen[userID] = true
			mu.Unlock()
			return allowed.Load()
		}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}, Attempts: 1})
	if d, err := c.Take(t.Context(), "api", 1); err != nil || !d.OK {
		t.Fatalf("allowed: Take=%+v, %v", d, err)
	}
	waitErr := make(chan error, 1)
	go func() {
		_, err := c.WaitMax(t.Context(), "api", 1, time.Hour)
		waitErr <- err
	}()
	waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == 1 })

	allowed.Store(false)
	var se *locker.ServerError
	if err := <-waitErr; !errors.As(err, &se) || se.Msg != "client key not allowed" {
		t.Fatalf("held wait after the hook turned: %v, want error client key not allowed", err)
	}
	if d, err := c.Take(t.Context(), "free", 1); !errors.As(err, &se) || se.Msg != "client key not allowed" {
		t.Fatalf("after the hook turned: Take=%+v, %v; want error client key not allowed", d, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || !seen[""] {
		t.Fatalf("hook saw User-Ids %v, want only \"\" on a plaintext connection", seen)
	}
}

func TestLocalEndpoint(t *testing.T) {
	tests := []struct {
		ep   string
		want bool
	}{
		{"tcp://127.0.0.1:7777", true},
		{"tcp://127.1.2.3:*", true},
		{"tcp://localhost:7777", true},
		{"tcp://[::1]:7777", true},
		{"ipc:///tmp/lockerd.sock", true},
		{"inproc://x", true},
		{"tcp://*:7777", false},
		{"tcp://0.0.0.0:7777", false},
		{"tcp://10.0.0.1:7777", false},
		{"tcp://eth0:7777", false},
		{"tcp://[::]:7777", false},
		{"garbage", false},
	}
	for _, tc := range tests {
		if got := locker.LocalEndpoint(tc.ep); got != tc.want {
			t.Errorf("LocalEndpoint(%q)=%v, want %v", tc.ep, got, tc.want)
		}
	}
}
