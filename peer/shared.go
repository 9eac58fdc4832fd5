package peer

import (
	"time"

	"github.com/lockerd/lockerd/locker"
)

// reserve sets, in shared mode, how many tokens of key in window k are
// kept for the other members that are up: what each is entitled to, less
// what it has granted in k already.
//
// Entitlements follow demand, the tokens each member asked for in the
// window before (for the next window: the current one, extrapolated; the
// next window's own counts are empty until it starts, so they say
// nothing about it). A
// member is entitled to its demand up to its share; the shares that
// members do not need are split among the members that need more, in
// proportion to their excess. Every member computes the same split from
// the same published counts, so two busy members do not both count on an
// idle member's share while grants are in flight. What no one is entitled
// to (the shares of idle or silent members beyond any demand) is free for
// whoever asks first.
func (s *merger) reserve(now time.Time, key string, k int64) {
	cur, cfg, ok := s.window(now, key)
	if !ok {
		return
	}
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
	type entry struct {
		p             *member // nil for this member
		share, demand int64
	}
	self := s.self[key]
	if self.Index != cur {
		self = locker.LocalCount{}
	}
	own := entry{nil, locker.Share(cfg.Limit, len(s.members), s.rank), demandOf(self.PrevAsked, self.Asked)}
	entries := []entry{own}
	for _, p := range s.peers {
		if !p.heard || !s.isUp(now, p) {
			continue
		}
		byWin := p.counts[key]
		entries = append(entries, entry{p, locker.Share(cfg.Limit, p.members, p.rank),
			demandOf(byWin[cur-1].Asked, byWin[cur].Asked)})
	}
	var pool, excess int64
	for _, e := range entries {
		pool += max(0, e.share-e.demand)
		excess += max(0, e.demand-e.share)
	}
	var total int64
	for _, e := range entries {
		if e.p == nil {
			continue
		}
		ent := min(e.share, e.demand)
		if ex := e.demand - e.share; ex > 0 && excess > 0 {
			// Rounded up: each member rounds the others' part up
			// and so never counts on a token another counts on.
			ent += min(ex, (pool*ex+excess-1)/excess)
		}
		total += max(0, ent-e.p.counts[key][k].Granted)
	}
	// Whatever the others announce, this member keeps what it is entitled
	// to on its own share: no message can make it refuse everything.
	total = min(total, cfg.Limit-min(own.share, own.demand))
	ck := countKey{key, k}
	if old, had := s.reserved[ck]; had && old == total {
		return
	}
	s.reserved[ck] = total
	s.counter.SetReserveAt(now, key, k, total)
}

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
