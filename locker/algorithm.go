package locker

import (
	"math"
	"time"
)

// algo decides, for one key (or one part of a multi-limit key),
// whether n tokens may be taken at time now. Three implementations exist:
// fixedWindow, slidingWindow and GCRA (see the Algorithms section of
// PROTOCOL.md for what each promises and what each reply field means). The Counter, the
// waiters and the federation reach an algorithm only through these
// methods.
//
// Whatever the algorithm, a Decision names the index of the epoch-aligned
// window of the key's length (see WindowIndex) that contains the instant it
// was made at: the fixed window counts in it, and a federation exchanges
// grants per window. An algorithm's time moves only forward, and only when
// a take moves it: a take at an instant before the latest one a take was
// made at is made at that latest instant. Callers read their clocks before
// they are serialised, and a wall clock may be stepped back; going back
// would grant the same tokens a second time. A read (CheckAt, PeekAt)
// moves nothing.
//
// In a federation the Counter runs a fixed-window algorithm on this
// member's capacity: before every take it calls SetLimit with the tokens
// this member may grant in the window the take counts in (its budget in
// strict mode, the limit less what others granted and reserved in shared
// mode). Other algorithms run on a static share of the limit.
//
// Implementations are not safe for concurrent use: the Counter that holds
// them serialises access.
type algo interface {
	// TakeAt grants n tokens at time now, or refuses them. n is in
	// 1..limit of the key; the caller has checked that. It is the only
	// method that may move the algorithm's time, and only forward.
	TakeAt(now time.Time, n int64) Decision
	// CheckAt returns the decision TakeAt(now, n) would return, without
	// changing anything: a TakeAt at the same instant with nothing in
	// between returns the same decision. A multi-limit key checks every
	// part before it takes from any.
	CheckAt(now time.Time, n int64) Decision
	// PeekAt returns the window a take at now would count in and the
	// tokens in use at now (granted in the window for a fixed window,
	// granted in the last window's length for a sliding window, not yet
	// paid back for GCRA), without changing anything.
	PeekAt(now time.Time) (window, used int64)
	// SetLimit sets the limit from now on, the current state included.
	// Tokens already granted stay granted: after a lower limit the key
	// grants at most max(0, limit-used) more until tokens come back.
	SetLimit(limit int64)
	// FillAt marks every token as taken at now (or at the latest instant
	// a take was made at, if later): the algorithm then grants as if a
	// full limit had just been granted. A member that restarts, or a key
	// whose algorithm changes on a reload, starts so, since grants made
	// before are unknown to it.
	FillAt(now time.Time)
}

// fixedWindow is the fixed-window counter: windows of length Window aligned
// to the Unix epoch, at most Limit tokens granted in each.
//
// The zero value is not usable; use newFixedWindow. A fixedWindow is not
// safe for concurrent use.
type fixedWindow struct {
	window  int64 // nanoseconds
	current int64 // window index the count belongs to
	// limit and granted (tokens granted in window current) take 32 bits
	// each, so that a key of one fixed window is 64 bytes (keyState):
	// a limit is at most MaxLimit, below 2^31, and SetLimit clamps.
	limit, granted int32
}

var _ algo = (*fixedWindow)(nil)

// newFixedWindow returns a fixed-window counter for limit tokens per window.
func newFixedWindow(limit int64, window time.Duration) *fixedWindow {
	return &fixedWindow{limit: clamp32(limit), window: int64(window), current: noWindow}
}

// clamp32 returns n within the range of an int32: a limit above it is
// cut to it, which grants fewer tokens, never more.
func clamp32(n int64) int32 {
	return int32(max(min(n, math.MaxInt32), math.MinInt32))
}

// noWindow is the current window of a fixedWindow that has not decided
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
func (f *fixedWindow) at(ns int64) (k, left int64) {
	k = windowOf(ns, f.window)
	if k < f.current {
		return f.current, f.window
	}
	return k, (k+1)*f.window - ns
}

// TakeAt implements Algorithm.
func (f *fixedWindow) TakeAt(now time.Time, n int64) Decision {
	k, left := f.at(now.UnixNano())
	if k != f.current {
		f.current, f.granted = k, 0
	}
	if g := int64(f.granted) + n; g <= int64(f.limit) {
		f.granted = int32(g)
		return Decision{OK: true, Remaining: int64(f.limit) - g, Reset: time.Duration(left), Window: k}
	}
	return Decision{Reset: time.Duration(left), RetryAfter: time.Duration(left), Window: k}
}

// CheckAt implements Algorithm.
func (f *fixedWindow) CheckAt(now time.Time, n int64) Decision {
	k, left := f.at(now.UnixNano())
	granted := int64(f.granted)
	if k != f.current {
		granted = 0
	}
	if granted+n <= int64(f.limit) {
		return Decision{OK: true, Remaining: int64(f.limit) - granted - n, Reset: time.Duration(left), Window: k}
	}
	return Decision{Reset: time.Duration(left), RetryAfter: time.Duration(left), Window: k}
}

// FillAt implements Algorithm: the window of now (or the current one, if
// later) counts as fully granted.
func (f *fixedWindow) FillAt(now time.Time) {
	k, _ := f.at(now.UnixNano())
	if k != f.current {
		f.current, f.granted = k, 0
	}
	f.granted = max(f.granted, f.limit)
}

// PeekAt implements Algorithm.
func (f *fixedWindow) PeekAt(now time.Time) (window, granted int64) {
	k, _ := f.at(now.UnixNano())
	if k != f.current {
		return k, 0
	}
	return k, int64(f.granted)
}

// SetLimit implements Algorithm.
func (f *fixedWindow) SetLimit(limit int64) { f.limit = clamp32(limit) }
