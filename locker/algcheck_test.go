package locker

import (
	"fmt"
	"math/big"
	"math/rand"
	"slices"
	"testing"
	"time"
)

// This file checks each algorithm against its definition on random
// arrival sequences: random N, random gaps (bursts at one instant, steps
// to just before, at and after window edges, long idle times) and clock
// readings out of order, as when goroutines read the clock before they
// are serialised. The instant a decision is made at is the latest reading
// so far (see Algorithm).

// arrival is one request of a replayed sequence.
type arrival struct {
	at int64 // clock reading, Unix ns
	n  int64
}

// arrivals returns a random sequence of count requests for a key of
// limit tokens (maxN at most per request) per window w.
func arrivals(r *rand.Rand, count int, maxN int64, w int64) []arrival {
	out := make([]arrival, 0, count)
	t := int64(1_800_000_000)*1e9 + r.Int63n(w)
	for i := 0; i < count; i++ {
		switch x := r.Intn(20); {
		case x < 6: // a burst: the same instant
		case x < 12:
			t += r.Int63n(w/4 + 1)
		case x < 14: // to just before, at or after the next window edge
			t = (t/w+1)*w + r.Int63n(3) - 1
		case x < 15:
			t += w + r.Int63n(3*w)
		case x < 16:
			t += w - 1
		default:
			t += r.Int63n(w/20 + 1)
		}
		at := t
		if r.Intn(5) == 0 { // a reading made earlier, serialised late
			at -= r.Int63n(w/2 + 1)
		}
		n := int64(1)
		if r.Intn(4) == 0 {
			n = 1 + r.Int63n(maxN)
		}
		out = append(out, arrival{at: at, n: n})
	}
	return out
}

// checkRetry checks that RetryAfter is exact: a copy of the algorithm
// before the refused request refuses it again 1ns before RetryAfter has
// passed and grants it once it has.
func checkRetry(t *testing.T, clone func() algo, now int64, n int64, d Decision) {
	t.Helper()
	if d.OK {
		return
	}
	if d.RetryAfter <= 0 {
		t.Fatalf("sorry with RetryAfter %v", d.RetryAfter)
	}
	if e := clone().TakeAt(time.Unix(0, now+int64(d.RetryAfter)-1), n); e.OK {
		t.Fatalf("granted 1ns before RetryAfter %v: %+v", d.RetryAfter, e)
	}
	if e := clone().TakeAt(time.Unix(0, now+int64(d.RetryAfter)), n); !e.OK {
		t.Fatalf("refused after RetryAfter %v: %+v", d.RetryAfter, e)
	}
}

func (s *slidingWindow) clone() algo {
	c := *s
	c.ring = slices.Clone(s.ring)
	return &c
}

func (g *gcraAlg) clone() algo {
	c := *g
	return &c
}

func (f *fixedWindow) clone() algo {
	c := *f
	return &c
}

// TestSlidingDefinition replays random sequences on sliding windows and
// checks every decision against a brute-force count over all grant
// instants: go exactly when the tokens granted in (t-w, t] plus N are at
// most the limit, Remaining, Reset and RetryAfter as defined, RetryAfter
// exact, and then that no interval [a, a+w) holds more than the limit.
func TestSlidingDefinition(t *testing.T) {
	for seed := int64(1); seed <= 60; seed++ {
		r := rand.New(rand.NewSource(seed))
		limit := 1 + r.Int63n(12)
		w := int64(time.Millisecond) * (1 + r.Int63n(1000))
		t.Run(fmt.Sprintf("seed%d-%d-per-%v", seed, limit, time.Duration(w)), func(t *testing.T) {
			s := newSlidingWindow(limit, time.Duration(w))
			var grants []int64 // instants of granted tokens, one per token
			last := int64(-1 << 63)
			for i, a := range arrivals(r, 400, limit, w) {
				now := max(a.at, last)
				last = now
				var used int64
				for _, g := range grants {
					if g > now-w {
						used++
					}
				}
				want := Decision{Window: windowOf(now, w)}
				if used+a.n <= limit {
					want.OK, want.Remaining, want.Reset = true, limit-used-a.n, time.Duration(w)
				} else {
					// The first instant t' from which the grants in
					// (t'-w, t'] leave room for n.
					live := grants[len(grants)-int(used):]
					want.RetryAfter = time.Duration(live[used+a.n-limit-1] + w - now)
					want.Reset = time.Duration(live[len(live)-1] + w - now)
				}
				before := s.clone()
				got := s.TakeAt(time.Unix(0, a.at), a.n)
				if got != want {
					t.Fatalf("request %d (N=%d, reading %d, instant %d): %+v, want %+v", i, a.n, a.at, now, got, want)
				}
				checkRetry(t, func() algo { return before.(*slidingWindow).clone() }, now, a.n, got)
				if got.OK {
					for j := int64(0); j < a.n; j++ {
						grants = append(grants, now)
					}
				}
			}
			// The definition itself, by brute force: the intervals that
			// hold the most start at a grant.
			for i, a := range grants {
				in := 0
				for _, g := range grants[i:] {
					if g < a+w {
						in++
					}
				}
				if int64(in) > limit {
					t.Fatalf("%d grants in [%d, %d+%d), limit %d", in, a, a, w, limit)
				}
			}
		})
	}
}

