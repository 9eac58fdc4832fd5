package peer

import (
	"encoding/binary"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// offsetSamples is how many recent clock samples a member's offset
// estimate is taken from.
const offsetSamples = 16

// downAfter is how many heartbeat intervals of silence mark a member down.
const downAfter = 3

// repeatTransfers is how many flushes after a change still carry the
// transfers, so that one lost message does not lose a transfer for a whole
// heartbeat interval.
const repeatTransfers = 3

// maxEntries bounds the counts plus transfers in one message, so that a
// message stays below MaxMessageSize: a transfer encodes to at most
// 2·(1+MaxIDLen)+20 bytes.
const maxEntries = 200

// giveAt is the point of a window, as a fraction of it, after which a
// strict member hands the spare part of its share of the next window to
// members that need more.
const giveAt = 0.5

// giveNowAt is the point of a window after which a strict member hands
// what it will not use of the window to members refusing requests in it.
const giveNowAt = 0.25

// member is what the merge logic knows about another member.
type member struct {
	id       string
	lastSeen time.Time
	messages uint64
	// heard is set once a heartbeat came; the fields below it are valid
	// from then on.
	heard    bool
	digest   uint64
	strict   bool
	members  int
	rank     int
	mismatch bool

	samples  [offsetSamples]int64
	nsamples int
	offset   time.Duration
	warned   bool // offset warning logged
	up       bool // as last logged

	// counts are the member's own counts, the largest seen, per key and
	// window.
	counts map[string]map[int64]Count
	// recv are the tokens the member handed to us, cumulative, per key
	// and window.
	recv map[string]map[int64]int64
}

type countKey struct {
	key    string
	window int64
}

type giftKey struct {
	to     string
	key    string
	window int64
}

// merger is the federation logic of one member, without sockets: it folds
// received messages into the Counter and builds the messages to publish.
// It is not safe for concurrent use; Node serialises calls with its mutex.
type merger struct {
	id      string
	strict  bool
	members []string
	rank    int
	hb      time.Duration
	counter *locker.Counter
	log     *slog.Logger

	digest    uint64
	keys      map[string]locker.KeyConfig
	minWindow time.Duration

	peers map[string]*member
	sent  map[countKey]Count
	gave  map[giftKey]int64
	// self is this member's last LocalCount per key.
	self map[string]locker.LocalCount
	// reserved is what was last passed to SetReserveAt.
	reserved map[countKey]int64
	repeat   int
	decided  map[string]int64
	// decidedNow is, per key, the last window whose own spare was given.
	decidedNow map[string]int64
	// dropped counts messages the outbound queue had no room for.
	dropped uint64
}

func newMerger(id string, strict bool, members []string, rank int, hb time.Duration,
	c *locker.Counter, log *slog.Logger) *merger {
	s := &merger{
		id: id, strict: strict, members: members, rank: rank, hb: hb, counter: c, log: log,
		peers: make(map[string]*member),
		sent:  make(map[countKey]Count),
		gave:  make(map[giftKey]int64),

		reserved: make(map[countKey]int64),
		self:     make(map[string]locker.LocalCount),
		decided:  make(map[string]int64),

		decidedNow: make(map[string]int64),
	}
	s.loadKeys()
	return s
}

// loadKeys refreshes the key configuration and its digest.
func (s *merger) loadKeys() {
	keys := s.counter.Keys()
	s.keys = make(map[string]locker.KeyConfig, len(keys))
	s.minWindow = 0
	for _, k := range keys {
		s.keys[k.Name] = k
		if s.minWindow == 0 || k.Window < s.minWindow {
			s.minWindow = k.Window
		}
	}
	s.digest = configDigest(s.strict, s.members, keys)
}

// configDigest identifies what members must agree on: mode, member list
// and keys (keys sorted by name, as Counter.Keys returns them).
func configDigest(strict bool, members []string, keys []locker.KeyConfig) uint64 {
	h := fnv.New64a()
	mode := "shared"
	if strict {
		mode = "strict"
	}
	h.Write([]byte(mode + "\n"))
	for _, m := range members {
		h.Write([]byte("member " + m + "\n"))
	}
	var b []byte
	for _, k := range keys {
		b = append(b[:0], "key "...)
		b = append(b, k.Name...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, k.Limit, 10)
		b = append(b, ' ')
		b = binary.AppendVarint(b, int64(k.Window))
		b = append(b, '\n')
		h.Write(b)
	}
	return h.Sum64()
}

// window returns key's current window at now, and whether key is known.
func (s *merger) window(now time.Time, key string) (int64, locker.KeyConfig, bool) {
	k, ok := s.keys[key]
	if !ok {
		return 0, k, false
	}
	return locker.WindowIndex(now, k.Window), k, true
}

// isUp reports whether p was heard from within downAfter intervals.
func (s *merger) isUp(now time.Time, p *member) bool {
	return now.Sub(p.lastSeen) <= downAfter*s.hb
}

// handle folds one received message into the state and the Counter. It
// reports whether the sender is new or was down: it may not know this
// member's state, which is then worth publishing at once.
func (s *merger) handle(now time.Time, m *Message) (newcomer bool) {
	if m.From == s.id {
		return false
	}
	p := s.peers[m.From]
	if p == nil {
		if len(s.peers) >= 2*len(s.members)+8 {
			s.log.Warn("too many member ids; ignoring a new one", "peer", m.From)
			return false
		}
		p = &member{id: m.From, counts: make(map[string]map[int64]Count), recv: make(map[string]map[int64]int64)}
		s.peers[m.From] = p
		s.log.Info("peer seen", "peer", m.From)
	}
	newcomer = p.messages == 0 || !s.isUp(now, p)
	p.lastSeen = now
	p.messages++
	p.samples[p.nsamples%offsetSamples] = m.Sent - now.UnixNano()
	p.nsamples++
	n := min(p.nsamples, offsetSamples)
	best := p.samples[0]
	for _, v := range p.samples[1:n] {
		best = max(best, v)
	}
	p.offset = time.Duration(best)
	if m.Type == TypeHeartbeat {
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

	var touched map[countKey]bool
	for _, c := range m.Counts {
		cur, _, ok := s.window(now, c.Key)
		if !ok || c.Window < cur-1 || c.Window > cur+2 {
			continue
		}
		byWin := p.counts[c.Key]
		if byWin == nil {
			byWin = make(map[int64]Count)
			p.counts[c.Key] = byWin
		}
		old, had := byWin[c.Window]
		nc := Count{Key: c.Key, Window: c.Window, Granted: max(old.Granted, c.Granted), Asked: max(old.Asked, c.Asked)}
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
		var sum int64
		for _, q := range s.peers {
			sum += q.counts[ck.key][ck.window].Granted
		}
		s.counter.SetRemoteAt(now, ck.key, ck.window, sum)
		if !s.strict {
			s.reserve(now, ck.key, ck.window)
		}
	}

	for _, t := range m.Transfers {
		if t.To != s.id || !s.strict {
			continue
		}
		cur, _, ok := s.window(now, t.Key)
		if !ok || t.Window < cur || t.Window > cur+2 {
			continue
		}
		byWin := p.recv[t.Key]
		if byWin == nil {
			byWin = make(map[int64]int64)
			p.recv[t.Key] = byWin
		}
		if t.Total <= byWin[t.Window] {
			continue
		}
		byWin[t.Window] = t.Total
		var sum int64
		for _, q := range s.peers {
			sum += q.recv[t.Key][t.Window]
		}
		s.counter.SetReceivedAt(now, t.Key, t.Window, sum)
	}
	return newcomer
}

// flush returns the messages that publish what changed since the last
// flush, or nil. In strict mode it first hands spare tokens to members
// that need them.
func (s *merger) flush(now time.Time) []*Message {
	lcs := s.counter.LocalAt(now)
	if s.strict {
		s.give(now, lcs)
	} else {
		for _, lc := range lcs {
			s.self[lc.Name] = lc
			s.reserve(now, lc.Name, lc.Index)
			s.reserve(now, lc.Name, lc.Index+1)
		}
	}
	var counts []Count
	for _, lc := range lcs {
		for _, c := range [2]Count{
			{Key: lc.Name, Window: lc.Index - 1, Granted: lc.PrevGranted, Asked: lc.PrevAsked},
			{Key: lc.Name, Window: lc.Index, Granted: lc.Granted, Asked: lc.Asked},
		} {
			ck := countKey{c.Key, c.Window}
			old, had := s.sent[ck]
			if had && old == c || !had && c.Granted == 0 && c.Asked == 0 {
				continue
			}
			s.sent[ck] = c
			counts = append(counts, c)
		}
	}
	var transfers []Transfer
	if s.repeat > 0 {
		s.repeat--
		transfers = s.transfers(now)
	}
	if len(counts) == 0 && len(transfers) == 0 {
		return nil
	}
	return s.pack(now, TypeCounts, counts, transfers)
}

// reserve sets, in shared mode, how many tokens of key in window k are
// kept for the other members that are up: what each is entitled to, less
// what it has granted in k already.
//
// Entitlements follow demand, the tokens each member asked for in the
// window before (for the next window: the current one, extrapolated). A
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
	entries := []entry{{nil, locker.Share(cfg.Limit, len(s.members), s.rank), demandOf(self.PrevAsked, self.Asked)}}
	for _, p := range s.peers {
		if !p.heard || !s.isUp(now, p) {
			continue
		}
		byWin := p.counts[key]
		entries = append(entries, entry{p, locker.Share(cfg.Limit, p.members, p.rank),
			demandOf(byWin[k-1].Asked, byWin[k].Asked)})
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
	ck := countKey{key, k}
	if old, had := s.reserved[ck]; had && old == total {
		return
	}
	s.reserved[ck] = total
	s.counter.SetReserveAt(now, key, k, total)
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

// heartbeat returns the heartbeat and the full state, and does the
// periodic bookkeeping: up and down, clock offsets, pruning.
func (s *merger) heartbeat(now time.Time) []*Message {
	s.loadKeys()
	s.check(now)
	s.prune(now)
	lcs := s.counter.LocalAt(now)
	var counts []Count
	for _, lc := range lcs {
		counts = append(counts,
			Count{Key: lc.Name, Window: lc.Index - 1, Granted: lc.PrevGranted, Asked: lc.PrevAsked},
			Count{Key: lc.Name, Window: lc.Index, Granted: lc.Granted, Asked: lc.Asked})
		s.sent[countKey{lc.Name, lc.Index - 1}] = counts[len(counts)-2]
		s.sent[countKey{lc.Name, lc.Index}] = counts[len(counts)-1]
	}
	return s.pack(now, TypeHeartbeat, counts, s.transfers(now))
}

// check logs members going up or down and clock offsets beyond a tenth
// of the shortest window.
func (s *merger) check(now time.Time) {
	for _, p := range s.peers {
		up := s.isUp(now, p)
		if up != p.up {
			if up {
				s.log.Info("peer up", "peer", p.id)
			} else {
				s.log.Warn("peer down", "peer", p.id, "silent_seconds", now.Sub(p.lastSeen).Seconds())
			}
			p.up = up
		}
		off := p.offset
		if off < 0 {
			off = -off
		}
		bad := s.minWindow > 0 && off > s.minWindow/10
		if bad && !p.warned {
			s.log.Warn("peer clock offset above a tenth of the shortest window; windows disagree, synchronize clocks (NTP)",
				"peer", p.id, "offset_seconds", p.offset.Seconds(), "shortest_window_seconds", s.minWindow.Seconds())
		}
		p.warned = bad
	}
}

// prune forgets windows that ended.
func (s *merger) prune(now time.Time) {
	for ck := range s.sent {
		if cur, _, ok := s.window(now, ck.key); !ok || ck.window < cur-1 {
			delete(s.sent, ck)
		}
	}
	for ck := range s.reserved {
		if cur, _, ok := s.window(now, ck.key); !ok || ck.window < cur {
			delete(s.reserved, ck)
		}
	}
	for g := range s.gave {
		if cur, _, ok := s.window(now, g.key); !ok || g.window < cur {
			delete(s.gave, g)
		}
	}
	for key, w := range s.decided {
		if cur, _, ok := s.window(now, key); !ok || w < cur {
			delete(s.decided, key)
		}
	}
	for key, w := range s.decidedNow {
		if cur, _, ok := s.window(now, key); !ok || w < cur {
			delete(s.decidedNow, key)
		}
	}
	for _, p := range s.peers {
		for key, byWin := range p.counts {
			cur, _, ok := s.window(now, key)
			for w := range byWin {
				if !ok || w < cur-1 {
					delete(byWin, w)
				}
			}
			if len(byWin) == 0 {
				delete(p.counts, key)
			}
		}
		for key, byWin := range p.recv {
			cur, _, ok := s.window(now, key)
			for w := range byWin {
				if !ok || w < cur {
					delete(byWin, w)
				}
			}
			if len(byWin) == 0 {
				delete(p.recv, key)
			}
		}
	}
}

// pack splits counts and transfers into messages of at most maxEntries
// entries; the first has type typ, the others TypeCounts.
func (s *merger) pack(now time.Time, typ MsgType, counts []Count, transfers []Transfer) []*Message {
	var out []*Message
	for first := true; first || len(counts)+len(transfers) > 0; first = false {
		m := &Message{Type: TypeCounts, From: s.id, Sent: now.UnixNano()}
		if first && typ == TypeHeartbeat {
			m.Type = TypeHeartbeat
			m.Digest, m.Strict, m.Members, m.Rank = s.digest, s.strict, len(s.members), s.rank
		}
		n := min(len(counts), maxEntries)
		m.Counts, counts = counts[:n:n], counts[n:]
		n = min(len(transfers), maxEntries-len(m.Counts))
		m.Transfers, transfers = transfers[:n:n], transfers[n:]
		out = append(out, m)
	}
	return out
}

// demand estimates the tokens a member will ask for in a whole window
// from what it asked in the part elapsed (frac).
func demand(asked int64, frac float64) int64 {
	return int64(float64(asked)/frac + 0.999)
}

// give hands spare tokens of this member's budget to the members that
// need them, at two points of each window of each key:
//
//   - once the current window is giveNowAt through, the part of what is
//     left of the current window that this member's own demand will not
//     need goes to members that refused requests in it;
//   - once it is giveAt through, the part of this member's share of the
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
		if !p.heard || !p.strict || p.mismatch || p.members != len(s.members) || !s.isUp(now, p) {
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

// PeerStat is a snapshot of one other member, as heard by this one.
type PeerStat struct {
	// Name is the member's id.
	Name string
	// Up reports whether the member was heard from within three
	// heartbeat intervals.
	Up bool
	// LastSeen is when the last message from it arrived.
	LastSeen time.Time
	// Messages counts the messages received from it.
	Messages uint64
	// ClockOffset estimates how far its clock is ahead of this one
	// (negative: behind). It is the largest of the recent differences
	// between its send time and the local receive time, so it
	// underestimates the offset by the smallest recent one-way latency.
	ClockOffset time.Duration
	// ConfigMismatch reports that its keys, mode or member list differ.
	ConfigMismatch bool
}

// stats returns a snapshot of the other members, sorted by name.
func (s *merger) stats(now time.Time) []PeerStat {
	out := make([]PeerStat, 0, len(s.peers))
	for _, p := range s.peers {
		out = append(out, PeerStat{Name: p.id, Up: s.isUp(now, p), LastSeen: p.lastSeen, Messages: p.messages,
			ClockOffset: p.offset, ConfigMismatch: p.mismatch})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
