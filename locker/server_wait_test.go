package locker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	zmq "github.com/pebbe/zmq4"
)

// TestWaitFIFO queues waits one after another, each confirmed held before
// the next is sent, with the server's clock stopped; then it opens one
// window after another and checks that the waits are granted in order,
// two per window.
func TestWaitFIFO(t *testing.T) {
	const w = time.Second
	const k0 = 1_800_000_000
	clock := &fakeClock{}
	clock.Set(clock.window(k0, w).Add(100 * time.Millisecond))
	srv, ep := newTestServer(t, locker.Config{Now: clock.Now, Keys: []locker.KeyConfig{{Name: "api", Limit: 2, Window: w}}})
	d := mustDealer(t, ep)
	send(t, d, 0, "take api 2")
	if _, r := recv(t, d); !strings.HasPrefix(r, "go 0 ") {
		t.Fatalf("take api 2: %q", r)
	}
	const n = 6
	for i := uint64(1); i <= n; i++ {
		send(t, d, i, "wait api 1 60000")
		waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == int64(i) })
	}
	next := uint64(1)
	for k := int64(k0 + 1); next <= n; k++ {
		clock.Set(clock.window(k, w))
		for j := 0; j < 2; j++ {
			id, r := recv(t, d)
			if id != next {
				t.Fatalf("reply for wait %d came when wait %d's was due: FIFO broken", id, next)
			}
			dec, err := locker.ParseReply([]byte(r))
			if err != nil || dec.Kind != locker.ReplyGo || dec.Decision.Window != k {
				t.Fatalf("wait %d: %q, want go in window %d", id, r, k)
			}
			next++
		}
		if got := lockertest.Waiters(srv, "api"); got != int64(n+1-next) {
			t.Fatalf("after window %d: %d waiters, want %d", k, got, n+1-next)
		}
	}
}

// TestWaitFIFOAcrossSockets queues waits from separate DEALER sockets,
// each confirmed held before the next is sent, then opens one window
// after another (limit 1, clock held still in between) and checks that
// the waits are granted in the order they came, one per window.
func TestWaitFIFOAcrossSockets(t *testing.T) {
	const w = time.Second
	const k0 = 1_800_000_000
	const n = 5
	clock := &fakeClock{}
	clock.Set(clock.window(k0, w).Add(time.Millisecond))
	srv, ep := newTestServer(t, locker.Config{Now: clock.Now, Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: w}}})
	socks := make([]*zmq.Socket, n+1)
	poller := zmq.NewPoller()
	for i := range socks {
		socks[i] = mustDealer(t, ep)
		poller.Add(socks[i], zmq.POLLIN)
	}
	send(t, socks[0], 0, "take api")
	if _, r := recv(t, socks[0]); r != fmt.Sprintf("go 0 999 %d", k0) {
		t.Fatalf("take: %q", r)
	}
	for i := 1; i <= n; i++ {
		send(t, socks[i], uint64(i), "wait api 1 600000")
		waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == int64(i) })
	}
	for i := 1; i <= n; i++ {
		k := int64(k0 + i)
		clock.Set(clock.window(k, w))
		ready, err := poller.Poll(5 * time.Second)
		if err != nil || len(ready) == 0 {
			t.Fatalf("window %d opened: no wait answered within 5s (%v)", k, err)
		}
		if ready[0].Socket != socks[i] {
			for j := range socks {
				if ready[0].Socket == socks[j] {
					t.Fatalf("window %d went to wait %d, want wait %d: FIFO broken", k, j, i)
				}
			}
		}
		id, r := recv(t, socks[i])
		if want := fmt.Sprintf("go 0 1000 %d", k); id != uint64(i) || r != want {
			t.Fatalf("wait %d: id %d %q, want %q", i, id, r, want)
		}
		if got := lockertest.Waiters(srv, "api"); got != int64(n-i) {
			t.Fatalf("after window %d: %d waiters, want %d", k, got, n-i)
		}
	}
}