// refGCRA is GCRA written as its definition, in exact rationals.
type refGCRA struct {
	t, burst *big.Rat // emission interval window/limit, burst·t
	b        int64
	tat      *big.Rat
}

func newRefGCRA(limit, w, burst int64) *refGCRA {
	t := big.NewRat(w, limit)
	return &refGCRA{t: t, b: burst, burst: new(big.Rat).Mul(t, big.NewRat(burst, 1)), tat: big.NewRat(-1<<62, 1)}
}

// ceil returns the least integer at least x.
func ceil(x *big.Rat) int64 {
	q, m := new(big.Int).DivMod(x.Num(), x.Denom(), new(big.Int))
	if m.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return q.Int64()
}

func floor(x *big.Rat) int64 {
	q, _ := new(big.Int).DivMod(x.Num(), x.Denom(), new(big.Int))
	return q.Int64()
}

func (g *refGCRA) take(now, w, n int64) Decision {
	t := big.NewRat(now, 1)
	d := Decision{Window: windowOf(now, w)}
	tat := g.tat
	if tat.Cmp(t) < 0 {
		tat = t
	}
	newTat := new(big.Rat).Add(tat, new(big.Rat).Mul(g.t, big.NewRat(n, 1)))
	allowAt := new(big.Rat).Sub(newTat, g.burst)
	if t.Cmp(allowAt) < 0 {
		d.RetryAfter = time.Duration(ceil(new(big.Rat).Sub(allowAt, t)))
		if g.tat.Cmp(t) > 0 {
			d.Reset = time.Duration(ceil(new(big.Rat).Sub(g.tat, t)))
		}
		return d
	}
	g.tat = newTat
	left := new(big.Rat).Sub(new(big.Rat).Add(t, g.burst), newTat)
	d.OK = true
	d.Remaining = floor(new(big.Rat).Quo(left, g.t))
	d.Reset = time.Duration(ceil(new(big.Rat).Sub(newTat, t)))
	return d
}

// TestGCRADefinition replays random sequences on GCRA keys of random
// limits (including ones that do not divide the window), bursts and
// windows, and checks every decision, field by field, against refGCRA,
// and that RetryAfter is exact.
func TestGCRADefinition(t *testing.T) {
	for seed := int64(1); seed <= 60; seed++ {
		r := rand.New(rand.NewSource(seed))
		limit := 1 + r.Int63n(50)
		if seed%10 == 0 {
			limit = MaxLimit - r.Int63n(1000)
		}
		burst := int64(0)
		if r.Intn(2) == 0 {
			burst = 1 + r.Int63n(limit)
		}
		w := int64(time.Millisecond) * (1 + r.Int63n(2000))
		if seed%7 == 0 {
			w = int64(MaxWindow)
		}
		t.Run(fmt.Sprintf("seed%d-%d-per-%v-burst%d", seed, limit, time.Duration(w), burst), func(t *testing.T) {
			g := newGCRA(limit, time.Duration(w), burst)
			b := burst
			if b == 0 {
				b = limit
			}
			ref := newRefGCRA(limit, w, b)
			last := int64(-1 << 63)
			for i, a := range arrivals(r, 300, min(b, 20), w) {
				now := max(a.at, last)
				last = now
				want := ref.take(now, w, a.n)
				before := g.clone()
				got := g.TakeAt(time.Unix(0, a.at), a.n)
				if got != want {
					t.Fatalf("request %d (N=%d, instant %d): %+v, want %+v", i, a.n, now, got, want)
				}
				checkRetry(t, func() algo { return before.(*gcraAlg).clone() }, now, a.n, got)
			}
		})
	}
}

