package locker_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

func TestFixedWindowEdges(t *testing.T) {
	const w = 800 * time.Millisecond
	const k = 2244384793
	type step struct {
		off     time.Duration // from the start of window k
		n       int64
		want    locker.Decision
		comment string
	}
	tests := []struct {
		name  string
		limit int64
		steps []step
	}{
		{"limit reached then next window", 5, []step{
			{0, 1, locker.Decision{OK: true, Remaining: 4, Reset: w, Window: k}, "first instant of the window"},
			{100 * time.Millisecond, 3, locker.Decision{OK: true, Remaining: 1, Reset: 700 * time.Millisecond, Window: k}, "N=3"},
			{200 * time.Millisecond, 2, locker.Decision{Reset: 600 * time.Millisecond, RetryAfter: 600 * time.Millisecond, Window: k}, "2 > 1 left: whole or nothing"},
			{300 * time.Millisecond, 1, locker.Decision{OK: true, Remaining: 0, Reset: 500 * time.Millisecond, Window: k}, "the last one"},
			{w - 1, 1, locker.Decision{Reset: 1, RetryAfter: 1, Window: k}, "last ns of the window"},
			{w, 1, locker.Decision{OK: true, Remaining: 4, Reset: w, Window: k + 1}, "first ns of the next"},
		}},
		{"limit 1", 1, []step{
			{w / 2, 1, locker.Decision{OK: true, Remaining: 0, Reset: w / 2, Window: k}, ""},
			{w/2 + 1, 1, locker.Decision{Reset: w/2 - 1, RetryAfter: w/2 - 1, Window: k}, ""},
			{3 * w, 1, locker.Decision{OK: true, Remaining: 0, Reset: w, Window: k + 3}, "windows skipped"},
		}},
		{"N equal to the limit", 5, []step{
			{0, 5, locker.Decision{OK: true, Remaining: 0, Reset: w, Window: k}, ""},
			{1, 1, locker.Decision{Reset: w - 1, RetryAfter: w - 1, Window: k}, ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCounter(t, locker.KeyConfig{Name: "api", Limit: tc.limit, Window: w})
			for i, s := range tc.steps {
				got, err := c.TakeAt(at(k, w, s.off), "api", s.n)
				if err != nil || got != s.want {
					t.Fatalf("step %d (%s): TakeAt(+%v, %d)=%+v, %v, want %+v", i, s.comment, s.off, s.n, got, err, s.want)
				}
			}
		})
	}
}

// TestWindowIndex checks the window of instants at the edges of windows
// of several lengths, before and after the epoch.
func TestWindowIndex(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
		w    time.Duration
		want int64
	}{
		{"800ms, epoch", time.Unix(0, 0), 800 * time.Millisecond, 0},
		{"800ms, last ns of window 0", time.Unix(0, int64(800*time.Millisecond)-1), 800 * time.Millisecond, 0},
		{"800ms, first ns of window 1", time.Unix(0, int64(800*time.Millisecond)), 800 * time.Millisecond, 1},
		{"800ms, first ns of a 2041 window", at(2244384793, 800*time.Millisecond, 0), 800 * time.Millisecond, 2244384793},
		{"800ms, last ns of a 2041 window", at(2244384793, 800*time.Millisecond, 800*time.Millisecond-1), 800 * time.Millisecond, 2244384793},
		{"800ms, 1ns before the epoch: floor, not truncation", time.Unix(0, -1), 800 * time.Millisecond, -1},
		{"800ms, a window before the epoch", time.Unix(0, -int64(800*time.Millisecond)), 800 * time.Millisecond, -1},
		{"800ms, a window and 1ns before the epoch", time.Unix(0, -int64(800*time.Millisecond)-1), 800 * time.Millisecond, -2},
		{"1ms, first ns", time.Unix(0, 5*int64(time.Millisecond)), time.Millisecond, 5},
		{"1ms, last ns", time.Unix(0, 6*int64(time.Millisecond)-1), time.Millisecond, 5},
		{"24h, epoch", time.Unix(0, 0), 24 * time.Hour, 0},
		{"24h, a day in", time.Date(1970, 1, 2, 0, 0, 0, 0, time.UTC), 24 * time.Hour, 1},
		{"24h, 2026-01-01 23:59:59.999999999", time.Date(2026, 1, 1, 23, 59, 59, 999_999_999, time.UTC), 24 * time.Hour, 20454},
		{"24h, 2026-01-02", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), 24 * time.Hour, 20455},
		{"24h, zone does not matter", time.Date(2026, 1, 2, 1, 0, 0, 0, time.FixedZone("X", 3600)), 24 * time.Hour, 20455},
		{"24h, 1969-12-31 23:59:59", time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), 24 * time.Hour, -1},
		{"24h, 1969-12-31", time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), 24 * time.Hour, -1},
		{"24h, 1969-12-30 23:59:59.999999999", time.Date(1969, 12, 30, 23, 59, 59, 999_999_999, time.UTC), 24 * time.Hour, -2},
		{"1s, 1900", time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Second, -2208988800},
		{"1s, 1900 plus 1ns", time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC), time.Second, -2208988800},
		{"1s, 1900 less 1ns", time.Date(1899, 12, 31, 23, 59, 59, 999_999_999, time.UTC), time.Second, -2208988801},
		{"800ms, a minute before the epoch", time.Unix(-60, 0), 800 * time.Millisecond, -75},
		{"800ms, a minute before the epoch plus 1ns", time.Unix(-60, 1), 800 * time.Millisecond, -75},
		{"800ms, a minute before the epoch less 1ns", time.Unix(-60, -1), 800 * time.Millisecond, -76},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := locker.WindowIndex(tc.t, tc.w)
			if got != tc.want {
				t.Fatalf("WindowIndex(%v, %v)=%d, want %d", tc.t, tc.w, got, tc.want)
			}
			// t lies in [k·w, (k+1)·w).
			ns := tc.t.UnixNano()
			if lo, hi := got*int64(tc.w), (got+1)*int64(tc.w); ns < lo || ns >= hi {
				t.Fatalf("%d ns not in window %d = [%d, %d)", ns, got, lo, hi)
			}
		})
	}
}

