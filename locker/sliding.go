package locker

import (
	"math"
	"time"
)

// MaxSlidingLimit is the largest limit a sliding key may have. A sliding
// window keeps the instant of every token granted in the last window's
// length, 8 bytes each, so its memory grows with its limit; a larger limit
// is refused rather than approximated.
const MaxSlidingLimit = 100_000

// slidingWindow is the exact sliding-window counter: no interval [a, a+w)
// of the window's length w, wherever it starts, holds more than limit
// granted tokens. A token granted at t counts until t+w, and no longer
// from t+w on.
//
// It keeps the instants of the tokens granted in the last window's length,
// oldest first, in a ring that grows up to the limit, so a take allocates
// only while the ring grows.
//
// The zero value is not usable; use newSlidingWindow. A slidingWindow is
// not safe for concurrent use.
type slidingWindow struct {
	limit  int64
	window int64 // nanoseconds
	last   int64 // latest instant a take was made at, in Unix ns
	// ring[head], ring[head+1 mod len], ... hold size grant instants in
	// order: oldest first, none after last. 32 bits hold head and size
	// (at most MaxSlidingLimit), so that a sliding key with its state is
	// 96 bytes (keyState).
	ring       []int64
	head, size int32
}

var _ algo = (*slidingWindow)(nil)

// newSlidingWindow returns an exact sliding-window counter for limit
// tokens in any interval of length window. limit is at most
// MaxSlidingLimit.
func newSlidingWindow(limit int64, window time.Duration) *slidingWindow {
	return &slidingWindow{limit: limit, window: int64(window), last: math.MinInt64}
}

// at returns the i-th oldest grant instant held.
func (s *slidingWindow) at(i int) int64 {
	j := int(s.head) + i
	if j >= len(s.ring) {
		j -= len(s.ring)
	}
	return s.ring[j]
}

// live returns the index of the oldest grant still counting at t: the
// grants before it were made at or before t-window.
func (s *slidingWindow) live(t int64) int {
	lo, hi := 0, int(s.size)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.at(m) <= t-s.window {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// decide returns the decision for n tokens at t, with the grants before
// index first no longer counting.
func (s *slidingWindow) decide(t int64, n int64, first int) Decision {
	k := windowOf(t, s.window)
	used := int64(int(s.size) - first)
	if used+n <= s.limit {
		// After the grant the newest token is at t: the key is whole
		// again a window from now.
		return Decision{OK: true, Remaining: s.limit - used - n, Reset: time.Duration(s.window), Window: k}
	}
	if n > s.limit {
		// Never grantable here (a federation share below n): retry no
		// sooner than a window from now, and get sorry again.
		return Decision{Reset: time.Duration(s.window), RetryAfter: time.Duration(s.window), Window: k}
	}
	// The grant is possible once the oldest used+n-limit tokens no longer
	// count: when the newest of them is a window old.
	free := s.at(first + int(used+n-s.limit) - 1)
	newest := s.at(int(s.size) - 1)
	return Decision{Reset: time.Duration(newest + s.window - t), RetryAfter: time.Duration(free + s.window - t), Window: k}
}

// TakeAt implements Algorithm.
func (s *slidingWindow) TakeAt(now time.Time, n int64) Decision {
	t := max(now.UnixNano(), s.last)
	s.last = t
	for s.size > 0 && s.ring[s.head] <= t-s.window {
		s.head++
		if int(s.head) == len(s.ring) {
			s.head = 0
		}
		s.size--
	}
	d := s.decide(t, n, 0)
	if d.OK {
		s.push(t, n)
	}
	return d
}

// push appends n grants at t; the ring has room for limit grants.
func (s *slidingWindow) push(t int64, n int64) {
	if need := int(s.size) + int(n); need > len(s.ring) {
		s.grow(need)
	}
	for ; n > 0; n-- {
		j := int(s.head + s.size)
		if j >= len(s.ring) {
			j -= len(s.ring)
		}
		s.ring[j] = t
		s.size++
	}
}

// grow makes the ring hold at least need grants, doubling it up to the
// limit, and puts the grants held first. It starts at what the first take
// needs: most keys made on demand take a token or two before they are
// dropped, and a ring of 8 would hold 48 bytes of nothing for each.
func (s *slidingWindow) grow(need int) {
	c := max(need, 2*len(s.ring))
	c = int(min(int64(c), max(s.limit, int64(need))))
	ring := make([]int64, c)
	for i := 0; i < int(s.size); i++ {
		ring[i] = s.at(i)
	}
	s.ring, s.head = ring, 0
}

// CheckAt implements Algorithm.
func (s *slidingWindow) CheckAt(now time.Time, n int64) Decision {
	t := max(now.UnixNano(), s.last)
	return s.decide(t, n, s.live(t))
}

// PeekAt implements Algorithm: the tokens in use are those granted in
// the window's length before now.
func (s *slidingWindow) PeekAt(now time.Time) (window, used int64) {
	t := max(now.UnixNano(), s.last)
	return windowOf(t, s.window), int64(int(s.size) - s.live(t))
}

// SetLimit implements Algorithm. Only the newest limit grants are kept
// after a lower limit: the ones dropped are older, so they stop counting
// before any kept one does, and no decision changes.
func (s *slidingWindow) SetLimit(limit int64) {
	s.limit = limit
	if drop := int64(s.size) - max(limit, 0); drop > 0 {
		s.head = int32((int64(s.head) + drop) % int64(len(s.ring)))
		s.size -= int32(drop)
	}
}

// FillAt implements Algorithm: limit grants at now, or at the latest
// instant a take was made at if later.
func (s *slidingWindow) FillAt(now time.Time) {
	t := max(now.UnixNano(), s.last)
	s.last = t
	s.head, s.size = 0, 0
	s.push(t, s.limit)
}
