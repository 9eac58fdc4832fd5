package locker

import (
	"math"
	"time"
)

// Algorithm decides, for one key, whether n tokens may be taken at time now.
// The fixed window counter is the only implementation today; the interface
// exists so that other algorithms (a sliding window, GCRA, a lease
// semaphore) can be added per key without touching the server loop, the
// federation or the wire protocol. The Counter reaches an algorithm only
// through these methods.
//
// Whatever the algorithm, a key's time is cut into epoch-aligned windows of
// the key's length (see WindowIndex): a Decision names the window it counted
// in, and a federation exchanges grants per window. An algorithm's current
// window moves only forward, and only when a take moves it. A take at an
// instant before the current window counts in the current window: callers
// read their clocks before they are serialised, and a wall clock may be
// stepped back, and going back would grant the tokens of a window a second
// time. A read (PeekAt) moves nothing.
//
// In a federation the Counter runs the algorithm on this member's
// capacity: before every take it calls SetLimit with the tokens this member
// may grant in the window the take counts in (its budget in strict mode,
// the limit less what others granted and reserved in shared mode).
//
// Implementations are not safe for concurrent use: the Counter that holds
// them serialises access.
type Algorithm interface {
	// TakeAt grants n tokens at time now, or refuses them. n is in
	// 1..limit of the key; the caller has checked that. It is the only
	// method that may move the current window, and only forward.
	TakeAt(now time.Time, n int64) Decision
	// PeekAt returns the window a take at now would count in and the
	// tokens granted in it, without changing anything.
	PeekAt(now time.Time) (window, granted int64)
	// SetLimit sets the tokens a window may hold from now on, the current
	// window included. Tokens already granted stay granted: after a lower
	// limit the current window grants at most max(0, limit-granted) more.
	SetLimit(limit int64)
}

// FixedWindow is the fixed-window counter: windows of length Window aligned
// to the Unix epoch, at most Limit tokens granted in each.
//
// The zero value is not usable; use NewFixedWindow. A FixedWindow is not
// safe for concurrent use.
type FixedWindow struct {
	limit   int64
	window  int64 // nanoseconds
	current int64 // window index the count belongs to
	granted int64 // tokens granted in window current
}

var _ Algorithm = (*FixedWindow)(nil)

// NewFixedWindow returns a fixed-window counter for limit tokens per window.
func NewFixedWindow(limit int64, window time.Duration) *FixedWindow {
	return &FixedWindow{limit: limit, window: int64(window), current: noWindow}
}

// noWindow is the current window of a FixedWindow that has not decided
// anything yet; no instant falls in it.
const noWindow = math.MinInt64

// WindowIndex returns the index k of the epoch-aligned window of length w
// that contains t, so that t is in [k·w, (k+1)·w).
func WindowIndex(t time.Time, w time.Duration) int64 {
	return windowOf(t.UnixNano(), int64(w))
}

// windowOf is WindowIndex for ns nanoseconds since the epoch and a window
// of w nanoseconds.
func windowOf(ns, w int64) int64 {
	k := ns / w
	if ns < 0 && ns%w != 0 {
		k-- // floor, not truncation, before the epoch
	}
	return k
}

// at returns the window a take at ns counts in and the nanoseconds left in
// it. An instant before the current window counts in the current window
// (see Algorithm); the time left is then a whole window, as the caller's
// real now is at least the start of the current window.
func (f *FixedWindow) at(ns int64) (k, left int64) {
	k = windowOf(ns, f.window)
	if k < f.current {
		return f.current, f.window
	}
	return k, (k+1)*f.window - ns
}

// TakeAt implements Algorithm.
func (f *FixedWindow) TakeAt(now time.Time, n int64) Decision {
	k, left := f.at(now.UnixNano())
	if k != f.current {
		f.current, f.granted = k, 0
	}
	if f.granted+n <= f.limit {
		f.granted += n
		return Decision{OK: true, Remaining: f.limit - f.granted, Reset: time.Duration(left), Window: k}
	}
	return Decision{Reset: time.Duration(left), RetryAfter: time.Duration(left), Window: k}
}

// PeekAt implements Algorithm.
func (f *FixedWindow) PeekAt(now time.Time) (window, granted int64) {
	k, _ := f.at(now.UnixNano())
	if k != f.current {
		return k, 0
	}
	return k, f.granted
}

// SetLimit implements Algorithm.
func (f *FixedWindow) SetLimit(limit int64) { f.limit = limit }