// TestWaitFIFOMixedCounts queues waits for different token counts from
// REQ sockets, one goroutine each, in a known order (each confirmed held
// through status before the next is sent), then opens one window after
// another on the server's clock. The waits are granted strictly in order:
// a head that needs more than is left holds back the smaller ones behind
// it, and a take does not jump the queue.
func TestWaitFIFOMixedCounts(t *testing.T) {
	const w = time.Second
	const k0 = 1_800_000_000
	clock := &fakeClock{}
	clock.Set(clock.window(k0, w).Add(500 * time.Millisecond))
	_, ep := newTestServer(t, locker.Config{Now: clock.Now, MaxWait: time.Hour, Keys: []locker.KeyConfig{{Name: "api", Limit: 2, Window: w}}})
	ctl := mustREQ(t, ep)
	if r := roundTrip(t, ctl, "take api 2"); r != "go 0 500 1800000000" {
		t.Fatalf("take api 2: %q", r)
	}
	ns := []int64{1, 2, 1, 1, 2}
	type result struct {
		i     int
		reply string
		err   error
	}
	results := make(chan result, len(ns))
	for i, n := range ns {
		go func() {
			s, err := dialREQ(ep)
			if err != nil {
				results <- result{i, "", err}
				return
			}
			defer s.Close()
			var r []string
			if _, err = s.Send(fmt.Sprintf("wait api %d 3600000", n), 0); err == nil {
				r, err = s.RecvMessage(0)
			}
			results <- result{i, strings.Join(r, "|"), err}
		}()
		waitFor(t, func() bool { return wireWaiters(t, ctl, "api") == int64(i+1) })
	}
	// Window by window: which waits are granted, and the reply each gets.
	want := []map[int]string{
		{0: "go 1 1000 1800000001"}, // 1 left, but wait 1 needs 2
		{1: "go 0 1000 1800000002"},
		{2: "go 1 1000 1800000003", 3: "go 0 1000 1800000003"},
		{4: "go 0 1000 1800000004"},
	}
	held := len(ns)
	for i, grants := range want {
		k := int64(k0 + 1 + i)
		clock.Set(clock.window(k, w))
		for range grants {
			select {
			case r := <-results:
				if r.err != nil || r.reply != grants[r.i] {
					t.Fatalf("window %d: wait %d got %q, %v; want %q", k, r.i, r.reply, r.err, grants[r.i])
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("window %d: grants %v not all answered", k, grants)
			}
		}
		held -= len(grants)
		if got := wireWaiters(t, ctl, "api"); got != int64(held) {
			t.Fatalf("window %d: %d waits held, want %d", k, got, held)
		}
		if k == k0+1 {
			if r := roundTrip(t, ctl, "take api"); r != "sorry 1000 1800000001" {
				t.Fatalf("take with 1 token left and waits queued: %q, want sorry", r)
			}
		}
	}
}

// TestWaitersNotOvertaken holds a wait for more tokens than are left and
// checks that neither a take nor a smaller wait that could be granted gets
// past it; when the next window opens, both waits are granted in order.
func TestWaitersNotOvertaken(t *testing.T) {
	const w = time.Second
	const k0 = 1_800_000_000
	clock := &fakeClock{}
	clock.Set(clock.window(k0, w).Add(100 * time.Millisecond))
	srv, ep := newTestServer(t, locker.Config{Now: clock.Now, Keys: []locker.KeyConfig{{Name: "api", Limit: 3, Window: w}}})
	a, b, c, d := mustDealer(t, ep), mustDealer(t, ep), mustDealer(t, ep), mustDealer(t, ep)
	send(t, a, 1, "take api 2")
	if _, r := recv(t, a); r != fmt.Sprintf("go 1 900 %d", k0) {
		t.Fatalf("take 2: %q", r)
	}
	send(t, b, 2, "wait api 2 600000") // needs 2, 1 left: held
	waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == 1 })
	send(t, c, 3, "take api 1") // 1 is left, but b is first
	if _, r := recv(t, c); r != fmt.Sprintf("sorry 900 %d", k0) {
		t.Fatalf("take behind a held wait: %q, want sorry", r)
	}
	send(t, d, 4, "wait api 1 600000") // likewise: held behind b
	waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == 2 })
	for _, k := range srv.Stats().Keys {
		if k.Name == "api" && k.Granted != 2 {
			t.Fatalf("granted %d while waits were held, want 2", k.Granted)
		}
	}
	clock.Set(clock.window(k0+1, w))
	if _, r := recv(t, b); r != fmt.Sprintf("go 1 1000 %d", k0+1) {
		t.Fatalf("first held wait: %q, want go 1 1000 %d", r, k0+1)
	}
	if _, r := recv(t, d); r != fmt.Sprintf("go 0 1000 %d", k0+1) {
		t.Fatalf("second held wait: %q, want go 0 1000 %d (granted after the first)", r, k0+1)
	}
}

