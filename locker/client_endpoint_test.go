package locker_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	zmq "github.com/pebbe/zmq4"
)

// TestDialEndpoints checks that Dial refuses, before any socket exists,
// every endpoint a client could not connect to, including those ZeroMQ
// itself refuses only at connect time or accepts and never connects.
func TestDialEndpoints(t *testing.T) {
	tests := []struct {
		ep      string
		wantErr string // "" for an endpoint that must be accepted
	}{
		{"tcp://127.0.0.1:7777", ""},
		{"tcp://localhost:7777", ""},
		{"tcp://[::1]:7777", ""},
		{"tcp://[fe80::1%lo]:7777", ""},
		{"tcp://127.0.0.1:0;127.0.0.1:7777", ""},
		{"ipc:///tmp/lockerd.sock", ""},
		{"inproc://lockerd", ""},
		{"", "empty endpoint"},
		{"tcp://127.0.0.1", "tcp://HOST:PORT"},
		{"tcp://127.0.0.1:", "port"},
		{"tcp://127.0.0.1:0", "port"},
		{"tcp://127.0.0.1:65536", "port"},
		{"tcp://127.0.0.1:7x", "port"},
		{"tcp://127.0.0.1:+1", "port"},
		{"tcp://-a:7777", "not a name"},
		{"tcp://a b;127.0.0.1:7777", "source"},
		{"tcp://127.0.0.1:*", "port"},
		{"tcp://:7777", "no host"},
		{"tcp://::1:7777", "tcp://HOST:PORT"},
		{"tcp://[localhost]:7777", "brackets"},
		{"tcp://a b:7777", "not a name"},
		{"tcp://;127.0.0.1:7777", "source"},
		{"127.0.0.1:7777", "TRANSPORT://"},
		{"udp://127.0.0.1:7777", "unsupported transport"},
		{"ipc://", "no ipc address"},
		{"inproc://\x00", "control character"},
	}
	for _, tc := range tests {
		t.Run(tc.ep, func(t *testing.T) {
			c, err := locker.Dial(tc.ep)
			if c != nil {
				c.Close()
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Dial(%q) = %v, want it accepted", tc.ep, err)
				}
				return
			}
			if !errors.Is(err, locker.ErrBadEndpoint) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Dial(%q) = %v, want ErrBadEndpoint saying %q", tc.ep, err, tc.wantErr)
			}
		})
	}
	// The case: one bad endpoint among good ones is refused.
	if c, err := locker.Dial(freeEndpoint(t), "tcp://127.0.0.1"); err == nil {
		c.Close()
		t.Fatal("Dial(good, tcp://127.0.0.1) succeeded, want an error")
	}
}

// TestClientConnectFailureDoesNotStall makes connecting fail (through
// Security, the one step of a connect that can still fail after Dial's
// checks) after the first endpoint timed out: every call still returns,
// with ErrTimeout, and the client serves again once connecting works.
// It would block until the context ends with a loop that retries one
// endpoint without looking at its calls.
func TestClientConnectFailureDoesNotStall(t *testing.T) {
	srv := lockertest.NewServer(t, locker.Config{ID: "live"})
	var refuse atomic.Bool
	c := lockertest.NewClient(t, locker.ClientConfig{
		Endpoints: []string{freeEndpoint(t), srv.Endpoint},
		Timeout:   100 * time.Millisecond,
		Attempts:  2,
		Security: func(*zmq.Socket) error {
			if refuse.Load() {
				return errors.New("refused by the test")
			}
			return nil
		},
	})
	refuse.Store(true) // the first socket (to the dead endpoint) is made
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := c.Ping(ctx); !errors.Is(err, locker.ErrTimeout) {
			t.Fatalf("Ping %d with no endpoint connectable: %v, want ErrTimeout", i, err)
		}
	}
	refuse.Store(false)
	lockertest.WaitFor(t, func() bool {
		id, err := c.Ping(ctx)
		if err != nil && !errors.Is(err, locker.ErrTimeout) {
			t.Fatalf("Ping: %v", err)
		}
		return id == "live"
	})
}

// TestClientIPv6 serves on [::1] and on 127.0.0.1 at once, and talks
// to it through the Go client over IPv6, over IPv4, and failing over from
// one to the other.
func TestClientIPv6(t *testing.T) {
	lockertest.SkipWithoutIPv6(t)
	srv := lockertest.NewServer(t, locker.Config{ID: "v6", Endpoints: []string{"tcp://[::1]:*", "tcp://127.0.0.1:*"}})
	eps := srv.Endpoints()
	if !strings.HasPrefix(eps[0], "tcp://[::1]:") {
		t.Fatalf("endpoint %q, want tcp://[::1]:PORT", eps[0])
	}
	for _, tc := range []struct {
		name string
		eps  []string
	}{
		{"IPv6", eps[:1]},
		{"IPv4", eps[1:]},
		{"dead IPv4, then IPv6", []string{freeEndpoint(t), eps[0]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: tc.eps, Timeout: 300 * time.Millisecond})
			if id, err := c.Ping(t.Context()); err != nil || id != "v6" {
				t.Errorf("Ping(%v) = %q, %v; want v6", tc.eps, id, err)
			}
		})
	}
}
