package locker

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// TestSocketErrorAnswersHeld makes the server's receive fail, as a broken
// socket would, while requests are held: each held wait is answered
// sorry and each queued acquisition busy, as at shutdown, and Run returns
// the socket's error.
func TestSocketErrorAnswersHeld(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		first, hold string // the first request spends the key or takes the lock
		firstReply  string
		held        func(*Server) int64
		heldReply   string
	}{
		{
			name:  "held waits",
			cfg:   Config{Keys: []KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}},
			first: "take api", firstReply: "go ",
			hold: "wait api 1 60000", heldReply: "sorry ",
			held: func(s *Server) int64 { return s.Stats().Keys[0].Waiters },
		},
		{
			name:  "queued acquisitions",
			cfg:   Config{Locks: LockTableConfig{NoGrace: true}},
			first: "acquire job", firstReply: "locked ",
			hold: "acquire job exclusive 0 60000", heldReply: "busy ",
			held: func(s *Server) int64 {
				if labels, _ := s.LockStats(); len(labels) == 1 {
					return int64(labels[0].Waiters)
				}
				return 0
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Endpoints = []string{"tcp://127.0.0.1:*"}
			srv, err := NewServer(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			injected := zmq.Errno(syscall.ENOTSOCK)
			var broken atomic.Bool
			srv.recv = func(sock *zmq.Socket, frames [][]byte, withUser bool) ([][]byte, string, error) {
				if broken.Load() {
					return frames[:0], "", injected
				}
				return recvMessage(sock, frames, withUser)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- srv.Run(ctx) }()
			select {
			case <-srv.Ready():
			case err := <-done:
				t.Fatalf("Run: %v", err)
			}
			d := mustDealer(t, srv.Endpoints()[0])
			ask := func(body string) {
				if _, err := d.SendMessage("", body); err != nil {
					t.Fatal(err)
				}
			}
			ask(tc.first)
			if r, err := d.RecvMessage(0); err != nil || !strings.HasPrefix(r[1], tc.firstReply) {
				t.Fatalf("%s: %q, %v", tc.first, r, err)
			}
			const held = 3
			for range held {
				ask(tc.hold)
			}
			for deadline := time.Now().Add(10 * time.Second); tc.held(srv) != held; {
				if time.Now().After(deadline) {
					t.Fatalf("requests not held within 10s: %d", tc.held(srv))
				}
				time.Sleep(5 * time.Millisecond) // polling a counter no event announces
			}
			broken.Store(true)
			for i := range held {
				r, err := d.RecvMessage(0)
				if err != nil || !strings.HasPrefix(r[1], tc.heldReply) {
					t.Fatalf("held request %d after the socket error: %q, %v; want %q", i, r, err, tc.heldReply)
				}
			}
			select {
			case err := <-done:
				if !errors.Is(err, injected) {
					t.Fatalf("Run=%v, want the socket error %v", err, injected)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after the socket error")
			}
		})
	}
}

// mustDealer returns a DEALER socket connected to ep, closed with the test.
func mustDealer(tb testing.TB, ep string) *zmq.Socket {
	tb.Helper()
	d, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	d.SetLinger(0)
	d.SetRcvtimeo(5 * time.Second)
	if err := d.Connect(ep); err != nil {
		tb.Fatal(err)
	}
	return d
}