func TestWaitBoundsAndQueue(t *testing.T) {
	clock := &fakeClock{}
	clock.Set(time.Unix(1_800_000_000, 0))
	srv, ep := newTestServer(t, locker.Config{Now: clock.Now, MaxWaiters: 2, Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}})
	d := mustDealer(t, ep)
	send(t, d, 1, "take api")
	if _, r := recv(t, d); !strings.HasPrefix(r, "go ") {
		t.Fatalf("take: %q", r)
	}
	// MAX_MS 0: answered at once.
	send(t, d, 2, "wait api 1 0")
	if _, r := recv(t, d); !strings.HasPrefix(r, "sorry ") {
		t.Fatalf("wait with MAX_MS 0: %q", r)
	}
	// Two held (the queue's bound), the third refused at once.
	send(t, d, 3, "wait api 1 150")
	send(t, d, 4, "wait api 1 60000")
	waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == 2 })
	send(t, d, 5, "wait api 1 60000")
	if id, r := recv(t, d); id != 5 || !strings.HasPrefix(r, "sorry ") {
		t.Fatalf("third wait on a full queue: %d %q, want an immediate sorry", id, r)
	}
	// A take does not overtake the queue, even if it could be granted.
	send(t, d, 6, "take api")
	if id, r := recv(t, d); id != 6 || !strings.HasPrefix(r, "sorry ") {
		t.Fatalf("take with waiters queued: %d %q, want sorry", id, r)
	}
	// Wait 3 expires after its MAX_MS, on the server's clock, with
	// sorry; wait 4 stays held.
	clock.Set(clock.Now().Add(150 * time.Millisecond))
	if id, r := recv(t, d); id != 3 || !strings.HasPrefix(r, "sorry ") {
		t.Fatalf("expired wait: %d %q, want 3 sorry", id, r)
	}
	if n := lockertest.Waiters(srv, "api"); n != 1 {
		t.Fatalf("waiters=%d after the expiry, want 1", n)
	}
}

// TestWaitQueueBoundPerKey fills one key's queue (MaxWaiters 2) and
// checks that the third wait is refused at once while another key still
// queues.
func TestWaitQueueBoundPerKey(t *testing.T) {
	srv, ep := newTestServer(t, locker.Config{MaxWaiters: 2, Keys: []locker.KeyConfig{
		{Name: "a", Limit: 1, Window: time.Hour}, {Name: "b", Limit: 1, Window: time.Hour}}})
	s := mustDealer(t, ep)
	send(t, s, 1, "take a")
	send(t, s, 2, "take b")
	recv(t, s)
	recv(t, s)
	send(t, s, 3, "wait a 1 60000")
	send(t, s, 4, "wait a 1 60000")
	waitFor(t, func() bool { return lockertest.Waiters(srv, "a") == 2 })
	send(t, s, 5, "wait a 1 60000") // held, it would time out recv
	id, r := recv(t, s)
	if id != 5 || mustReply(t, r).OK {
		t.Fatalf("third wait on a full queue: %d %q, want sorry", id, r)
	}
	send(t, s, 6, "wait b 1 60000")
	waitFor(t, func() bool { return lockertest.Waiters(srv, "b") == 1 })
	if n := lockertest.Waiters(srv, "a"); n != 2 {
		t.Fatalf("queue of a holds %d, want 2", n)
	}
}

