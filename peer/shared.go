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
		weights += e.share
	}
	pool = min(pool, cfg.Limit)
	unclaimed := cfg.Limit
	for i := range entries {
		e := &entries[i]
		e.ent = min(e.share, e.demand)
		if ex := e.demand - e.share; ex > 0 && excess > 0 {
			if e.p == nil {
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
		if e.p == nil {
			continue
		}
		part := ceilDiv(unclaimed, int64(len(entries)))
		if weights > 0 {
			part = ceilDiv(unclaimed*e.share, weights)
		}
		total += max(0, e.ent+part-e.p.counts[key][k].Granted)
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
	p                  *member // nil for this member
	share, demand, ent int64
}

// entries returns this member, first, and the others that are up, with
// their shares and their demand for window k of key.
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
	out := []entry{{share: locker.Share(cfg.Limit, len(s.members), s.rank), demand: demandOf(self.PrevAsked, self.Asked)}}
	for _, p := range s.peers {
		if !p.heard || !s.isUp(now, p) {
			continue
		}
		byWin := p.counts[key]
		e := entry{p: p, share: locker.Share(cfg.Limit, p.members, p.rank), demand: demandOf(byWin[cur-1].Asked, byWin[cur].Asked)}
		if k > cur || p.lastSent < cur*int64(cfg.Window) {
			e.demand = max(e.demand, e.share)
		}
		out = append(out, e)
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