// TestStaleTimeDoesNotReopenWindow: callers that read the clock before
// taking the counter's lock reach it out of order, so a take at the last
// instant of window k can come after one in window k+1. Such a take must
// not start window k's count again, which would grant its tokens twice.
func TestStaleTimeDoesNotReopenWindow(t *testing.T) {
	const w = time.Second
	const k = 1_800_000_000
	c := mustCounter(t, locker.KeyConfig{Name: "api", Limit: 2, Window: w})
	steps := []struct {
		at   time.Time
		want locker.Decision
	}{
		{at(k, w, 500*time.Millisecond), locker.Decision{OK: true, Remaining: 1, Reset: 500 * time.Millisecond, Window: k}},
		{at(k, w, 600*time.Millisecond), locker.Decision{OK: true, Remaining: 0, Reset: 400 * time.Millisecond, Window: k}},
		{at(k+1, w, 0), locker.Decision{OK: true, Remaining: 1, Reset: w, Window: k + 1}},
		// Late arrivals from window k count in window k+1.
		{at(k, w, w-1), locker.Decision{OK: true, Remaining: 0, Reset: w, Window: k + 1}},
		{at(k, w, w-1), locker.Decision{Reset: w, RetryAfter: w, Window: k + 1}},
		{at(k+1, w, 1), locker.Decision{Reset: w - 1, RetryAfter: w - 1, Window: k + 1}},
	}
	granted := map[int64]int64{}
	for i, s := range steps {
		d, err := c.TakeAt(s.at, "api", 1)
		if err != nil || d != s.want {
			t.Errorf("step %d: TakeAt(%d ns)=%+v, %v; want %+v", i, s.at.UnixNano(), d, err, s.want)
		}
		if d.OK {
			granted[d.Window]++
		}
	}
	for win, n := range granted {
		if n > 2 {
			t.Errorf("window %d granted %d, above the limit 2", win, n)
		}
	}
	// A peek with a stale time does not move the counter back either.
	c.TakeAt(at(k+2, w, 0), "api", 1)
	for _, ks := range c.SnapshotAt(at(k+1, w, w-1)) {
		if ks.Name == "api" && (ks.WindowIndex != k+2 || ks.Granted != 1) {
			t.Errorf("stale snapshot: window %d granted %d, want window %d granted 1", ks.WindowIndex, ks.Granted, k+2)
		}
	}
	// A clock set back by 12 windows, a stale reading or a clock stepped
	// back, counts in the current window too: a window never goes back,
	// or it would grant its tokens a second time when the clock caught up.
	if d, _ := c.TakeAt(at(k-10, w, 0), "api", 2); d.OK || d.Window != k+2 {
		t.Errorf("after the clock went back 12 windows: %+v, want sorry in window %d", d, k+2)
	}
	if d, _ := c.TakeAt(at(k-10, w, 0), "api", 1); !d.OK || d.Window != k+2 || d.Reset != w {
		t.Errorf("after the clock went back 12 windows: %+v, want go in window %d, reset %v", d, k+2, w)
	}
}