// TestWaitMaxMSOnTheServerClock holds a wait with MAX_MS 1000 and moves
// the server's clock: held at 999 ms, answered with sorry at 1000 ms.
func TestWaitMaxMSOnTheServerClock(t *testing.T) {
	const w = time.Hour
	const k = 500_000
	clock := &fakeClock{}
	start := clock.window(k, w).Add(10 * time.Minute)
	clock.Set(start)
	_, ep := newTestServer(t, locker.Config{Now: clock.Now, Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: w}}})
	ctl := mustREQ(t, ep)
	if r := roundTrip(t, ctl, "take api"); r != "go 0 3000000 500000" {
		t.Fatalf("take: %q", r)
	}
	d := mustDealer(t, ep)
	send(t, d, 7, "wait api 1 1000")
	waitFor(t, func() bool { return wireWaiters(t, ctl, "api") == 1 })
	clock.Set(start.Add(999 * time.Millisecond))
	// The loop serves waiters before it reads a request, so a status
	// answered after the clock moved has seen the wait at 999 ms.
	if n := wireWaiters(t, ctl, "api"); n != 1 {
		t.Fatalf("at 999 ms: %d waits held, want 1", n)
	}
	clock.Set(start.Add(time.Second))
	if id, r := recv(t, d); id != 7 || r != "sorry 2999000 500000" {
		t.Fatalf("at 1000 ms: %d %q, want 7 \"sorry 2999000 500000\"", id, r)
	}
	if n := wireWaiters(t, ctl, "api"); n != 0 {
		t.Fatalf("after the expiry: %d waits held", n)
	}
}

// TestWaitMaxMSExpires checks that a held wait is answered with sorry
// once its MAX_MS has passed, not before, and that the sorry names the
// current window and the time to its end.
func TestWaitMaxMSExpires(t *testing.T) {
	const w = time.Hour
	srv, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: w}}})
	s := mustDealer(t, ep)
	send(t, s, 1, "take api")
	recv(t, s)
	const maxMS = 120
	start := time.Now()
	send(t, s, 2, fmt.Sprintf("wait api 1 %d", maxMS))
	_, r := recv(t, s)
	got := time.Now()
	el := got.Sub(start)
	dec := mustReply(t, r)
	if dec.OK {
		t.Fatalf("wait on a spent hour: %q, want sorry", r)
	}
	if el < maxMS*time.Millisecond {
		t.Fatalf("sorry after %v, want after %d ms", el, maxMS)
	}
	if k := locker.WindowIndex(got, w); dec.Window != k && dec.Window != k-1 {
		t.Fatalf("sorry window %d, want the current %d", dec.Window, k)
	}
	if end := time.Unix(0, (dec.Window+1)*int64(w)); dec.RetryAfter < end.Sub(got)-time.Second || dec.RetryAfter > end.Sub(start)+time.Millisecond {
		t.Fatalf("RETRY_MS %v, want the time to the window's end (%v)", dec.RetryAfter, end.Sub(got))
	}
	if n := lockertest.Waiters(srv, "api"); n != 0 {
		t.Fatalf("%d waiters after the expiry, want 0", n)
	}
	t.Logf("MAX_MS %d answered after %v", maxMS, el)
}

