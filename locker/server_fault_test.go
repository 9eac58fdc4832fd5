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

// TestSocketErrorAnswersHeldWaits makes the server's receive fail, as a
// broken socket would, while waits are held: each held wait is answered
// sorry, as at shutdown, and Run returns the socket's error.
func TestSocketErrorAnswersHeldWaits(t *testing.T) {
	srv, err := NewServer(Config{Endpoints: []string{"tcp://127.0.0.1:*"}, Keys: []KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}})
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
	d, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.SetLinger(0)
	d.SetRcvtimeo(5 * time.Second)
	if err := d.Connect(srv.Endpoints()[0]); err != nil {
		t.Fatal(err)
	}
	ask := func(body string) {
		if _, err := d.SendMessage("", body); err != nil {
			t.Fatal(err)
		}
	}
	ask("take api")
	if r, err := d.RecvMessage(0); err != nil || !strings.HasPrefix(r[1], "go ") {
		t.Fatalf("take: %q, %v", r, err)
	}
	const held = 3
	for range held {
		ask("wait api 1 60000")
	}
	for deadline := time.Now().Add(10 * time.Second); srv.Stats().Keys[0].Waiters != held; {
		if time.Now().After(deadline) {
			t.Fatalf("waits not held within 10s: %+v", srv.Stats())
		}
		time.Sleep(5 * time.Millisecond) // polling a counter no event announces
	}
	broken.Store(true)
	for i := range held {
		r, err := d.RecvMessage(0)
		if err != nil || !strings.HasPrefix(r[1], "sorry ") {
			t.Fatalf("held wait %d after the socket error: %q, %v; want sorry", i, r, err)
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
}
