package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// The grant checks below judge a run by the definition of each algorithm,
// from grants seen by clients. A client knows only that the server decided
// a grant at some instant between the moment the request was handed to
// the client (lo) and the moment its answer came back (hi), both read from
// the system clock, the clock the server decides by. So a check counts,
// for each interval, only the grants whose whole [lo, hi] lies inside it:
// those certainly fell in it. A count above the bound is then a real over,
// never a false alarm (as long as the system clock is not stepped during
// the run). What it cannot see: an over whose grants spread so close to
// the interval's length that the round trips at its ends no longer fit
// inside (a sliding over of LIMIT+1 grants spread over more than WINDOW
// minus the two round trips), and grants whose answer never came back
// (lost with a killed process, or past the client's timeout).

// grantSpan is one grant: the server decided it in [lo, hi], Unix ns.
type grantSpan struct {
	lo, hi int64
	window int64 // the window the answer named
	member int
}

// grantOver is the interval a check found most loaded.
type grantOver struct {
	from, to int64 // the interval [from, to), or [from, to] for gcra
	count    int64 // grants certainly inside
	bound    int64 // the most the definition allows in it
}

func (o grantOver) over() bool { return o.count > o.bound }

// excess is how far the count is from the bound: above 0 is an over.
func (o grantOver) excess() int64 { return o.count - o.bound }

func (o grantOver) String() string {
	return fmt.Sprintf("%d grants certainly in [%s, %s] (%v long), at most %d allowed",
		o.count, time.Unix(0, o.from).Format("15:04:05.000000"), time.Unix(0, o.to).Format("15:04:05.000000"),
		time.Duration(o.to-o.from), o.bound)
}

// grantsByLo returns the grants sorted by lo.
func grantsByLo(gs []grantSpan) []grantSpan {
	s := append([]grantSpan(nil), gs...)
	sort.Slice(s, func(i, j int) bool { return s[i].lo < s[j].lo })
	return s
}

// grantCheckSliding returns the interval [a, a+window) holding the most
// grants certainly inside it, by brute force over every start: the set of
// grants certainly inside [a, a+window) only grows as a moves right up to
// the lowest lo among them, so the starts worth trying are the grants' lo.
func grantCheckSliding(gs []grantSpan, limit int64, window time.Duration) grantOver {
	s := grantsByLo(gs)
	best := grantOver{bound: limit}
	for i := range s {
		a := s[i].lo
		if i > 0 && s[i-1].lo == a {
			continue
		}
		end := a + int64(window)
		var n int64
		for j := i; j < len(s) && s[j].lo < end; j++ {
			if s[j].hi < end {
				n++
			}
		}
		if n > best.count {
			best = grantOver{from: a, to: end, count: n, bound: limit}
		}
	}
	return best
}

// grantCheckGCRA returns the interval [a, b] where the grants certainly inside
// it exceed the GCRA bound most (or come closest to it): PROTOCOL.md
// promises at most BURST + d/T grants in any interval of length d, T =
// window/limit, which for whole grants in a closed interval is burst +
// floor(d·limit/window). Brute force: every start a is a grant's lo, every
// end b a grant's hi.
func grantCheckGCRA(gs []grantSpan, limit, burst int64, window time.Duration) grantOver {
	s := grantsByLo(gs)
	best := grantOver{bound: burst}
	first := true
	his := make([]int64, 0, len(s))
	for i := range s {
		a := s[i].lo
		if i > 0 && s[i-1].lo == a {
			continue
		}
		his = his[:0]
		for j := i; j < len(s); j++ {
			his = append(his, s[j].hi)
		}
		sort.Slice(his, func(x, y int) bool { return his[x] < his[y] })
		for k, b := range his {
			// Every grant counted starts at a or later and ends by b.
			o := grantOver{from: a, to: b, count: int64(k + 1), bound: burst + (b-a)*limit/int64(window)}
			if first || o.excess() > best.excess() {
				best, first = o, false
			}
		}
	}
	return best
}

// grantCheckFixed returns the epoch-aligned window [k·window, (k+1)·window)
// holding the most grants certainly inside it.
func grantCheckFixed(gs []grantSpan, limit int64, window time.Duration) grantOver {
	w := int64(window)
	per := map[int64]int64{}
	for _, g := range gs {
		if k := g.lo / w; g.hi/w == k {
			per[k]++
		}
	}
	best := grantOver{bound: limit}
	for k, n := range per {
		if n > best.count {
			best = grantOver{from: k * w, to: (k + 1) * w, count: n, bound: limit}
		}
	}
	return best
}

// grantCheckLabels returns the window label the server named on the most
// grants, and their count: for a fixed key, the server's own account.
func grantCheckLabels(gs []grantSpan) (window, count int64) {
	per := map[int64]int64{}
	for _, g := range gs {
		per[g.window]++
		if per[g.window] > count {
			window, count = g.window, per[g.window]
		}
	}
	return window, count
}