// TestWaitAnsweredWhenItsWindowOpens holds a wait for a whole window's
// tokens, window after window, on the server's clock: a nanosecond
// before the next window opens the wait is still held (a status request
// answered after the clock moved has seen it), and once the window opens
// it is answered go in that window with nothing else sent to the server,
// so the loop must wake by itself.
func TestWaitAnsweredWhenItsWindowOpens(t *testing.T) {
	const w = 200 * time.Millisecond
	const k0 = 9_000_000_000
	clock := &fakeClock{}
	clock.Set(clock.window(k0, w).Add(50 * time.Millisecond))
	_, ep := newTestServer(t, locker.Config{Now: clock.Now, Keys: []locker.KeyConfig{{Name: "api", Limit: 2, Window: w}}})
	ctl := mustREQ(t, ep)
	if r := roundTrip(t, ctl, "take api 2"); r != fmt.Sprintf("go 0 150 %d", k0) {
		t.Fatalf("take api 2: %q", r)
	}
	d := mustDealer(t, ep)
	for k := int64(k0 + 1); k <= k0+4; k++ {
		id := uint64(k - k0)
		send(t, d, id, "wait api 2 60000")
		waitFor(t, func() bool { return wireWaiters(t, ctl, "api") == 1 })
		clock.Set(clock.window(k, w).Add(-1))
		if n := wireWaiters(t, ctl, "api"); n != 1 {
			t.Fatalf("1ns before window %d opened: %d waits held, want 1", k, n)
		}
		clock.Set(clock.window(k, w))
		if got, r := recv(t, d); got != id || r != fmt.Sprintf("go 0 200 %d", k) {
			t.Fatalf("wait %d as window %d opened: %d %q, want go 0 200 %d", id, k, got, r, k)
		}
	}
}

// TestWaitServedWhenWindowTurnsMidBatch moves the server's clock into the
// next window while the server handles a request (from its Observer, on
// the loop goroutine), with a wait held. Nothing else arrives afterwards,
// so the held wait must be answered without a further request to wake the
// loop: the loop has to see that the window it last served waiters in is
// over before it sleeps. Its sleep is made an hour long, so a loop that
// sleeps first leaves the wait unanswered and the test fails for certain.
func TestWaitServedWhenWindowTurnsMidBatch(t *testing.T) {
	const w = time.Hour
	const k0 = 500_000
	clock := &fakeClock{}
	clock.Set(clock.window(k0, w).Add(time.Minute))
	var arm atomic.Int64 // window to move to on the next sorry, 0 for none
	obs := observerFunc(func(key string, o locker.Outcome, _ time.Duration) {
		if o == locker.OutcomeSorry {
			if k := arm.Swap(0); k != 0 {
				clock.Set(clock.window(k, w))
			}
		}
	})
	srv, err := locker.NewServer(locker.Config{Endpoints: []string{"tcp://127.0.0.1:*"}, Now: clock.Now, Observer: obs,
		MaxWait: 24 * time.Hour, Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: w}}})
	if err != nil {
		t.Fatal(err)
	}
	locker.SetPollInterval(srv, time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	<-srv.Ready()
	d := mustDealer(t, srv.Endpoints()[0])
	send(t, d, 1, "take api")
	if _, r := recv(t, d); !strings.HasPrefix(r, "go 0 ") {
		t.Fatalf("take: %q", r)
	}
	for i := int64(0); i < 5; i++ {
		k := k0 + i // its token is spent
		send(t, d, 2, "wait api 1 600000000")
		waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == 1 })
		arm.Store(k + 1)
		send(t, d, 3, "take api") // refused: the queue is not empty; the clock turns
		if id, r := recv(t, d); id != 3 || !strings.HasPrefix(r, "sorry ") {
			t.Fatalf("take behind a held wait: %d %q, want sorry", id, r)
		}
		if id, r := recv(t, d); id != 2 || r != fmt.Sprintf("go 0 3600000 %d", k+1) {
			t.Fatalf("held wait: %d %q, want 2 \"go 0 3600000 %d\"", id, r, k+1)
		}
	}
	cancel()
	send(t, d, 4, "ping") // wakes the loop, which then sees ctx done
	if err := <-done; !errors.Is(err, locker.ErrServerClosed) {
		t.Fatalf("Run=%v, want ErrServerClosed", err)
	}
}
