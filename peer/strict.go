package peer

import (
	"sort"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// give hands spare tokens of this member's budget to the members that
// need them, at two points of each window of each key:
//
//   - once the current window is giveNowAt through, the part of what is
//     left of the current window that this member's own demand will not
//     need goes to members that refused requests in it;
//   - once it is giveAt through, first the tokens that members refusing a
//     request larger than their share need for it (giveNeeds), then the part of this member's share of the
//     next window that its demand will not need goes to the members whose
//     demand exceeds their share.
//
// Both are shared out in proportion to the others' excess. Tokens are
// taken out of the budget (Counter.GiveAt) before they are announced.
func (s *merger) give(now time.Time, lcs []locker.LocalCount) {
	for _, lc := range lcs {
		w := int64(lc.Window)
		frac := float64(now.UnixNano()-lc.Index*w) / float64(w)
		if frac >= giveNowAt && s.decidedNow[lc.Name] < lc.Index {
			s.decidedNow[lc.Name] = lc.Index
			need := demand(lc.Asked, frac) - lc.Asked // what the rest of the window will ask
			need += need / 4
			if spare := lc.Budget - lc.Granted - need; spare > 0 {
				s.giveTo(now, lc, lc.Index, spare, func(p *member) int64 {
					c := p.counts[lc.Name][lc.Index]
					return c.Asked - c.Granted
				})
			}
		}
		if frac >= giveAt && s.decided[lc.Name] < lc.Index+1 {
			s.decided[lc.Name] = lc.Index + 1
			s.giveNeeds(now, lc)
			share := locker.Share(lc.Limit, len(s.members), s.rank)
			keep := demand(lc.Asked, frac)
			keep += keep / 4
			if spare := share - min(share, keep); spare > 0 {
				s.giveTo(now, lc, lc.Index+1, spare, func(p *member) int64 {
					return demand(p.counts[lc.Name][lc.Index].Asked, frac) - locker.Share(lc.Limit, p.members, p.rank)
				})
			}
		}
	}
}

// giveTo shares spare tokens of window k of lc's key among the members
// that are up and agree on the configuration, in proportion to the
// positive excess each has.
func (s *merger) giveTo(now time.Time, lc locker.LocalCount, k, spare int64, excess func(*member) int64) {
	type want struct {
		id     string
		excess int64
	}
	var wants []want
	var total int64
	for _, p := range s.peers {
		if !s.receives(now, p) {
			continue
		}
		if ex := excess(p); ex > 0 {
			wants = append(wants, want{p.id, ex})
			total += ex
		}
	}
	if total == 0 {
		return
	}
	sort.Slice(wants, func(i, j int) bool { return wants[i].id < wants[j].id })
	for _, wt := range wants {
		n := min(wt.excess, int64(float64(spare)*float64(wt.excess)/float64(total)))
		if n <= 0 {
			continue
		}
		if got := s.counter.GiveAt(now, lc.Name, k, n); got > 0 {
			s.gave[giftKey{wt.id, lc.Name, k}] += got
			s.repeat = repeatTransfers
		}
	}
}

// transfers returns the gifts for windows that have not ended.
func (s *merger) transfers(now time.Time) []Transfer {
	var out []Transfer
	for g, total := range s.gave {
		if cur, _, ok := s.window(now, g.key); ok && g.window >= cur {
			out = append(out, Transfer{To: g.to, Key: g.key, Window: g.window, Total: total})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		if a.Window != b.Window {
			return a.Window < b.Window
		}
		return a.To < b.To
	})
	return out
}

// receives reports whether p may be given tokens: it is up, in strict mode
// and agrees on the configuration.
func (s *merger) receives(now time.Time, p *member) bool {
	return p.heard && p.strict && !p.mismatch && p.members == len(s.members) && s.isUp(now, p) &&
		p.rank != s.rank
}

// giveNeeds hands out of this member's share of window lc.Index+1 the
// tokens that other members need for a request larger than their own
// share, which they refused in window lc.Index (Count.Need): without
// them such a request would be refused for as long as every member is
// busy. The members that may give split each need in rank order, each up
// to its share, so that together they give it once; the request then
// takes the tokens of the next window from the others' clients.
func (s *merger) giveNeeds(now time.Time, lc locker.LocalCount) {
	k := lc.Index + 1
	own := locker.Share(lc.Limit, len(s.members), s.rank)
	givers := map[int]bool{s.rank: true}
	for _, p := range s.peers {
		if s.receives(now, p) {
			givers[p.rank] = true
		}
	}
	ids := make([]string, 0, len(s.peers))
	for id := range s.peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		p := s.peers[id]
		if !s.receives(now, p) {
			continue
		}
		excess := p.counts[lc.Name][lc.Index].Need - locker.Share(lc.Limit, p.members, p.rank)
		for r := range givers {
			if r < s.rank && r != p.rank {
				excess -= locker.Share(lc.Limit, len(s.members), r)
			}
		}
		if n := min(excess, own); n > 0 {
			if got := s.counter.GiveAt(now, lc.Name, k, n); got > 0 {
				s.gave[giftKey{p.id, lc.Name, k}] += got
				s.repeat = repeatTransfers
				own -= got
			}
		}
	}
}

// need returns the need to publish for lc: in strict mode, the largest
// request refused in the window when it exceeds this member's share (the
// others act on nothing smaller), else 0, so that messages stay in
// version 1 for members of older releases.
func (s *merger) need(lc locker.LocalCount) int64 {
	if !s.strict || lc.Need <= locker.Share(lc.Limit, len(s.members), s.rank) {
		return 0
	}
	return lc.Need
}
