package locker

import (
	"math"
	"testing"
	"time"
	"unsafe"
)

// TestKeyStateSizes keeps a key of one limit, with its algorithm's state,
// within the size class it was shrunk to: at a million keys made on
// demand each byte is a megabyte (BenchmarkTemplateDecision1M reports the
// whole cost per key, its map entry and name included).
func TestKeyStateSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		size uintptr
		max  uintptr
	}{
		{"keyState", unsafe.Sizeof(keyState{}), 40},
		{"fixed", unsafe.Sizeof(fixedKey{}), 64},
		{"sliding", unsafe.Sizeof(slidingKey{}), 96},
		{"gcra", unsafe.Sizeof(gcraKey{}), 80},
	} {
		if tc.size > tc.max {
			t.Errorf("%s: %d bytes, want at most %d", tc.name, tc.size, tc.max)
		}
	}
}

// TestKeyAllocations checks that a key made on demand is one object with
// its first limit's state, for every algorithm.
func TestKeyAllocations(t *testing.T) {
	for _, alg := range []string{"fixed", "sliding", "gcra"} {
		c := mustKeys(t, "t:*=10/1s/"+alg)
		ks := c.newKey(&c.tmpls[0].keySource)
		var inline bool
		switch a := ks.alg.(type) {
		case *fixedWindow:
			inline = uintptr(unsafe.Pointer(a)) == uintptr(unsafe.Pointer(ks))+unsafe.Offsetof(fixedKey{}.alg)
		case *slidingWindow:
			inline = uintptr(unsafe.Pointer(a)) == uintptr(unsafe.Pointer(ks))+unsafe.Offsetof(slidingKey{}.alg)
		case *gcraAlg:
			inline = uintptr(unsafe.Pointer(a)) == uintptr(unsafe.Pointer(ks))+unsafe.Offsetof(gcraKey{}.alg)
		}
		if !inline {
			t.Errorf("%s: the first limit's state (%T) is not made with the key", alg, ks.alg)
		}
		if got := testing.AllocsPerRun(100, func() { c.newKey(&c.tmpls[0].keySource) }); got != 1 {
			t.Errorf("%s: %v allocations per key, want 1", alg, got)
		}
	}
}

// TestFixedWindowLimitClamped checks that a limit beyond 32 bits, which a
// fixed window no longer holds, is cut, so that it grants fewer tokens,
// never more, and never wraps to a small or negative count.
func TestFixedWindowLimitClamped(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		limit int64
		want  int64 // tokens granted in one window, asked in one take
	}{
		{math.MaxInt32, math.MaxInt32},
		{math.MaxInt32 + 1, math.MaxInt32},
		{math.MaxInt64, math.MaxInt32},
		{1 << 32, math.MaxInt32},
		{-1, 0},
		{math.MinInt64, 0},
	} {
		f := newFixedWindow(1, time.Second)
		f.SetLimit(tc.limit)
		if tc.want > 0 {
			if d := f.TakeAt(now, tc.want); !d.OK || d.Remaining != 0 {
				t.Errorf("limit %d: take %d = %+v, want go with 0 left", tc.limit, tc.want, d)
			}
		}
		if d := f.TakeAt(now, 1); d.OK {
			t.Errorf("limit %d: a take past %d granted: %+v", tc.limit, tc.want, d)
		}
	}
}

// TestSlidingRingGrowth checks that a sliding window's ring holds what its
// takes need, doubling up to the limit: a key made on demand that took
// one token holds one instant, not eight.
func TestSlidingRingGrowth(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newSlidingWindow(10, time.Hour)
	for _, tc := range []struct {
		n    int64
		ring int
	}{
		{1, 1}, {1, 2}, {1, 4}, {1, 4}, {2, 8}, {3, 10}, {1, 10},
	} {
		if d := s.TakeAt(now, tc.n); !d.OK {
			t.Fatalf("take %d: %+v", tc.n, d)
		}
		if len(s.ring) != tc.ring {
			t.Fatalf("after a take of %d (%d held): ring of %d, want %d", tc.n, s.size, len(s.ring), tc.ring)
		}
	}
	if d := s.TakeAt(now, 1); d.OK {
		t.Fatalf("take past the limit granted: %+v", d)
	}
	if got := testing.AllocsPerRun(100, func() { s.TakeAt(now, 1) }); got != 0 {
		t.Errorf("%v allocations per take once the ring is full, want 0", got)
	}
}

// TestGCRALimitClamped is TestFixedWindowLimitClamped for gcra, whose
// limit, burst and fraction take 32 bits: a burst that follows the limit
// follows the cut one.
func TestGCRALimitClamped(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		limit int64
		want  int64
	}{
		{math.MaxInt32, math.MaxInt32},
		{math.MaxInt32 + 1, math.MaxInt32},
		{1 << 32, math.MaxInt32},
		{math.MaxInt64, math.MaxInt32},
		{-1, 0},
	} {
		g := newGCRA(7, time.Second, 0)
		g.TakeAt(now, 3) // a fraction to carry over
		g.SetLimit(tc.limit)
		later := now.Add(time.Hour) // every token back
		if tc.want > 0 {
			if d := g.TakeAt(later, tc.want); !d.OK || d.Remaining != 0 {
				t.Errorf("limit %d: take %d = %+v, want go with 0 left", tc.limit, tc.want, d)
			}
		}
		if d := g.TakeAt(later, 1); d.OK {
			t.Errorf("limit %d: a take past %d granted: %+v", tc.limit, tc.want, d)
		}
	}
}
