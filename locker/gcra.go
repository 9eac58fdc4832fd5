package locker

import (
	"math"
	"math/bits"
	"time"
)

// gcraAlg is the generic cell rate algorithm: tokens come back one every
// window/limit, and at most burst of them are available at once. With
// burst 1 the grants are evenly spaced; with burst equal to the limit (the
// default) a key idle for a window may grant its whole limit at once.
//
// Its state is the theoretical arrival time (TAT): the instant at which
// every token taken is back. Taking n tokens at t moves the TAT to
// max(TAT, t) + n·window/limit, and is allowed when the result is at most
// t + burst·window/limit. The TAT is kept exactly, as nanoseconds plus a
// fraction in units of 1/limit ns, so no rounding adds up over many
// tokens.
//
// The zero value is not usable; use newGCRA. A gcraAlg is not safe for
// concurrent use.
type gcraAlg struct {
	window int64 // nanoseconds
	last   int64 // latest instant a take was made at, in Unix ns
	// The TAT is tat + frac/limit ns, 0 <= frac < max(limit, 1).
	tat int64
	// limit, burst and frac take 32 bits each, so that a gcra key is 80
	// bytes (keyState): a limit is at most MaxLimit, below 2^31, and
	// SetLimit clamps. Arithmetic on them is done in 64 bits.
	limit, burst, frac int32
	follow             bool // burst follows the limit (SetLimit)
}

var _ algo = (*gcraAlg)(nil)

// newGCRA returns a GCRA that grants limit tokens per window in the long
// run and at most burst at once; burst 0 means limit, and SetLimit then
// moves the burst with the limit. burst is at most limit.
func newGCRA(limit int64, window time.Duration, burst int64) *gcraAlg {
	g := &gcraAlg{limit: clamp32(limit), burst: clamp32(burst), window: int64(window), last: math.MinInt64, tat: math.MinInt64}
	if burst == 0 {
		g.burst, g.follow = g.limit, true
	}
	return g
}

// mulDiv returns a·b/c as a quotient and a remainder. a·b/c must fit in 63
// bits, and a, b >= 0, c > 0.
func mulDiv(a, b, c int64) (q, r int64) {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	uq, ur := bits.Div64(hi, lo, uint64(c))
	return int64(uq), int64(ur)
}

// allowedAt returns the first whole nanosecond from which n tokens may be
// taken: ceil(TAT - (burst-n)·window/limit), with the TAT at least t.
func (g *gcraAlg) allowedAt(t, n int64) int64 {
	tat, frac := g.tat, int64(g.frac)
	if tat < t {
		tat, frac = t, 0
	}
	q, r := mulDiv(int64(g.burst)-n, g.window, int64(g.limit))
	if frac > r {
		return tat - q + 1
	}
	return tat - q
}

// inUse returns, at t, the tokens taken and not yet back,
// ceil((TAT - t)·limit/window), and the time until all are back,
// ceil(TAT - t).
func (g *gcraAlg) inUse(t int64) (used int64, full time.Duration) {
	if g.tat < t || (g.tat == t && g.frac == 0) || g.limit <= 0 {
		return 0, 0
	}
	d := g.tat - t
	q, r := mulDiv(d, int64(g.limit), g.window)
	// (d·limit + frac)/window, rounded up.
	used = q + (r+int64(g.frac)+g.window-1)/g.window
	full = time.Duration(d)
	if g.frac > 0 {
		full++
	}
	return min(used, int64(g.burst)), full
}

func (g *gcraAlg) decide(t, n int64) (Decision, bool) {
	k := windowOf(t, g.window)
	if g.limit <= 0 || n > int64(g.burst) {
		// Never grantable here (a federation share below n): retry no
		// sooner than a window from now, and get sorry again.
		return Decision{Reset: time.Duration(g.window), RetryAfter: time.Duration(g.window), Window: k}, false
	}
	if at := g.allowedAt(t, n); t < at {
		_, full := g.inUse(t)
		return Decision{Reset: full, RetryAfter: time.Duration(at - t), Window: k}, false
	}
	return Decision{OK: true, Window: k}, true
}

// TakeAt implements Algorithm.
func (g *gcraAlg) TakeAt(now time.Time, n int64) Decision {
	t := max(now.UnixNano(), g.last)
	g.last = t
	d, ok := g.decide(t, n)
	if !ok {
		return d
	}
	if g.tat < t {
		g.tat, g.frac = t, 0
	}
	g.add(n)
	used, full := g.inUse(t)
	d.Remaining, d.Reset = int64(g.burst)-used, full
	return d
}

// add moves the TAT n emission intervals later.
func (g *gcraAlg) add(n int64) {
	q, r := mulDiv(n, g.window, int64(g.limit))
	g.tat += q
	frac := int64(g.frac) + r // below 2·limit: 64 bits hold it
	if frac >= int64(g.limit) {
		frac -= int64(g.limit)
		g.tat++
	}
	g.frac = int32(frac)
}

// CheckAt implements Algorithm: the decision TakeAt would make, with the
// state put back as it was.
func (g *gcraAlg) CheckAt(now time.Time, n int64) Decision {
	saved := *g
	d := g.TakeAt(now, n)
	*g = saved
	return d
}

// PeekAt implements Algorithm: the tokens in use are those not yet back.
func (g *gcraAlg) PeekAt(now time.Time) (window, used int64) {
	t := max(now.UnixNano(), g.last)
	used, _ = g.inUse(t)
	return windowOf(t, g.window), used
}

// SetLimit implements Algorithm. The TAT stays (rounded up to the new
// fraction unit): the instant at which every token taken is back does not
// come sooner. A burst that followed the limit follows the new one; a set
// burst stays, at most the new limit.
func (g *gcraAlg) SetLimit(limit int64) {
	limit = int64(clamp32(max(limit, 0)))
	if g.frac > 0 {
		if limit == 0 {
			g.tat++
			g.frac = 0
		} else {
			q, r := mulDiv(int64(g.frac), limit, int64(g.limit))
			if r > 0 {
				q++
			}
			if q >= limit {
				q -= limit
				g.tat++
			}
			g.frac = int32(q)
		}
	}
	g.limit = int32(limit)
	if g.follow {
		g.burst = g.limit
	}
	g.burst = min(g.burst, g.limit)
}

// FillAt implements Algorithm: the TAT moves to now + burst·window/limit,
// as if the whole burst had just been taken.
func (g *gcraAlg) FillAt(now time.Time) {
	t := max(now.UnixNano(), g.last)
	g.last = t
	if g.limit <= 0 {
		return
	}
	q, r := mulDiv(int64(g.burst), g.window, int64(g.limit))
	if full := t + q; full > g.tat || (full == g.tat && r > int64(g.frac)) {
		g.tat, g.frac = full, int32(r) // r < limit
	}
}
