package locker_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	zmq "github.com/pebbe/zmq4"
)

// dialREQ returns a REQ socket connected to ep, for use by the calling
// goroutine only, which must close it.
func dialREQ(ep string) (*zmq.Socket, error) {
	s, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		return nil, err
	}
	s.SetLinger(0)
	s.SetRcvtimeo(5 * time.Second)
	s.SetSndtimeo(5 * time.Second)
	if err := s.Connect(ep); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// mustReply parses a full go or sorry reply.
func mustReply(tb testing.TB, body string) locker.Decision {
	tb.Helper()
	r, err := locker.ParseReply([]byte(body))
	if err != nil || !r.Full {
		tb.Fatalf("reply %q: want a full go or sorry (%v)", body, err)
	}
	return r.Decision
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
		waitFor(t, func() bool { return waitersOf(srv, "api") == int64(i) })
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
		if got := waitersOf(srv, "api"); got != int64(n-i) {
			t.Fatalf("after window %d: %d waiters, want %d", k, got, n-i)
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
	waitFor(t, func() bool { return waitersOf(srv, "api") == 1 })
	send(t, c, 3, "take api 1") // 1 is left, but b is first
	if _, r := recv(t, c); r != fmt.Sprintf("sorry 900 %d", k0) {
		t.Fatalf("take behind a held wait: %q, want sorry", r)
	}
	send(t, d, 4, "wait api 1 600000") // likewise: held behind b
	waitFor(t, func() bool { return waitersOf(srv, "api") == 2 })
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
	if el < maxMS*time.Millisecond || el > maxMS*time.Millisecond+time.Second {
		t.Fatalf("sorry after %v, want after %d ms (and within a second more)", el, maxMS)
	}
	if k := locker.WindowIndex(got, w); dec.Window != k && dec.Window != k-1 {
		t.Fatalf("sorry window %d, want the current %d", dec.Window, k)
	}
	if end := time.Unix(0, (dec.Window+1)*int64(w)); dec.RetryAfter < end.Sub(got)-time.Second || dec.RetryAfter > end.Sub(start)+time.Millisecond {
		t.Fatalf("RETRY_MS %v, want the time to the window's end (%v)", dec.RetryAfter, end.Sub(got))
	}
	if n := waitersOf(srv, "api"); n != 0 {
		t.Fatalf("%d waiters after the expiry, want 0", n)
	}
	t.Logf("MAX_MS %d answered after %v", maxMS, el)
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
	waitFor(t, func() bool { return waitersOf(srv, "a") == 2 })
	start := time.Now()
	send(t, s, 5, "wait a 1 60000")
	id, r := recv(t, s)
	if id != 5 || mustReply(t, r).OK {
		t.Fatalf("third wait on a full queue: %d %q, want sorry", id, r)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("refusal took %v, want at once", el)
	}
	send(t, s, 6, "wait b 1 60000")
	waitFor(t, func() bool { return waitersOf(srv, "b") == 1 })
	if n := waitersOf(srv, "a"); n != 2 {
		t.Fatalf("queue of a holds %d, want 2", n)
	}
}

// TestShutdownAnswersWaitsOnEveryKey holds waits on two keys from
// several sockets, cancels the server's context, and checks that every
// wait gets a full sorry and Run returns ErrServerClosed.
func TestShutdownAnswersWaitsOnEveryKey(t *testing.T) {
	srv, stop := startServer(t, locker.Config{Endpoints: []string{"tcp://127.0.0.1:*"}, Keys: []locker.KeyConfig{
		{Name: "a", Limit: 1, Window: time.Hour}, {Name: "b", Limit: 2, Window: time.Minute}}})
	t.Cleanup(stop)
	ep := srv.Endpoints()[0]
	owner := mustDealer(t, ep)
	send(t, owner, 0, "take a")
	recv(t, owner)
	send(t, owner, 0, "take b 2")
	recv(t, owner)
	var socks []*zmq.Socket
	for i, key := range []string{"a", "b", "a", "b", "a"} {
		s := mustDealer(t, ep)
		send(t, s, uint64(i), "wait "+key)
		socks = append(socks, s)
	}
	waitFor(t, func() bool { return waitersOf(srv, "a") == 3 && waitersOf(srv, "b") == 2 })
	stop() // fails the test unless Run returns ErrServerClosed
	for i, s := range socks {
		id, r := recv(t, s)
		if id != uint64(i) || !strings.HasPrefix(r, "sorry ") || mustReply(t, r).OK {
			t.Fatalf("held wait %d at shutdown: %d %q, want sorry", i, id, r)
		}
	}
}

// TestREQClientsExactLimitPerWindow has 8 REQ clients, one goroutine and
// socket each, hammer a key (5 per 50 ms) for about 20 windows, and counts
// the answers by their WINDOW field. A window that answered any sorry must
// have granted exactly 5; none may grant more.
func TestREQClientsExactLimitPerWindow(t *testing.T) {
	const limit, w, windows, clients = 5, 50 * time.Millisecond, 20, 8
	_, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: "api", Limit: limit, Window: w}}})
	type tally struct{ gos, sorries int }
	var (
		mu  sync.Mutex
		per = map[int64]*tally{}
		wg  sync.WaitGroup
	)
	errs := make(chan error, clients)
	end := time.Now().Add(windows * w)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := dialREQ(ep)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			local := map[int64]*tally{}
			for time.Now().Before(end) {
				if _, err := s.Send("take api", 0); err != nil {
					errs <- err
					return
				}
				r, err := s.Recv(0)
				if err != nil {
					errs <- fmt.Errorf("no reply: %w", err)
					return
				}
				rep, err := locker.ParseReply([]byte(r))
				if err != nil || !rep.Full {
					errs <- fmt.Errorf("reply %q: %v", r, err)
					return
				}
				c := local[rep.Decision.Window]
				if c == nil {
					c = &tally{}
					local[rep.Decision.Window] = c
				}
				if rep.Decision.OK {
					c.gos++
				} else {
					c.sorries++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for k, c := range local {
				if per[k] == nil {
					per[k] = &tally{}
				}
				per[k].gos += c.gos
				per[k].sorries += c.sorries
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	lo, hi := int64(1<<62), int64(-1<<62)
	for k := range per {
		lo, hi = min(lo, k), max(hi, k)
	}
	exact, requests := 0, 0
	for k := lo + 1; k < hi; k++ {
		c := per[k]
		if c == nil {
			c = &tally{}
		}
		requests += c.gos + c.sorries
		switch {
		case c.gos > limit:
			t.Errorf("window %d granted %d, above the limit %d", k, c.gos, limit)
		case c.sorries > 0 && c.gos != limit:
			t.Errorf("window %d said sorry %d times having granted %d, want exactly %d", k, c.sorries, c.gos, limit)
		case c.gos == limit:
			exact++
		default:
			t.Logf("window %d: %d go, no sorry (the clients were starved)", k, c.gos)
		}
	}
	t.Logf("%d full windows, %d granted exactly %d, %d requests", hi-lo-1, exact, limit, requests)
	if exact < windows/2 {
		t.Fatalf("only %d windows of %d..%d granted exactly %d", exact, lo+1, hi-1, limit)
	}
}

// TestSeedREQClientGetsExactlyLimit is the seed's client: a plain REQ
// socket sending "let me go" more often than the limit allows (3 per
// 200 ms, a request every 5 ms). The replies are bare, so each is put in
// the epoch-aligned window that holds both the moment it was sent and the
// moment its reply came; a window touched by a request that spans a
// boundary is left out. Every other window, bar the first and last, must
// have granted exactly the limit.
func TestSeedREQClientGetsExactlyLimit(t *testing.T) {
	const limit, w, windows = 3, 200 * time.Millisecond, 12
	_, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: locker.DefaultKey, Limit: limit, Window: w}}})
	s, err := dialREQ(ep)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	asked, gos := map[int64]int{}, map[int64]int{}
	ambiguous := map[int64]bool{}
	lo, hi := int64(1<<62), int64(-1<<62)
	for end := time.Now().Add(windows * w); time.Now().Before(end); {
		before := time.Now()
		if _, err := s.Send("let me go", 0); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv(0)
		if err != nil {
			t.Fatalf("no reply: %v", err)
		}
		after := time.Now()
		if r != "go" && r != "sorry" {
			t.Fatalf("reply %q, want a bare go or sorry", r)
		}
		k0, k1 := locker.WindowIndex(before, w), locker.WindowIndex(after, w)
		lo, hi = min(lo, k0), max(hi, k1)
		if k0 != k1 {
			ambiguous[k0], ambiguous[k1] = true, true
			continue
		}
		asked[k0]++
		if r == "go" {
			gos[k0]++
		}
		time.Sleep(5 * time.Millisecond) // pacing, not synchronisation: the client's request rate
	}
	judged := 0
	for k := lo + 1; k < hi; k++ {
		if ambiguous[k] || asked[k] < limit+1 {
			t.Logf("window %d not judged: asked %d times, spanned %v", k, asked[k], ambiguous[k])
			continue
		}
		judged++
		if gos[k] != limit {
			t.Errorf("window %d: %d go out of %d requests, want exactly %d", k, gos[k], asked[k], limit)
		}
	}
	t.Logf("%d of %d windows judged", judged, hi-lo-1)
	if judged < 3 {
		t.Fatalf("only %d windows could be judged", judged)
	}
}