// TestCounterNeverGoesBack reads the counter at instants before the window
// it is in, as a status or metrics reader whose clock was read just before
// the server's does, or a clock stepped back. None of them may make the
// counter forget the grants of its current window.
func TestCounterNeverGoesBack(t *testing.T) {
	const w = time.Second
	const k = 1_800_000_000
	stale := at(k, w, -time.Microsecond) // the last µs of window k-1
	sorry := locker.Decision{Reset: w, RetryAfter: w, Window: k}
	tests := []struct {
		name string
		read func(t *testing.T, c *locker.Counter)
	}{
		{"SnapshotAt", func(t *testing.T, c *locker.Counter) { c.SnapshotAt(stale) }},
		{"TakeAt", func(t *testing.T, c *locker.Counter) {
			if d, err := c.TakeAt(stale, "api", 1); err != nil || d != sorry {
				t.Errorf("TakeAt at a stale instant=%+v, %v; want %+v (counted in window %d)", d, err, sorry, k)
			}
		}},
		{"SnapshotAt an hour before", func(t *testing.T, c *locker.Counter) {
			c.SnapshotAt(at(k, w, -time.Hour))
		}},
		{"SetRemoteAt", func(t *testing.T, c *locker.Counter) {
			fc := locker.FederationConfig{Strict: true, Members: 1, Fence: at(k-100, w, 0)}
			if err := c.EnableFederation(fc); err != nil {
				t.Fatal(err)
			}
			c.SetRemoteAt(stale, "api", k-1, 0)
		}},
		{"Reconfigure", func(t *testing.T, c *locker.Counter) {
			if err := c.Reconfigure(c.Keys()); err != nil {
				t.Fatal(err)
			}
			c.SnapshotAt(stale)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCounter(t, locker.KeyConfig{Name: "api", Limit: 2, Window: w})
			now := at(k, w, 0)
			if d, err := c.TakeAt(now, "api", 2); err != nil || !d.OK {
				t.Fatalf("take 2: %+v, %v", d, err)
			}
			tc.read(t, c)
			if d, err := c.TakeAt(now, "api", 1); err != nil || d.OK {
				t.Fatalf("window %d granted a third token of 2 after a read at a stale instant: %+v, %v", k, d, err)
			}
			snap := c.SnapshotAt(now)
			for _, ks := range snap {
				if ks.Name == "api" && (ks.WindowIndex != k || ks.Granted != 2) {
					t.Fatalf("snapshot=%+v, want window %d granted 2", ks, k)
				}
			}
			// Time going on still opens the next window.
			if d, err := c.TakeAt(now.Add(w), "api", 2); err != nil || !d.OK || d.Window != k+1 {
				t.Fatalf("next window: %+v, %v; want go in window %d", d, err, k+1)
			}
		})
	}
}

// TestCounterConcurrentClocks has goroutines take tokens of one key at
// instants that each reads from a shared clock, a little stale or not, as
// concurrent callers do. Whatever the interleaving, no window grants more
// than the limit.
func TestCounterConcurrentClocks(t *testing.T) {
	const (
		w       = 10 * time.Millisecond
		limit   = 3
		workers = 8
		steps   = 2000
	)
	c := mustCounter(t, locker.KeyConfig{Name: "api", Limit: limit, Window: w})
	var clock atomic.Int64
	clock.Store(int64(at(1_800_000_000, w, 0).UnixNano()))
	var mu sync.Mutex
	granted := map[int64]int64{}
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[int64]int64{}
			for i := 0; i < steps; i++ {
				now := time.Unix(0, clock.Add(int64(50*time.Microsecond)))
				if i%3 == g%3 {
					now = now.Add(-time.Duration(i%7) * time.Millisecond) // read a while ago
				}
				d, err := c.TakeAt(now, "api", 1)
				if err != nil {
					t.Error(err)
					return
				}
				if d.OK {
					local[d.Window]++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for k, n := range local {
				granted[k] += n
			}
		}()
	}
	wg.Wait()
	if len(granted) < 10 {
		t.Fatalf("grants in only %d windows: the clock did not move as intended", len(granted))
	}
	for k, n := range granted {
		if n > limit {
			t.Errorf("window %d granted %d tokens, limit %d", k, n, limit)
		}
	}
}