// TestFixedDefinition replays random sequences on fixed windows and
// checks every decision against the fixed window written as its
// definition: at most the limit in each epoch-aligned window, counted in
// the window of the latest instant so far. As before the other
// algorithms, the fixed window keeps no latest instant, only the latest
// window: a reading late within it has the time left from itself.
func TestFixedDefinition(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		r := rand.New(rand.NewSource(seed))
		limit := 1 + r.Int63n(12)
		w := int64(time.Millisecond) * (1 + r.Int63n(1000))
		f := newFixedWindow(limit, time.Duration(w))
		counts := map[int64]int64{}
		last := int64(-1 << 63)
		for i, a := range arrivals(r, 300, limit, w) {
			now := max(a.at, last)
			last = now
			k := windowOf(now, w)
			left := time.Duration((k+1)*w - a.at)
			if windowOf(a.at, w) < k {
				left = time.Duration(w)
			}
			want := Decision{Reset: left, RetryAfter: left, Window: k}
			if counts[k]+a.n <= limit {
				counts[k] += a.n
				want = Decision{OK: true, Remaining: limit - counts[k], Reset: left, Window: k}
			}
			before := f.clone()
			if got := f.TakeAt(time.Unix(0, a.at), a.n); got != want {
				t.Fatalf("seed %d request %d: %+v, want %+v", seed, i, got, want)
			} else if a.at == now {
				checkRetry(t, func() algo { return before.(*fixedWindow).clone() }, now, a.n, got)
			}
		}
	}
}

// TestCheckMatchesTake checks, on the same random sequences, that CheckAt
// returns what TakeAt then returns and changes nothing, and that PeekAt
// changes nothing, for every algorithm.
func TestCheckMatchesTake(t *testing.T) {
	const w = int64(100 * time.Millisecond)
	algs := map[string]func() algo{
		"fixed":   func() algo { return newFixedWindow(7, time.Duration(w)) },
		"sliding": func() algo { return newSlidingWindow(7, time.Duration(w)) },
		"gcra":    func() algo { return newGCRA(7, time.Duration(w), 0) },
		"gcra:1":  func() algo { return newGCRA(7, time.Duration(w), 1) },
	}
	for name, mk := range algs {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewSource(1))
			a, b := mk(), mk() // b only takes
			for i, x := range arrivals(r, 500, 7, w) {
				now := time.Unix(0, x.at)
				// A read at a later instant must not move anything.
				a.PeekAt(now.Add(time.Duration(r.Int63n(3 * w))))
				a.CheckAt(now.Add(time.Duration(r.Int63n(3*w))), x.n)
				c := a.CheckAt(now, x.n)
				d := a.TakeAt(now, x.n)
				if e := b.TakeAt(now, x.n); c != d || d != e {
					t.Fatalf("request %d: CheckAt %+v, TakeAt %+v, without reads %+v", i, c, d, e)
				}
			}
		})
	}
}

// cloneAlg returns a deep copy of a, for the tests.
func cloneAlg(a algo) algo {
	switch a := a.(type) {
	case *slidingWindow:
		return a.clone()
	case *gcraAlg:
		return a.clone()
	case *fixedWindow:
		return a.clone()
	}
	panic("unknown algorithm")
}

func cloneKey(ks *keyState) *keyState {
	c := *ks
	c.alg = cloneAlg(ks.alg)
	var cm *multiLimit
	if m := ks.multi(); m != nil {
		cm = &multiLimit{last: m.last}
		for _, a := range m.more {
			cm.more = append(cm.more, cloneAlg(a))
		}
	}
	c.ext = nil
	c.setExt(cm, ks.fed())
	return &c
}

// capacityOf returns the most tokens part a may have in use: its limit,
// or its burst for gcra.
func capacityOf(a algo) int64 {
	switch a := a.(type) {
	case *slidingWindow:
		return a.limit
	case *gcraAlg:
		return int64(a.burst)
	case *fixedWindow:
		return int64(a.limit)
	}
	panic("unknown algorithm")
}

