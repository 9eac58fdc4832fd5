package peer

import (
	"strconv"
	"time"
)

// forgetAfter is how many heartbeat intervals of silence, at least, make
// a member's id forgotten, once none of its counts or transfers concern a
// window that has not ended.
const forgetAfter = 10

// maxIDs returns how many member ids are tracked at once: a member that
// restarts under a new id leaves its old one behind until it is forgotten.
func (s *merger) maxIDs() int { return 2*len(s.members) + 8 }

// handle folds one received message into the state and the Counter. It
// reports whether the sender is new or was down: it may not know this
// member's state, which is then worth publishing at once.
func (s *merger) handle(now time.Time, m *Message) (newcomer bool) {
	if m.From == s.id {
		return false
	}
	p := s.peer(now, m)
	if p == nil {
		return false
	}
	newcomer = p.messages == 0 || !s.isUp(now, p)
	p.lastSeen = now
	p.messages++
	s.handleClock(now, p, m.Sent)
	if m.Type == TypeHeartbeat {
		s.handleHeartbeat(p, m)
		s.updateGivers(now) // p may have come up or changed its view
	}
	s.handleCounts(now, p, m.Sent, m.Counts)
	s.handleTransfers(now, p, m.Transfers)
	return newcomer
}

// peer returns the member that sent m, admitting a new id when there is
// room. When maxIDs are tracked, a heartbeat that agrees on the
// configuration (so from a configured member, restarted under a new id)
// takes the place of the id silent for longest among those that are
// down; anything else from a new id is ignored.
func (s *merger) peer(now time.Time, m *Message) *member {
	if p := s.peers[m.From]; p != nil {
		return p
	}
	if len(s.peers) >= s.maxIDs() {
		old := s.oldestDown(now)
		if m.Type != TypeHeartbeat || m.Digest != s.digest || old == nil {
			s.ignored++
			if s.ignored&(s.ignored-1) == 0 { // log the 1st, 2nd, 4th, ... only
				s.log.Warn("too many member ids; ignoring a new one until one is forgotten", "peer", m.From, "count", s.ignored)
			}
			return nil
		}
		s.log.Warn("too many member ids; forgetting the one silent for longest", "peer", m.From, "forgotten", old.id)
		s.retire(old)
	}
	p := &member{id: m.From, counts: make(map[string]map[int64]Count), recv: make(map[string]map[int64]int64),
		final: make(map[string]int64)}
	s.peers[m.From] = p
	s.log.Info("peer seen", "peer", m.From)
	return p
}

// retire forgets p, keeping its grants in windows that have not ended.
func (s *merger) retire(p *member) {
	for key, byWin := range p.counts {
		r := s.retired[key]
		if r == nil {
			r = make(map[int64]int64)
			s.retired[key] = r
		}
		for w, c := range byWin {
			r[w] += c.Granted
		}
	}
	delete(s.peers, p.id)
}

// oldestDown returns the member that is down and was silent for longest,
// or nil.
func (s *merger) oldestDown(now time.Time) *member {
	var old *member
	for _, p := range s.peers {
		if !s.isUp(now, p) && (old == nil || p.lastSeen.Before(old.lastSeen)) {
			old = p
		}
	}
	return old
}

// maxClockOffset bounds the clock offsets taken from messages, so that a
// clock field of any value cannot overflow the arithmetic.
const maxClockOffset = int64(24 * time.Hour)

// handleClock adds a sample of the sender's clock offset.
func (s *merger) handleClock(now time.Time, p *member, sent int64) {
	n := now.UnixNano()
	off := max(n-maxClockOffset, min(sent, n+maxClockOffset)) - n
	p.samples[p.nsamples%offsetSamples] = off
	p.nsamples++
	best := p.samples[0]
	for _, v := range p.samples[1:min(p.nsamples, offsetSamples)] {
		best = max(best, v)
	}
	p.offset = time.Duration(best)
}

// handleHeartbeat records the sender's view of the federation.
func (s *merger) handleHeartbeat(p *member, m *Message) {
	p.heard, p.strict, p.members, p.rank = true, m.Strict, m.Members, m.Rank
	p.digest = m.Digest
	mismatch := m.Digest != s.digest
	if mismatch && !p.mismatch {
		s.log.Error("peer configuration differs: keys, mode or member list disagree; the cluster limit is not enforced as configured",
			"peer", p.id, "peer_digest", strconv.FormatUint(m.Digest, 16), "digest", strconv.FormatUint(s.digest, 16),
			"peer_members", m.Members, "members", len(s.members), "peer_strict", m.Strict, "strict", s.strict)
	} else if !mismatch && p.mismatch {
		s.log.Info("peer configuration agrees again", "peer", p.id)
	}
	p.mismatch = mismatch
}

