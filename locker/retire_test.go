package locker

import (
	"testing"
	"time"
)

// reload reconfigures c with the keys of specs, failing the test on error.
func reload(tb testing.TB, c *Counter, specs ...string) {
	tb.Helper()
	var keys []KeyConfig
	for _, s := range specs {
		keys = append(keys, mustSpec(tb, s))
	}
	if err := c.Reconfigure(keys); err != nil {
		tb.Fatal(err)
	}
}

// checkLimitBound fails the test if the grants at the instants at (in Unix
// ns, sorted) exceed the limit of k in some interval, by k's algorithm's
// definition: a fixed window at most limit per window [i·W, (i+1)·W); a
// sliding window at most limit in any interval of length W; gcra at most
// burst + d·limit/W in any closed interval of length d.
func checkLimitBound(tb testing.TB, k KeyConfig, at []int64) {
	tb.Helper()
	w := int64(k.Window)
	for i := range at {
		n := int64(0)
		for j := i; j < len(at); j++ {
			n++
			d := at[j] - at[i]
			switch k.Algorithm {
			case AlgFixed, "":
				if at[j]/w == at[i]/w && n > k.Limit {
					tb.Fatalf("%d grants in the window of %d", n, at[i])
				}
			case AlgSliding:
				if d < w && n > k.Limit {
					tb.Fatalf("%d grants within %v from %d", n, time.Duration(d), at[i])
				}
			case AlgGCRA:
				burst := k.Burst
				if burst == 0 {
					burst = k.Limit
				}
				if bound := burst + d*k.Limit/w; n > bound {
					tb.Fatalf("%d grants within %v from %d, bound %d", n, time.Duration(d), at[i], bound)
				}
			}
		}
	}
}

// TestReloadRemoveAndAddBackKeepsTheLimit takes a key, reloads without
// it and with it again (as a configured key or from a template), in the
// same window and later, and checks that its grants never exceed its
// limit in any interval: the state of the removed key comes back with it.
func TestReloadRemoveAndAddBackKeepsTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec string   // the key api
		back []string // the configuration that brings api back
	}{
		{"fixed", "api=5/1m", []string{"api=5/1m"}},
		{"sliding", "api=5/1m/sliding", []string{"api=5/1m/sliding"}},
		{"gcra", "api=5/1m/gcra", []string{"api=5/1m/gcra"}},
		{"gcra burst", "api=6/1m/gcra:2", []string{"api=6/1m/gcra:2"}},
		{"fixed from a template", "api=5/1m", []string{"a*=5/1m"}},
		{"sliding from a template", "api=5/1m/sliding", []string{"a*=5/1m/sliding"}},
		{"gcra from a template", "api=5/1m/gcra", []string{"a*=5/1m/gcra"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := mustSpec(t, tc.spec)
			c := mustKeys(t, tc.spec)
			base := time.Unix(1_800_000_000, 0).Truncate(time.Minute)
			var at []int64
			for step := 0; step < 60; step++ {
				now := base.Add(time.Duration(step) * 5 * time.Second)
				for i := 0; i < 4; i++ {
					d, err := c.TakeAt(now, "api", 1)
					if err != nil {
						t.Fatal(err)
					}
					if d.OK {
						at = append(at, now.UnixNano())
					}
				}
				if step%3 == 0 {
					reload(t, c, "other=1/1s")
					reload(t, c, tc.back...)
				}
			}
			checkLimitBound(t, k, at)
			if len(at) <= int(k.Limit) {
				t.Fatalf("%d grants in 5 minutes: the key never came back", len(at))
			}
		})
	}
}

// TestReloadRemoveAndAddBackTemplate removes a template whose keys have
// tokens in use and adds it back in the same window: its keys are sorry
// until their window ends, and keys with no tokens in use are not kept.
func TestReloadRemoveAndAddBackTemplate(t *testing.T) {
	c := mustKeys(t, "t:*=5/1m")
	now := time.Unix(1_800_000_000, 0).Truncate(time.Minute)
	for i := 0; i < 5; i++ {
		if d, _ := c.TakeAt(now, "t:1", 1); !d.OK {
			t.Fatalf("take %d sorry", i)
		}
	}
	if d, _ := c.TakeAt(now, "t:2", 1); !d.OK {
		t.Fatal("t:2 sorry")
	}
	if d, _ := c.TakeAt(now.Add(-time.Minute), "t:3", 5); !d.OK { // idle by now
		t.Fatal("t:3 sorry")
	}
	reload(t, c, "other=1/1s")
	if got := len(c.retired); got != 2 {
		t.Fatalf("%d keys retired, want 2 (t:1 and t:2)", got)
	}
	reload(t, c, "t:*=5/1m")
	if d, _ := c.TakeAt(now.Add(time.Second), "t:1", 1); d.OK {
		t.Fatal("t:1 granted a sixth token in its window after the template came back")
	}
	for i := 0; i < 5; i++ {
		d, _ := c.TakeAt(now.Add(time.Second), "t:2", 1)
		if d.OK != (i < 4) {
			t.Fatalf("t:2 take %d: %v, want %v", i, d.OK, i < 4)
		}
	}
	if d, _ := c.TakeAt(now.Add(time.Minute), "t:1", 5); !d.OK {
		t.Fatal("t:1 sorry in the next window")
	}
	if c.LiveKeys() != 2 || len(c.retired) != 0 {
		t.Fatalf("%d keys live, %d retired, want 2 and 0", c.LiveKeys(), len(c.retired))
	}
}

