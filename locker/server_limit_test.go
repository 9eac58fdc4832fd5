package locker_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

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
