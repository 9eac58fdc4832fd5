package locker

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// checkRing fails the test unless the count of live keys made on demand
// is that of the key map.
func checkRing(tb testing.TB, c *Counter) {
	tb.Helper()
	live := 0
	for _, ks := range c.keys {
		if ks.tmpl() != nil {
			live++
		}
	}
	if live != c.live {
		tb.Fatalf("%d keys made on demand in the map, %d counted live", live, c.live)
	}
}

// TestSweepSomeAtDropsIdleKeysInBatches makes keys from a template, with
// tokens back at different instants, and sweeps them in small batches
// while keys are made, dropped on the way and reloaded: each cycle of
// batches drops exactly the keys idle and not busy, and the count of live
// keys stays that of the map.
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
		if i == 1500 { // a reload keeps the live keys, in a new map
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
	// Keys made later drop idle ones they come across.
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

// TestSweepSomeAtWhileKeysAreMade sweeps in small batches while many keys
// are made between batches, so that the key map grows under the
// iteration the batches resume, and a reload and a rebuild of the map
// happen mid-cycle: every key idle from the start and live all along is
// dropped by the end of the cycle.
func TestSweepSomeAtWhileKeysAreMade(t *testing.T) {
	for _, tc := range []struct {
		name string
		// between runs between the batches with the batch's number.
		between func(t *testing.T, c *Counter, batch int, at time.Time)
	}{
		{"map grows", func(t *testing.T, c *Counter, batch int, at time.Time) {
			for i := 0; i < 200; i++ { // kept: taken at the sweep's instant
				c.TakeAt(at, fmt.Sprintf("t:new%d-%d", batch, i), 1)
			}
		}},
		{"reload", func(t *testing.T, c *Counter, batch int, at time.Time) {
			if batch == 5 {
				if err := c.Reconfigure([]KeyConfig{mustSpec(t, "t:*=2/1s")}); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"rebuild", func(t *testing.T, c *Counter, batch int, at time.Time) {
			if batch == 5 {
				c.mu.Lock()
				c.liveHigh = 4 * (c.live + 1025) // as if most keys were dropped
				c.shrink()
				c.mu.Unlock()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustKeys(t, "t:*=2/1s")
			base := time.Unix(1_800_000_000, 0)
			const idle = 3000
			for i := 0; i < idle; i++ {
				c.TakeAt(base, fmt.Sprintf("t:%d", i), 1)
			}
			now := base.Add(2 * time.Second) // every key made so far is idle
			dropped := 0
			for batch := 0; ; batch++ {
				n, done := c.SweepSomeAt(now, nil, 100)
				dropped += n
				if done {
					break
				}
				if batch > idle {
					t.Fatal("the sweep does not end")
				}
				tc.between(t, c, batch, now)
				c.mu.Lock()
				checkRing(t, c)
				c.mu.Unlock()
			}
			for i := 0; i < idle; i++ {
				if c.keys[fmt.Sprintf("t:%d", i)] != nil {
					t.Fatalf("idle key t:%d left after a whole cycle", i)
				}
			}
			// Keys made drop idle ones too (make's probe): the sweep
			// dropped the others, each once.
			made := c.LiveKeys()
			for name, ks := range c.keys {
				if ks.tmpl() != nil && ks.idleAt(now) {
					t.Fatalf("idle key %q made during the cycle", name)
				}
			}
			if dropped > idle || (made == 0 && dropped != idle) {
				t.Fatalf("the cycle dropped %d keys, %d live left; want the %d idle ones at most, all without keys made", dropped, made, idle)
			}
		})
	}
}

// TestSweepSomeAtAllocations keeps a batch of the sweep from allocating
// per key looked at.
func TestSweepSomeAtAllocations(t *testing.T) {
	c := mustKeys(t, "t:*=2/1s")
	base := time.Unix(1_800_000_000, 0)
	for i := 0; i < 5000; i++ {
		c.TakeAt(base, fmt.Sprintf("t:%d", i), 1)
	}
	// Nothing is idle at base: each batch looks at 100 keys, drops none.
	if got := testing.AllocsPerRun(20, func() { c.SweepSomeAt(base, nil, 100) }); got > 1 {
		t.Errorf("%v allocations per batch of 100 keys, want at most 1 (a new cycle's iteration)", got)
	}
}

// TestSweepSomeAtAfterReload reloads in the middle of a cycle and takes
// every key again: the rest of the cycle looks at the keys as they are
// since the reload, all in use, and drops none (looking at the states from
// before it, idle, would drop keys in use and grant their tokens again).
func TestSweepSomeAtAfterReload(t *testing.T) {
	c := mustKeys(t, "t:*=2/1s")
	base := time.Unix(1_800_000_000, 0)
	const keys = 3000
	for i := 0; i < keys; i++ {
		c.TakeAt(base, fmt.Sprintf("t:%d", i), 1)
	}
	now := base.Add(2 * time.Second) // every key is idle
	if _, done := c.SweepSomeAt(now, nil, 100); done {
		t.Fatal("one batch swept every key: the test checks nothing")
	}
	if err := c.Reconfigure([]KeyConfig{mustSpec(t, "t:*=2/1s")}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < keys; i++ {
		if d, err := c.TakeAt(now, fmt.Sprintf("t:%d", i), 1); err != nil || !d.OK {
			t.Fatalf("t:%d: %+v, %v", i, d, err)
		}
	}
	for batch := 0; ; batch++ {
		n, done := c.SweepSomeAt(now, nil, 100)
		if n != 0 {
			t.Fatalf("batch %d after the reload dropped %d keys in use", batch, n)
		}
		if done {
			break
		}
		if batch > keys {
			t.Fatal("the sweep does not end")
		}
	}
	if c.LiveKeys() != keys {
		t.Fatalf("%d live keys, want %d", c.LiveKeys(), keys)
	}
}
