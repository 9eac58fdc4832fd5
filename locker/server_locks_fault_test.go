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

// TestSocketErrorAnswersQueuedAcquisitions makes the server's receive
// fail while acquisitions are queued: each is answered busy, as at
// shutdown, and Run returns the socket's error.
func TestSocketErrorAnswersQueuedAcquisitions(t *testing.T) {
	srv, err := NewServer(Config{Endpoints: []string{"tcp://127.0.0.1:*"}, Locks: LockTableConfig{NoGrace: true}})
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
	ask("acquire job")
	if r, err := d.RecvMessage(0); err != nil || !strings.HasPrefix(r[1], "locked ") {
		t.Fatalf("acquire: %q, %v", r, err)
	}
	const queued = 3
	for range queued {
		ask("acquire job exclusive 0 60000")
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if labels, _ := srv.LockStats(); len(labels) == 1 && labels[0].Waiters == queued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("acquisitions not queued within 10s")
		}
		time.Sleep(5 * time.Millisecond) // polling a counter no event announces
	}
	broken.Store(true)
	for i := range queued {
		r, err := d.RecvMessage(0)
		if err != nil || !strings.HasPrefix(r[1], "busy ") {
			t.Fatalf("queued acquisition %d after the socket error: %q, %v; want busy", i, r, err)
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
