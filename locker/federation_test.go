package locker

import (
	"testing"
	"time"
)

func TestShare(t *testing.T) {
	for _, tc := range []struct {
		limit   int64
		members int
		want    []int64
	}{
		{100, 3, []int64{34, 33, 33}},
		{2, 3, []int64{1, 1, 0}},
		{9, 3, []int64{3, 3, 3}},
		{1, 1, []int64{1}},
	} {
		var sum int64
		for r, w := range tc.want {
			if got := Share(tc.limit, tc.members, r); got != w {
				t.Errorf("Share(%d,%d,%d)=%d, want %d", tc.limit, tc.members, r, got, w)
			}
			sum += w
		}
		if sum != tc.limit {
			t.Errorf("shares of %d sum to %d", tc.limit, sum)
		}
	}
}

func mustFedCounter(tb testing.TB, fc FederationConfig) *Counter {
	tb.Helper()
	c, err := NewCounter([]KeyConfig{{Name: "k", Limit: 10, Window: time.Second}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.EnableFederation(fc); err != nil {
		tb.Fatal(err)
	}
	return c
}

func grants(tb testing.TB, c *Counter, now time.Time, n int) int {
	tb.Helper()
	got := 0
	for i := 0; i < n; i++ {
		d, err := c.TakeAt(now, "k", 1)
		if err != nil {
			tb.Fatal(err)
		}
		if d.OK {
			got++
		}
	}
	return got
}

func TestStrictBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := mustFedCounter(t, FederationConfig{Strict: true, Members: 3, Rank: 0, Fence: t0})
	// Fenced: the start window and the next grant nothing.
	if got := grants(t, c, t0, 5); got != 0 {
		t.Fatalf("fenced window granted %d, want 0", got)
	}
	if got := grants(t, c, t0.Add(time.Second), 5); got != 0 {
		t.Fatalf("window after fence granted %d, want 0", got)
	}
	t2 := t0.Add(2 * time.Second)
	k2 := WindowIndex(t2, time.Second)
	// Share of 10 among 3 at rank 0 is 4; give 1 of the next window away,
	// receive 3 for this one.
	if g := c.GiveAt(t2, "k", k2+1, 1); g != 1 {
		t.Fatalf("GiveAt=%d, want 1", g)
	}
	c.SetReceivedAt(t2, "k", k2, 3)
	c.SetReceivedAt(t2, "k", k2, 2) // smaller cumulative total: ignored
	if got := grants(t, c, t2, 20); got != 7 {
		t.Fatalf("window granted %d, want 4+3", got)
	}
	if g := c.GiveAt(t2, "k", k2, 5); g != 0 {
		t.Fatalf("GiveAt of an exhausted window=%d, want 0", g)
	}
	lc := c.LocalAt(t2)
	if len(lc) != 2 || lc[1].Name != "k" || lc[1].Granted != 7 || lc[1].Asked != 20 || lc[1].Budget != 7 {
		t.Fatalf("LocalAt=%+v", lc)
	}
	t3 := t2.Add(time.Second)
	if got := grants(t, c, t3, 20); got != 3 {
		t.Fatalf("window after giving 1 granted %d, want 3", got)
	}
	lc = c.LocalAt(t3)
	if lc[1].PrevGranted != 7 || lc[1].PrevAsked != 20 {
		t.Fatalf("LocalAt prev=%+v", lc[1])
	}
	// A far-future window is ignored.
	if g := c.GiveAt(t3, "k", k2+10, 1); g != 0 {
		t.Fatalf("GiveAt far future=%d, want 0", g)
	}
}

func TestSharedRemote(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := mustFedCounter(t, FederationConfig{Members: 3, Rank: 1, Fence: t0})
	k := WindowIndex(t0, time.Second)
	c.SetRemoteAt(t0, "k", k, 6)
	c.SetRemoteAt(t0, "k", k+1, 9) // next window: kept until it starts
	if got := grants(t, c, t0, 10); got != 4 {
		t.Fatalf("granted %d, want 10-6", got)
	}
	if got := grants(t, c, t0.Add(time.Second), 10); got != 1 {
		t.Fatalf("next window granted %d, want 10-9", got)
	}
	if g := c.GiveAt(t0, "k", k, 1); g != 0 {
		t.Fatalf("GiveAt in shared mode=%d, want 0", g)
	}
	// Reconfigure keeps the state of a key whose window is unchanged and
	// federates new keys.
	if err := c.Reconfigure([]KeyConfig{{Name: "k", Limit: 20, Window: time.Second}, {Name: "n", Limit: 1, Window: time.Second}}); err != nil {
		t.Fatal(err)
	}
	if got := len(c.LocalAt(t0.Add(time.Second))); got != 3 {
		t.Fatalf("LocalAt after reconfigure has %d keys, want 3", got)
	}
}