// TestGrantChecks shows that the checks catch an over and raise no false
// alarm from the uncertainty of the grant times.
func TestGrantChecks(t *testing.T) {
	const ms = int64(time.Millisecond)
	// at returns n grants at start, start+step, ..., each known to within
	// rtt.
	at := func(start, step, rtt int64, n int) []grantSpan {
		var gs []grantSpan
		for i := range n {
			lo := start + int64(i)*step
			gs = append(gs, grantSpan{lo: lo, hi: lo + rtt})
		}
		return gs
	}
	cat := func(parts ...[]grantSpan) []grantSpan {
		var gs []grantSpan
		for _, p := range parts {
			gs = append(gs, p...)
		}
		return gs
	}
	const w = 100 * time.Millisecond
	tests := []struct {
		name  string
		check func([]grantSpan) grantOver
		gs    []grantSpan
		over  bool
		count int64 // grants counted in the worst interval
	}{
		// Sliding 5/100ms.
		{"sliding: 5 at once, 5 a window later", func(g []grantSpan) grantOver { return grantCheckSliding(g, 5, w) },
			cat(at(1000*ms, 0, ms, 5), at(1101*ms, 0, ms, 5)), false, 5},
		{"sliding: 6 within 50ms", func(g []grantSpan) grantOver { return grantCheckSliding(g, 5, w) },
			at(1000*ms, 10*ms, ms, 6), true, 6},
		{"sliding: 5 at the end of an epoch window, 1 just after", func(g []grantSpan) grantOver { return grantCheckSliding(g, 5, w) },
			cat(at(1095*ms, ms, ms/2, 5), at(1101*ms, 0, ms/2, 1)), true, 6},
		// Six grants in 100ms, but only if each was decided at the early end
		// of its span: not certain, so no alarm.
		{"sliding: 6 only with uncertain ends", func(g []grantSpan) grantOver { return grantCheckSliding(g, 5, w) },
			at(1000*ms, 19*ms, 10*ms, 6), false, 5},
		// A grant whose answer took longer than the window is never counted.
		{"sliding: a slow answer", func(g []grantSpan) grantOver { return grantCheckSliding(g, 5, w) },
			cat(at(1000*ms, 0, ms, 5), []grantSpan{{lo: 990 * ms, hi: 1200 * ms}}), false, 5},
		// GCRA 10/100ms (T 10ms), burst 3: 3 at once, then one every 10ms.
		{"gcra: burst then paced", func(g []grantSpan) grantOver { return grantCheckGCRA(g, 10, 3, w) },
			cat(at(1000*ms, 0, ms/10, 3), at(1010*ms, 10*ms, ms/10, 20)), false, 3},
		{"gcra: one grant too early", func(g []grantSpan) grantOver { return grantCheckGCRA(g, 10, 3, w) },
			cat(at(1000*ms, 0, ms/10, 3), at(1005*ms, 10*ms, ms/10, 1)), true, 4},
		{"gcra: a burst of 4", func(g []grantSpan) grantOver { return grantCheckGCRA(g, 10, 3, w) },
			at(1000*ms, 0, ms, 4), true, 4},
		// GCRA 10/100ms, burst 1: grants 9.9ms apart, where T is 10ms; the
		// first two are already over (2 in 9.91ms, at most 1 + 0).
		{"gcra:1: paced a little too fast", func(g []grantSpan) grantOver { return grantCheckGCRA(g, 10, 1, w) },
			at(1000*ms, 99*ms/10, ms/100, 11), true, 2},
		{"gcra:1: paced exactly", func(g []grantSpan) grantOver { return grantCheckGCRA(g, 10, 1, w) },
			at(1000*ms, 10*ms, ms/100, 11), false, 1},
		// Fixed 5/100ms: the epoch window [1000ms, 1100ms).
		{"fixed: 5 then 5 in the next window", func(g []grantSpan) grantOver { return grantCheckFixed(g, 5, w) },
			cat(at(1095*ms, ms, ms/2, 5), at(1100*ms, ms, ms/2, 5)), false, 5},
		{"fixed: 6 in a window", func(g []grantSpan) grantOver { return grantCheckFixed(g, 5, w) },
			at(1000*ms, 10*ms, ms, 6), true, 6},
		{"fixed: the sixth straddles the edge", func(g []grantSpan) grantOver { return grantCheckFixed(g, 5, w) },
			cat(at(1090*ms, ms, ms/2, 5), []grantSpan{{lo: 1099 * ms, hi: 1101 * ms}}), false, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.check(tt.gs)
			if o.over() != tt.over || o.count != tt.count {
				t.Errorf("got %v (over %v), want over %v with %d grants", o, o.over(), tt.over, tt.count)
			}
		})
	}
	if _, n := grantCheckLabels([]grantSpan{{window: 7}, {window: 8}, {window: 7}}); n != 2 {
		t.Errorf("grantCheckLabels: %d grants in the busiest window, want 2", n)
	}
}

// grantSummary formats the grants of each member, for a failure message.
func grantSummary(gs []grantSpan, members int) string {
	per := make([]int, members)
	for _, g := range gs {
		per[g.member]++
	}
	parts := make([]string, members)
	for i, n := range per {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, "+")
}
