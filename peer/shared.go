package peer

import (
	"time"

	"github.com/lockerd/lockerd/locker"
)

// reserve sets, in shared mode, how many tokens of key in window k are
// kept for the other members that are up: what each may grant in k, less
// what it has granted in k already.
//
// What a member may grant follows demand, the tokens each member asked
// for in the window before (for the next window: the current one,
// extrapolated; the next window's own counts are empty until it starts,
// so they say nothing about it). A peer's demand is taken as at least its
// share until it is known to be final: for the current window, until a
// message the peer sent in the current window arrived (it sends its final
// counts of the window before when its window rolls); for the next
// window, always, since extrapolations differ from member to member. So
// members agree on the demand they act on, and a member whose messages
// are late keeps its share. A member is entitled to its demand up to
// its share; the shares that members do not need are split among the
// members that need more, in proportion to their excess. The tokens left
// after that (demand below the limit) are split among all members that
// are up, in proportion to their shares, rather than left to whoever asks
// first: members that become busy together in a window would otherwise
// each take all of them. Every member computes the same split from the
// same published counts, rounding the others' parts up, so no two members
// count on the same token; the members together grant at most the limit
// in a window as long as their views of the counts agree.
func (s *merger) reserve(now time.Time, key string, k int64) {
	cur, cfg, ok := s.window(now, key)
	if !ok {
		return
	}
	entries := s.entries(now, key, k, cur, cfg)
	var pool, excess, weights int64
	for _, e := range entries {
		pool += max(0, e.share-e.demand)
		excess += max(0, e.demand-e.share)
		if !e.silent {
			weights += e.share
		}
	}
	pool = min(pool, cfg.Limit)
	unclaimed := cfg.Limit
	for i := range entries {
		e := &entries[i]
		e.ent = min(e.share, e.demand)
		if ex := e.demand - e.share; ex > 0 && excess > 0 {
			if !e.other() {
				e.ent += min(ex, pool*ex/excess)
			} else {
				// Rounded up: each member rounds the others' part up
				// and so never counts on a token another counts on.
				e.ent += min(ex, ceilDiv(pool*ex, excess))
			}
		}
		unclaimed -= e.ent
	}
	unclaimed = max(0, unclaimed)
	var total int64
	for _, e := range entries {
		if !e.other() {
			continue
		}
		// A silent member hears no one or is not heard: it grants at
		// most its share (its own view keeps the others' shares).
		part := int64(0)
		switch {
		case e.silent:
		case weights > 0:
			part = ceilDiv(unclaimed*e.share, weights)
		default:
			part = ceilDiv(unclaimed, int64(len(entries)))
		}
		total += max(0, e.ent+part-e.grantedIn(key, k))
	}
	// Whatever the others announce, this member keeps what it is entitled
	// to on its own share: no message can make it refuse everything.
	own := entries[0]
	total = min(total, cfg.Limit-min(own.share, own.demand))
	ck := countKey{key, k}
	if old, had := s.reserved[ck]; had && old == total {
		return
	}
	s.reserved[ck] = total
	s.counter.SetReserveAt(now, key, k, total)
}

// entry is one member as reserve sees it.
type entry struct {
	p                  *member // nil for this member and silent ranks
	share, demand, ent int64
	// silent marks a rank no member up holds; granted is what its members
	// that are down granted in the window.
	silent  bool
	granted int64
}

// other reports whether e is another member than this one.
func (e *entry) other() bool { return e.p != nil || e.silent }

// grantedIn returns what e granted in window k of key, as known.
func (e *entry) grantedIn(key string, k int64) int64 {
	if e.p == nil {
		return e.granted
	}
	return e.p.counts[key][k].Granted
}

// entries returns this member, first, then the others with their shares
// and their demand for window k of key: those that are up, and, for each
// other rank of the member list that no member up holds, its share with
// a demand of its share (a member down or not heard yet may still be
// granting: its share stays its own, as in strict mode).
func (s *merger) entries(now time.Time, key string, k, cur int64, cfg locker.KeyConfig) []entry {
	frac := float64(now.UnixNano()-cur*int64(cfg.Window)) / float64(cfg.Window)
	// demandOf takes a member's asked counts of windows cur-1 and cur.
	demandOf := func(prev, asked int64) int64 {
		switch {
		case k <= cur:
			return min(prev, cfg.Limit)
		case frac > 0:
			return min(demand(asked, frac), cfg.Limit)
		}
		return 0
	}
	self := s.self[key]
	if self.Index != cur {
		self = locker.LocalCount{}
	}
	n := len(s.members)
	out := []entry{{share: locker.Share(cfg.Limit, n, s.rank), demand: demandOf(self.PrevAsked, self.Asked)}}
	covered := make([]bool, n)
	covered[s.rank] = true
	down := make([]int64, n) // granted in k by members down, per rank
	var unranked int64       // granted in k by members whose rank is not known
	for _, p := range s.peers {
		known := p.heard && p.members == n && p.rank < n
		if !s.isUp(now, p) || !p.heard {
			if known {
				down[p.rank] += p.counts[key][k].Granted
			} else {
				unranked += p.counts[key][k].Granted
			}
			continue
		}
		if known {
			covered[p.rank] = true
		}
		byWin := p.counts[key]
		e := entry{p: p, share: locker.Share(cfg.Limit, p.members, p.rank), demand: demandOf(byWin[cur-1].Asked, byWin[cur].Asked)}
		if k > cur || p.final[key] < cur-1 {
			e.demand = max(e.demand, e.share)
		}
		out = append(out, e)
	}
	// The grants of members whose rank is not known yet count against
	// the silent ranks, in order: they are counted as remote grants too.
	for r, ok := range covered {
		if !ok {
			share := locker.Share(cfg.Limit, n, r)
			g := min(share, down[r]+unranked)
			unranked -= max(0, g-down[r])
			out = append(out, entry{share: share, demand: share, granted: g, silent: true})
		}
	}
	return out
}

// ceilDiv returns a/b rounded up, for a >= 0 and b > 0.
func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// maxAsked bounds the demand figures: beyond it, a demand means no more
// than "far above any limit" (locker.MaxLimit is 1e9), and sums over
// MaxMembers members cannot overflow.
const maxAsked = 1 << 40

// demand estimates the tokens a member will ask for in a whole window
// from what it asked in the part elapsed (frac), at most maxAsked.
func demand(asked int64, frac float64) int64 {
	if asked <= 0 {
		return 0
	}
	d := float64(asked)/frac + 0.999
	if frac <= 0 || d >= maxAsked {
		return maxAsked
	}
	return int64(d)
}