// TestStaleReadNeverMovesWindow reads the counter, through every read-only
// path, at an instant long before its current window (a status, metrics or
// federation reader whose clock was read seconds before it got the lock),
// then takes at the current instant. A read must not move the window, so
// the takes still count in the full window and get sorry: a read that
// rolled the counter back made the next take start a fresh count and grant
// the window's tokens twice.
func TestStaleReadNeverMovesWindow(t *testing.T) {
	const w = 100 * time.Millisecond
	const k = 18_000_000_000
	const limit = 5
	now := at(k, w, 50*time.Millisecond)
	for _, back := range []time.Duration{2 * time.Second, time.Hour} {
		stale := now.Add(-back)
		tests := []struct {
			name string
			fed  bool
			read func(t *testing.T, c *locker.Counter)
		}{
			{"SnapshotAt", false, func(t *testing.T, c *locker.Counter) { c.SnapshotAt(stale) }},
			{"TakeAt", false, func(t *testing.T, c *locker.Counter) {
				if d, err := c.TakeAt(stale, "api", 1); err != nil || d.OK || d.Window != k {
					t.Errorf("TakeAt(-%v)=%+v, %v; want sorry in window %d", back, d, err, k)
				}
			}},
			{"SnapshotAt federated", true, func(t *testing.T, c *locker.Counter) { c.SnapshotAt(stale) }},
			{"LocalAt", true, func(t *testing.T, c *locker.Counter) { c.LocalAt(stale) }},
			{"SetRemoteAt", true, func(t *testing.T, c *locker.Counter) {
				c.SetRemoteAt(stale, "api", locker.WindowIndex(stale, w), 0)
			}},
			{"SetReserveAt", true, func(t *testing.T, c *locker.Counter) {
				c.SetReserveAt(stale, "api", locker.WindowIndex(stale, w), 0)
			}},
			{"GiveAt", true, func(t *testing.T, c *locker.Counter) { c.GiveAt(stale, "api", locker.WindowIndex(stale, w), 1) }},
			{"SetReceivedAt", true, func(t *testing.T, c *locker.Counter) {
				c.SetReceivedAt(stale, "api", locker.WindowIndex(stale, w), 0)
			}},
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s %v back", tc.name, back), func(t *testing.T) {
				c := mustCounter(t, locker.KeyConfig{Name: "api", Limit: limit, Window: w})
				if tc.fed {
					// A federation of one: its share is the whole limit.
					fc := locker.FederationConfig{Strict: true, Members: 1, Fence: at(k-100, w, 0)}
					if err := c.EnableFederation(fc); err != nil {
						t.Fatal(err)
					}
				}
				granted := 0
				for i := 0; i < 2*limit; i++ {
					if i == limit {
						tc.read(t, c)
					}
					d, err := c.TakeAt(now, "api", 1)
					if err != nil {
						t.Fatal(err)
					}
					if d.OK {
						granted++
						if d.Window != k {
							t.Fatalf("take %d counted in window %d, want %d", i, d.Window, k)
						}
					}
				}
				if granted != limit {
					t.Fatalf("window %d granted %d tokens with a read at -%v between takes, want the limit %d", k, granted, back, limit)
				}
			})
		}
	}
}

// TestFixedWindowPeek: PeekAt reports the window a take would count in and
// its grants, and moves nothing, whether the instant is before, in or
// after the current window.
func TestFixedWindowPeek(t *testing.T) {
	const w = time.Second
	const k = 1_800_000_000
	f := locker.NewFixedWindow(3, w)
	if win, g := f.PeekAt(at(k, w, 0)); win != k || g != 0 {
		t.Fatalf("fresh PeekAt=%d, %d; want %d, 0", win, g, k)
	}
	f.TakeAt(at(k, w, 0), 2)
	tests := []struct {
		name    string
		at      time.Time
		win, gr int64
	}{
		{"an hour before", at(k, w, -time.Hour), k, 2},
		{"in the window", at(k, w, w/2), k, 2},
		{"next window", at(k+1, w, 0), k + 1, 0},
		{"a day later", at(k, w, 24*time.Hour), k + 86400, 0},
	}
	for _, tc := range tests {
		if win, g := f.PeekAt(tc.at); win != tc.win || g != tc.gr {
			t.Errorf("%s: PeekAt=%d, %d; want %d, %d", tc.name, win, g, tc.win, tc.gr)
		}
	}
	// Nothing moved: one token is left in window k.
	if d := f.TakeAt(at(k, w, w/2), 2); d.OK {
		t.Fatalf("take 2 after peeks: %+v, want sorry", d)
	}
	if d := f.TakeAt(at(k, w, w/2), 1); !d.OK || d.Remaining != 0 || d.Window != k {
		t.Fatalf("take 1 after peeks: %+v, want go with 0 left in window %d", d, k)
	}
}