// clampCount bounds what a peer reports for a key of the given limit: no
// member grants more than the limit in a window, and demand beyond
// maxAsked means no more than "far more than the limit".
func clampCount(c Count, limit int64) Count {
	c.Granted = max(0, min(c.Granted, limit))
	c.Asked = max(0, min(c.Asked, maxAsked))
	c.Need = max(0, min(c.Need, limit))
	return c
}

// handleCounts folds a peer's counts in and updates the remote counts and
// reserves of the windows whose grants changed.
func (s *merger) handleCounts(now time.Time, p *member, sent int64, counts []Count) {
	var touched map[countKey]bool
	for _, c := range counts {
		cur, cfg, ok := s.window(now, c.Key)
		if !ok || c.Window < cur-1 || c.Window > cur+2 {
			continue
		}
		c = clampCount(c, cfg.Limit)
		if c.Granted > 0 || c.Asked > 0 || c.Need > 0 {
			s.track(now, c.Key, c.Window)
		}
		if c.Window < sent/int64(cfg.Window) && c.Window > p.final[c.Key] {
			p.final[c.Key] = c.Window
		}
		byWin := p.counts[c.Key]
		if byWin == nil {
			byWin = make(map[int64]Count)
			p.counts[c.Key] = byWin
		}
		old, had := byWin[c.Window]
		nc := Count{Key: c.Key, Window: c.Window, Granted: max(old.Granted, c.Granted), Asked: max(old.Asked, c.Asked),
			Need: max(old.Need, c.Need)}
		if had && nc == old {
			continue
		}
		byWin[c.Window] = nc
		if nc.Granted != old.Granted {
			if touched == nil {
				touched = make(map[countKey]bool)
			}
			touched[countKey{c.Key, c.Window}] = true
		}
	}
	for ck := range touched {
		sum := s.retired[ck.key][ck.window]
		for _, q := range s.peers {
			sum += q.counts[ck.key][ck.window].Granted
		}
		s.counter.SetRemoteAt(now, ck.key, ck.window, sum)
		if !s.strict {
			s.reserve(now, ck.key, ck.window)
		}
	}
}

// handleTransfers records, in strict mode, the tokens a peer handed to
// this member.
func (s *merger) handleTransfers(now time.Time, p *member, transfers []Transfer) {
	for _, t := range transfers {
		if t.To != s.id || !s.strict {
			continue
		}
		cur, cfg, ok := s.window(now, t.Key)
		if !ok || t.Window < cur || t.Window > cur+2 {
			continue
		}
		byWin := p.recv[t.Key]
		if byWin == nil {
			byWin = make(map[int64]int64)
			p.recv[t.Key] = byWin
		}
		// No member can give more than the limit.
		total := max(0, min(t.Total, cfg.Limit))
		if total > 0 {
			s.track(now, t.Key, t.Window)
		}
		if total <= byWin[t.Window] {
			continue
		}
		byWin[t.Window] = total
		var sum int64
		for _, q := range s.peers {
			sum += q.recv[t.Key][t.Window]
		}
		s.counter.SetReceivedAt(now, t.Key, t.Window, sum)
	}
}

// track makes sure the counter tracks key, of which a peer reported
// activity in window k: a key made on demand that is not live here is
// made (Counter.TrackAt), and told at once what is known of it, which
// the counts of this message alone may not repeat, and in shared mode
// what it keeps for the others. For a configured key it does nothing.
func (s *merger) track(now time.Time, key string, k int64) {
	if _, onDemand, _ := s.config(key); !onDemand {
		return
	}
	s.active[key] = struct{}{}
	made, err := s.counter.TrackAt(now, key, k)
	if err != nil {
		s.untracked++
		if s.untracked&(s.untracked-1) == 0 { // log the 1st, 2nd, 4th, ... only
			s.log.Warn("cannot track a key a peer reports; in shared mode no key of its template is made until the window ends",
				"key", key, "err", err, "count", s.untracked)
		}
		return
	}
	if !made {
		return
	}
	cur, _, _ := s.window(now, key)
	for w := cur; w <= cur+2; w++ {
		var granted, received int64 = s.retired[key][w], 0
		for _, q := range s.peers {
			granted += q.counts[key][w].Granted
			received += q.recv[key][w]
		}
		if granted > 0 {
			s.counter.SetRemoteAt(now, key, w, granted)
		}
		if received > 0 && s.strict {
			s.counter.SetReceivedAt(now, key, w, received)
		}
	}
	if !s.strict {
		for w := cur; w <= cur+1; w++ {
			delete(s.reserved, countKey{key, w})
			s.reserve(now, key, w)
		}
	}
}
