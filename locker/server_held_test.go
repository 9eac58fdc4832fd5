package locker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	zmq "github.com/pebbe/zmq4"
)

// TestHeldWaitSizeBound sends waits on a spent key with envelopes of
// several sizes from a DEALER with a 5-byte routing id: the ordinary
// envelopes, and one whose frames add up to exactly MaxHeldBytes, are
// held; one byte more, or the 30 frames of 4000 bytes that once pinned
// 120 KB per wait, is answered at once with an error and not held.
func TestHeldWaitSizeBound(t *testing.T) {
	const body = "wait api 1 1000"
	const routingID = "r-123" // 5 bytes, as ZeroMQ's own
	clock := &fakeClock{}
	clock.Set(time.Unix(1_800_000_000, 0))
	srv, ep := newTestServer(t, locker.Config{Now: clock.Now, Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}})
	d, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.SetLinger(0)
	d.SetRcvtimeo(5 * time.Second)
	d.SetIdentity(routingID)
	if err := d.Connect(ep); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SendMessage("", "take api"); err != nil {
		t.Fatal(err)
	}
	if r, err := d.RecvMessage(0); err != nil || !strings.HasPrefix(r[1], "go ") {
		t.Fatalf("take: %q, %v", r, err)
	}
	// pad returns an envelope of one id frame and a delimiter that makes
	// the whole message size bytes long.
	pad := func(size int) []any {
		return []any{strings.Repeat("i", size-len(routingID)-len(body)), ""}
	}
	big := make([]any, 30)
	for i := range big {
		big[i] = strings.Repeat("x", 4000)
	}
	tests := []struct {
		name string
		env  []any
		held bool
	}{
		{"REQ envelope", []any{""}, true},
		{"DEALER request id", []any{"12345678", ""}, true},
		{"exactly MaxHeldBytes", pad(locker.MaxHeldBytes), true},
		{"MaxHeldBytes+1", pad(locker.MaxHeldBytes + 1), false},
		{"30 frames of 4000 bytes", append(big, ""), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := d.SendMessage(append(tc.env, body)...); err != nil {
				t.Fatal(err)
			}
			if tc.held {
				waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == 1 })
				clock.Set(clock.Now().Add(time.Second)) // its MAX_MS passes
			}
			msg, err := d.RecvMessage(0)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			reply := msg[len(msg)-1]
			if want := "sorry "; tc.held && !strings.HasPrefix(reply, want) {
				t.Fatalf("held wait answered %q, want %q...", reply, want)
			}
			if want := "error request too large to hold"; !tc.held && !strings.HasPrefix(reply, want) {
				t.Fatalf("oversized wait answered %q, want %q...", reply, want)
			}
			if n := lockertest.Waiters(srv, "api"); n != 0 {
				t.Fatalf("%d waits held after the reply", n)
			}
		})
	}
}

// TestCancelHeldWait holds three waits on a spent key from two DEALERs,
// cancels the first: it is answered sorry, the cancel "cancelled 1", and
// when the window opens its token goes to the next wait in the queue.
// A cancel that matches nothing, a cancel from another socket with the
// same request id, and a cancel of an unknown key withdraw nothing.
func TestCancelHeldWait(t *testing.T) {
	const w = time.Second
	const k0 = 1_800_000_000
	clock := &fakeClock{}
	clock.Set(clock.window(k0, w).Add(100 * time.Millisecond))
	srv, ep := newTestServer(t, locker.Config{Now: clock.Now, Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: w}}})
	a, b := mustDealer(t, ep), mustDealer(t, ep)
	send(t, a, 0, "take api")
	if _, r := recv(t, a); !strings.HasPrefix(r, "go 0 ") {
		t.Fatalf("take: %q", r)
	}
	// Each held before the next is sent: two connections are read in
	// no set order.
	for i, s := range []*zmq.Socket{a, b, a} {
		send(t, s, uint64(i+1), "wait api 1 60000")
		waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == int64(i+1) })
	}

	send(t, b, 1, "cancel api") // b's id 1 holds nothing
	if id, r := recv(t, b); id != 1 || r != "cancelled 0" {
		t.Fatalf("cancel from another socket: %d %q, want 1 \"cancelled 0\"", id, r)
	}
	send(t, a, 1, "cancel nope")
	if id, r := recv(t, a); id != 1 || r != `error unknown key "nope"` {
		t.Fatalf("cancel of an unknown key: %d %q", id, r)
	}
	send(t, a, 1, "cancel api")
	if id, r := recv(t, a); id != 1 || !strings.HasPrefix(r, "sorry ") {
		t.Fatalf("cancelled wait: %d %q, want 1 sorry", id, r)
	}
	if id, r := recv(t, a); id != 1 || r != "cancelled 1" {
		t.Fatalf("cancel: %d %q, want 1 \"cancelled 1\"", id, r)
	}
	if n := lockertest.Waiters(srv, "api"); n != 2 {
		t.Fatalf("%d waits held after the cancel, want 2", n)
	}
	clock.Set(clock.window(k0+1, w))
	if id, r := recv(t, b); id != 2 || r != fmt.Sprintf("go 0 1000 %d", k0+1) {
		t.Fatalf("next wait: %d %q, want the cancelled wait's token", id, r)
	}
	send(t, a, 4, "take api") // wait 3 still queued: sorry
	if id, r := recv(t, a); id != 4 || !strings.HasPrefix(r, "sorry ") {
		t.Fatalf("take behind wait 3: %d %q", id, r)
	}
}

// TestClientCancelsAbandonedWait runs Client.Wait on a spent key with a
// hold far longer than the test; when its context ends, the client tells
// the server, which stops holding the wait, so the next window's token is
// not spent on it.
func TestClientCancelsAbandonedWait(t *testing.T) {
	srv, ep := newTestServer(t, locker.Config{MaxWait: time.Hour, Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}, Hold: time.Hour})
	if d, err := c.Take(t.Context(), "api", 1); err != nil || !d.OK {
		t.Fatalf("Take=%+v, %v", d, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.Wait(ctx, "api", 1)
		done <- err
	}()
	waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait=%v, want context.Canceled", err)
	}
	waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == 0 })
}

// TestReloadRemovedKeyAnswersHeldWaits holds a wait, removes its key by
// reconfiguring the counter, and checks the wait is answered with the
// error PROTOCOL.md gives, not with sorry or go.
func TestReloadRemovedKeyAnswersHeldWaits(t *testing.T) {
	srv, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}})
	d := mustDealer(t, ep)
	send(t, d, 1, "take api")
	recv(t, d)
	send(t, d, 2, "wait api 1 60000")
	waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == 1 })
	if err := srv.Counter().Reconfigure(nil); err != nil {
		t.Fatal(err)
	}
	if id, r := recv(t, d); id != 2 || r != `error unknown key "api" (removed by a reload)` {
		t.Fatalf("held wait on a removed key: %d %q", id, r)
	}
}