// TestReloadRemoveAndAddBackFederated removes a federated key and adds it
// back in the same window: a strict member does not regain the tokens it
// gave away, a shared member does not forget the others' grants.
func TestReloadRemoveAndAddBackFederated(t *testing.T) {
	t0 := time.Unix(1000, 0)
	k := WindowIndex(t0, time.Second)
	for _, tc := range []struct {
		name   string
		fc     FederationConfig
		before func(c *Counter)
		first  int // granted before the reloads
		after  int // granted after them
	}{
		{"strict", FederationConfig{Strict: true, Members: 2, Rank: 0, Fence: t0.Add(-time.Hour)},
			func(c *Counter) { c.GiveAt(t0, "k", k, 3) }, 2, 0},
		{"strict gave all", FederationConfig{Strict: true, Members: 2, Rank: 0, Fence: t0.Add(-time.Hour)},
			func(c *Counter) { c.GiveAt(t0, "k", k, 5) }, 0, 0},
		{"shared", FederationConfig{Members: 3, Rank: 1, Fence: t0.Add(-time.Hour)},
			func(c *Counter) { c.SetRemoteAt(t0, "k", k, 6) }, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustFedCounter(t, tc.fc)
			tc.before(c)
			if got := grants(t, c, t0, tc.first); got != tc.first {
				t.Fatalf("granted %d before the reloads, want %d", got, tc.first)
			}
			reload(t, c, "other=1/1s")
			reload(t, c, "k=10/1s")
			if got := grants(t, c, t0, 10); got != tc.after {
				t.Fatalf("granted %d after the key came back, want %d", got, tc.after)
			}
		})
	}
}

// TestRetiredKeyDroppedOnceIdle retires a key with tokens in use: the
// sweeps keep it while they are in use and forget it once they are back,
// and the key added back then starts afresh.
func TestRetiredKeyDroppedOnceIdle(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  string
		sweep func(c *Counter, now time.Time) int
	}{
		{"SweepAt fixed", "api=5/1m", func(c *Counter, now time.Time) int { return c.SweepAt(now, nil) }},
		{"SweepAt sliding", "api=5/1m/sliding", func(c *Counter, now time.Time) int { return c.SweepAt(now, nil) }},
		{"SweepSomeAt gcra", "api=5/1m/gcra", func(c *Counter, now time.Time) int {
			total := 0
			for {
				n, done := c.SweepSomeAt(now, nil, 1)
				total += n
				if done {
					return total
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustKeys(t, tc.spec, "t:*=5/1m")
			now := time.Unix(1_800_000_000, 0).Truncate(time.Minute)
			if d, _ := c.TakeAt(now, "api", 5); !d.OK {
				t.Fatal("api sorry")
			}
			for _, name := range []string{"t:1", "t:2", "t:3"} {
				if d, _ := c.TakeAt(now, name, 1); !d.OK {
					t.Fatalf("%s sorry", name)
				}
			}
			reload(t, c, "other=1/1s")
			if got := len(c.retired); got != 4 {
				t.Fatalf("%d keys retired, want 4", got)
			}
			if got := tc.sweep(c, now.Add(30*time.Second)); got != 0 || len(c.retired) != 4 {
				t.Fatalf("sweep in use dropped %d, %d retired, want 0 and 4", got, len(c.retired))
			}
			later := now.Add(2 * time.Minute)
			if got := tc.sweep(c, later); got != 4 || c.retired != nil {
				t.Fatalf("sweep once idle dropped %d, %d retired, want 4 and none", got, len(c.retired))
			}
			reload(t, c, tc.spec)
			if d, _ := c.TakeAt(later, "api", 5); !d.OK {
				t.Fatal("api added back after its state was dropped is sorry")
			}
		})
	}
}

// TestReloadRemoveAndAddBackFedTemplate: a strict member that gave its
// share of a key made on demand away, whose template a reload removes
// and a later one adds back, does not regain it when the key is made
// again, by a request or by a peer's report.
func TestReloadRemoveAndAddBackFedTemplate(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, c *Counter, now time.Time, k int64)
	}{
		{"request", func(t *testing.T, c *Counter, now time.Time, k int64) {}},
		{"peer report", func(t *testing.T, c *Counter, now time.Time, k int64) {
			if made, err := c.TrackAt(now, "t:a", k); !made || err != nil {
				t.Fatalf("TrackAt: made %v, %v", made, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fedTemplate(t, true, 2, 0) // share 5 of 10
			t0 := time.Unix(1_800_000_000, 0)
			k := WindowIndex(t0, time.Second)
			c.TrackAt(t0, "t:a", k)
			if g := c.GiveAt(t0, "t:a", k+1, 5); g != 5 {
				t.Fatalf("gave %d, want 5", g)
			}
			reload(t, c, "u:*=10/1s")
			reload(t, c, "t:*=10/1s")
			t1 := t0.Add(time.Second)
			tc.make(t, c, t1, k+1)
			if got := grantsOf(t, c, "t:a", t1, 10); got != 0 {
				t.Fatalf("granted %d in the window whose share was given away, want 0", got)
			}
			if got := grantsOf(t, c, "t:a", t1.Add(time.Second), 10); got != 5 {
				t.Fatalf("granted %d in the window after, want the share 5", got)
			}
		})
	}
}