// TestMultiLimitDefinition replays random sequences on keys of two to
// four random limits and checks, at every request: all or none (on a go
// every limit has n more tokens in use, on a sorry none has changed); a
// go's Remaining is the least any limit has left; RetryAfter is exact,
// with every limit granting then; and, at the end, that no interval of a
// sliding limit's window holds more than its limit.
func TestMultiLimitDefinition(t *testing.T) {
	algs := []AlgorithmName{AlgFixed, AlgSliding, AlgGCRA}
	for seed := int64(1); seed <= 40; seed++ {
		r := rand.New(rand.NewSource(seed))
		k := KeyConfig{Name: "m"}
		parts := 2 + r.Intn(3)
		minW := int64(MaxWindow)
		for i := 0; i < parts; i++ {
			p := Part{Limit: 1 + r.Int63n(10), Window: time.Duration(1+r.Int63n(1000)) * time.Millisecond, Algorithm: algs[r.Intn(3)]}
			if p.Algorithm == AlgGCRA && r.Intn(2) == 0 {
				p.Burst = 1 + r.Int63n(p.Limit)
			}
			minW = min(minW, int64(p.Window))
			if i == 0 {
				k.Limit, k.Window, k.Algorithm, k.Burst = p.Limit, p.Window, p.Algorithm, p.Burst
			} else {
				k.More[i-1] = p
			}
		}
		t.Run(fmt.Sprintf("seed%d-%s", seed, k), func(t *testing.T) {
			if err := k.Validate(); err != nil {
				t.Fatal(err)
			}
			ks := (&Counter{}).newKey(&keySource{cfg: k})
			grants := make([][]int64, parts) // per sliding part
			last := int64(-1 << 63)
			for i, a := range arrivals(r, 300, int64(ks.maxN), minW) {
				now := max(a.at, last)
				last = now
				at := time.Unix(0, now)
				before := cloneKey(ks)
				got := ks.take(time.Unix(0, a.at), a.n)
				least := int64(1 << 62)
				for j, p := range ks.algs() {
					_, u0 := before.algs()[j].PeekAt(at)
					_, u1 := p.PeekAt(at)
					want := u0
					if got.OK {
						want = u0 + a.n
						if s, ok := p.(*slidingWindow); ok {
							for x := int64(0); x < a.n; x++ {
								grants[j] = append(grants[j], now)
							}
							_ = s
						}
					}
					if u1 != want {
						t.Fatalf("request %d (N=%d, ok %v): limit %d has %d in use, was %d", i, a.n, got.OK, j, u1, u0)
					}
					least = min(least, capacityOf(p)-u1)
				}
				if got.OK && got.Remaining != least {
					t.Fatalf("request %d: Remaining %d, want the least left, %d", i, got.Remaining, least)
				}
				if !got.OK {
					if got.RetryAfter <= 0 {
						t.Fatalf("request %d: sorry with RetryAfter %v", i, got.RetryAfter)
					}
					early, onTime := cloneKey(before), cloneKey(before)
					if d := early.take(at.Add(got.RetryAfter-1), a.n); d.OK {
						for _, p := range cloneKey(before).algs() {
							t.Logf("%+v now / %+v early", p.CheckAt(at, a.n), p.CheckAt(at.Add(got.RetryAfter-1), a.n))
						}
						t.Logf("reading %d now %d got %+v", a.at, now, got)
						t.Fatalf("request %d: granted 1ns before RetryAfter %v", i, got.RetryAfter)
					}
					if d := onTime.take(at.Add(got.RetryAfter), a.n); !d.OK {
						t.Fatalf("request %d: refused after RetryAfter %v: %+v", i, got.RetryAfter, d)
					}
				}
			}
			for j, p := range ks.algs() {
				s, ok := p.(*slidingWindow)
				if !ok {
					continue
				}
				g := grants[j]
				for x := range g {
					in := 0
					for _, y := range g[x:] {
						if y < g[x]+s.window {
							in++
						}
					}
					if int64(in) > s.limit {
						t.Fatalf("limit %d: %d grants within %v, limit %d", j, in, time.Duration(s.window), s.limit)
					}
				}
			}
		})
	}
}
