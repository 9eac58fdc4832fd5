package locker

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// checkRing fails the test unless the ring holds each live key made on
// demand exactly once, at the place its state records.
func checkRing(tb testing.TB, c *Counter) {
	tb.Helper()
	if len(c.ring) != c.live {
		tb.Fatalf("ring of %d entries for %d live keys", len(c.ring), c.live)
	}
	for i, name := range c.ring {
		ks := c.keys[name]
		if ks == nil || ks.tmpl() == nil || int(ks.slot) != i+1 {
			tb.Fatalf("ring entry %d %q: state %+v", i, name, ks)
		}
	}
}

// TestSweepSomeAtDropsIdleKeysInBatches makes keys from a template, with
// tokens back at different instants, and sweeps them in small batches
// while keys are made, dropped on the way and reloaded: each cycle of
// batches drops exactly the keys idle and not busy, and the ring of names
// the batches walk always holds each live key once.
func TestSweepSomeAtDropsIdleKeysInBatches(t *testing.T) {
	c := mustKeys(t, "t:*=2/1s", "u:*=3/1s/sliding")
	base := time.Unix(1_800_000_000, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		name := fmt.Sprintf("t:%d", rng.IntN(2000))
		if rng.IntN(2) == 0 {
			name = fmt.Sprintf("u:%d", rng.IntN(2000))
		}
		at := base.Add(time.Duration(rng.IntN(900)) * time.Millisecond)
		c.TakeAt(at, name, 1)
		if i == 1500 { // a reload keeps the live keys, in a new ring
			if err := c.Reconfigure([]KeyConfig{mustSpec(t, "t:*=2/1s"), mustSpec(t, "u:*=3/1s/sliding")}); err != nil {
				t.Fatal(err)
			}
		}
		c.mu.Lock()
		checkRing(t, c)
		c.mu.Unlock()
	}
	// At 1.5s every fixed key is idle (its window has passed), and a
	// sliding key whose last take was decided before 500ms.
	now := base.Add(1500 * time.Millisecond)
	busy := func(key string) bool { return key == "t:7" || key == "u:7" }
	want, fixed := 0, 0
	for name, ks := range c.keys {
		if ks.tmpl() != nil && ks.idleAt(now) && !busy(name) {
			want++
		}
		if name[0] == 't' && !busy(name) {
			fixed++
		}
	}
	if want <= fixed || fixed == 0 {
		t.Fatalf("%d idle keys, %d of them fixed: the test checks too little", want, fixed)
	}
	liveBefore := c.LiveKeys()
	dropped, calls := 0, 0
	for {
		n, done := c.SweepSomeAt(now, busy, 37)
		dropped += n
		calls++
		c.mu.Lock()
		checkRing(t, c)
		c.mu.Unlock()
		if done {
			break
		}
		if calls > liveBefore {
			t.Fatal("the sweep does not end")
		}
	}
	if dropped != want {
		t.Fatalf("one cycle dropped %d keys, want the %d idle and not busy", dropped, want)
	}
	for name := range c.keys {
		if ks := c.keys[name]; ks.tmpl() != nil && ks.idleAt(now) && !busy(name) {
			t.Fatalf("idle key %q left after a whole cycle", name)
		}
	}
	// Keys made later drop idle ones they come across, out of the ring
	// too.
	later := base.Add(3 * time.Second)
	before := c.LiveKeys()
	for i := 0; i < 500; i++ {
		c.TakeAt(later, fmt.Sprintf("t:new%d", i), 1)
		c.mu.Lock()
		checkRing(t, c)
		c.mu.Unlock()
	}
	if c.LiveKeys() >= before+500 {
		t.Fatalf("%d live keys after 500 more from %d: making keys dropped no idle one", c.LiveKeys(), before)
	}
	// A key dropped and made again decides afresh, never before the
	// instant it was dropped at.
	if d, err := c.TakeAt(base, "t:1", 2); err != nil || !d.OK || d.Window != 1_800_000_003 {
		t.Fatalf("a key made again after the sweep: %+v, %v; want a go in the window of the last drop", d, err)
	}
}
