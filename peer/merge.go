package peer

import (
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"strings"
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
	// final is, per key, the last window whose counts arrived in a
	// message the member sent after that window ended (by its clock):
	// they are final, and every member acts on the same figures.
	final    map[string]int64
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
	// tmpls are the key templates, longest prefix first: a key a peer
	// reports that is not configured has the configuration of the
	// longest that matches it, as for a request.
	tmpls []locker.KeyConfig

	peers map[string]*member
	// retired holds the grants, per key and window, of ids forgotten to
	// make room while their windows had not ended: they still count.
	retired map[string]map[int64]int64
	sent    map[countKey]Count
	gave    map[giftKey]int64
	// self is this member's last LocalCount per key.
	self map[string]locker.LocalCount
	// reserved is what was last passed to SetReserveAt.
	reserved map[countKey]int64
	repeat   int
	decided  map[string]int64
	// decidedNow is, per key, the last window whose own spare was given.
	decidedNow map[string]int64
	// rolled is, per key, the window of the last flush: the first flush
	// in a new window sends the final counts of the one before, so that
	// shared members know them early.
	rolled map[string]int64
	// ignored counts messages from new ids ignored for want of room.
	ignored uint64
	// dropped counts messages the outbound queue had no room for.
	dropped uint64
	// untracked counts reports of keys made on demand that the counter
	// could not track (Counter.TrackAt).
	untracked uint64
	// active holds the keys made on demand that peers reported activity
	// of since the last flush: the flush looks at them with those taken
	// here (Counter.LocalChangedAt), the heartbeat at every live key.
	active map[string]struct{}
	// givers and lastGivers are the ranks of the members that can give
	// this one tokens, now and as last told to the counter (strict).
	givers, lastGivers []int
	giversSet          bool
}

func newMerger(id string, strict bool, members []string, rank int, hb time.Duration,
	c *locker.Counter, log *slog.Logger) *merger {
	s := &merger{
		id: id, strict: strict, members: members, rank: rank, hb: hb, counter: c, log: log,
		peers:   make(map[string]*member),
		retired: make(map[string]map[int64]int64),
		sent:    make(map[countKey]Count),
		gave:    make(map[giftKey]int64),

		reserved: make(map[countKey]int64),
		self:     make(map[string]locker.LocalCount),
		decided:  make(map[string]int64),
		rolled:   make(map[string]int64),

		decidedNow: make(map[string]int64),
		active:     make(map[string]struct{}),
	}
	s.loadKeys()
	return s
}

// loadKeys refreshes the key configuration and its digest.
func (s *merger) loadKeys() {
	keys := s.counter.Keys()
	s.keys = make(map[string]locker.KeyConfig, len(keys))
	s.tmpls = s.tmpls[:0]
	s.minWindow = 0
	for _, k := range keys {
		if k.IsTemplate() {
			s.tmpls = append(s.tmpls, k)
		} else {
			s.keys[k.Name] = k
		}
		if s.minWindow == 0 || k.Window < s.minWindow {
			s.minWindow = k.Window
		}
	}
	sort.SliceStable(s.tmpls, func(i, j int) bool { return len(s.tmpls[i].Name) > len(s.tmpls[j].Name) })
	s.digest = configDigest(s.strict, s.members, keys)
}

// config returns the configuration of key: its own, or that of the
// longest template that matches it; onDemand reports the latter.
func (s *merger) config(key string) (cfg locker.KeyConfig, onDemand, ok bool) {
	if k, ok := s.keys[key]; ok {
		return k, false, true
	}
	for _, t := range s.tmpls {
		if strings.HasPrefix(key, t.Name[:len(t.Name)-1]) && locker.ValidKeyName(key) == nil {
			return t, true, true
		}
	}
	return cfg, false, false
}

// configDigest identifies what members must agree on: mode, member list
// and keys (keys sorted by name, as Counter.Keys returns them). A key is
// hashed by its whole spec (KeyConfig.String: every limit, its algorithm
// and burst, and templates), so members that disagree on any of them
// notice.
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
	for _, k := range keys {
		h.Write([]byte("key " + k.String() + "\n"))
	}
	return h.Sum64()
}

// window returns key's current window at now, and whether key is known.
func (s *merger) window(now time.Time, key string) (int64, locker.KeyConfig, bool) {
	k, _, ok := s.config(key)
	if !ok {
		return 0, k, false
	}
	return locker.WindowIndex(now, k.Window), k, true
}

// isUp reports whether p was heard from within downAfter intervals.
func (s *merger) isUp(now time.Time, p *member) bool {
	return now.Sub(p.lastSeen) <= downAfter*s.hb
}

// flush returns the messages that publish what changed since the last
// flush, or nil. In strict mode it first hands spare tokens to members
// that need them. It looks at the configured keys and at the keys made
// on demand that were taken here or reported by a peer since the last
// flush; the heartbeat looks at every key.
func (s *merger) flush(now time.Time) []*Message {
	var also []string
	if len(s.active) > 0 {
		also = make([]string, 0, len(s.active))
		for key := range s.active {
			also = append(also, key)
		}
		clear(s.active)
	}
	lcs := s.counter.LocalChangedAt(now, also)
	s.settle(now, lcs)
	counts := s.changed(lcs)
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

// settle acts on lcs: in strict mode it hands spare tokens to the members
// that need them, in shared mode it sets what is kept for the others.
func (s *merger) settle(now time.Time, lcs []locker.LocalCount) {
	if s.strict {
		s.updateGivers(now)
		s.give(now, lcs)
	} else {
		for _, lc := range lcs {
			s.self[lc.Name] = lc
			// A key made again after it was dropped has no reserve,
			// whatever was last set for the key.
			if !lc.Reserved {
				delete(s.reserved, countKey{lc.Name, lc.Index})
			}
			if !lc.NextReserved {
				delete(s.reserved, countKey{lc.Name, lc.Index + 1})
			}
			s.reserve(now, lc.Name, lc.Index)
			s.reserve(now, lc.Name, lc.Index+1)
		}
	}
}

// changed returns the counts that changed since they were last sent, and
// in shared mode the final counts of the window before when a key's
// window rolled.
func (s *merger) changed(lcs []locker.LocalCount) []Count {
	var counts []Count
	for _, lc := range lcs {
		rolled := !s.strict && s.rolled[lc.Name] != lc.Index
		s.rolled[lc.Name] = lc.Index
		for i, c := range [2]Count{
			{Key: lc.Name, Window: lc.Index - 1, Granted: lc.PrevGranted, Asked: lc.PrevAsked},
			{Key: lc.Name, Window: lc.Index, Granted: lc.Granted, Asked: lc.Asked, Need: s.need(lc)},
		} {
			ck := countKey{c.Key, c.Window}
			old, had := s.sent[ck]
			if (had && old == c || !had && c.Granted == 0 && c.Asked == 0) && !(i == 0 && rolled) {
				continue
			}
			s.sent[ck] = c
			counts = append(counts, c)
		}
	}
	return counts
}

// heartbeat returns the heartbeat and the full state, and does the
// periodic bookkeeping: up and down, clock offsets, pruning.
func (s *merger) heartbeat(now time.Time) []*Message {
	s.loadKeys()
	s.check(now)
	s.prune(now)
	lcs := s.counter.LocalAt(now)
	s.settle(now, lcs)
	var counts []Count
	for _, lc := range lcs {
		if !s.strict {
			s.rolled[lc.Name] = lc.Index // the counts of the window before go now
		}
		counts = append(counts,
			Count{Key: lc.Name, Window: lc.Index - 1, Granted: lc.PrevGranted, Asked: lc.PrevAsked},
			Count{Key: lc.Name, Window: lc.Index, Granted: lc.Granted, Asked: lc.Asked, Need: s.need(lc)})
		s.sent[countKey{lc.Name, lc.Index - 1}] = counts[len(counts)-2]
		s.sent[countKey{lc.Name, lc.Index}] = counts[len(counts)-1]
	}
	return s.pack(now, TypeHeartbeat, counts, s.transfers(now))
}

// check logs members going up or down and clock offsets beyond a tenth
// of the shortest window. In strict mode it tells the counter which
// members can give tokens, so that a request no member can help with is
// refused at once rather than held.
func (s *merger) check(now time.Time) {
	s.updateGivers(now)
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

// updateGivers tells the counter, in strict mode, which members can give
// this one tokens now, when that changed.
func (s *merger) updateGivers(now time.Time) {
	if !s.strict {
		return
	}
	givers := s.givers[:0]
	for _, p := range s.peers {
		if s.receives(now, p) {
			givers = append(givers, p.rank)
		}
	}
	slices.Sort(givers)
	if s.giversSet && slices.Equal(givers, s.lastGivers) {
		s.givers = givers
		return
	}
	s.counter.SetGivers(givers)
	s.lastGivers = append(s.lastGivers[:0], givers...)
	s.givers, s.giversSet = givers, true
}

// ended reports whether window w of key is more than back windows before
// key's current one at now, or key is gone.
func (s *merger) ended(now time.Time, key string, w, back int64) bool {
	cur, _, ok := s.window(now, key)
	return !ok || w < cur-back
}

// pruneMap deletes the entries of m for which gone holds.
func pruneMap[K comparable, V any](m map[K]V, gone func(K) bool) {
	for k := range m {
		if gone(k) {
			delete(m, k)
		}
	}
}

// pruneByWindow deletes, from a map of key to window to value, the
// windows more than back windows old, and the keys left empty.
func pruneByWindow[V any](s *merger, now time.Time, m map[string]map[int64]V, back int64) {
	for key, byWin := range m {
		pruneMap(byWin, func(w int64) bool { return s.ended(now, key, w, back) })
		if len(byWin) == 0 {
			delete(m, key)
		}
	}
}

// prune forgets windows that ended, and the ids of members silent for
// forgetAfter heartbeats whose windows all ended.
func (s *merger) prune(now time.Time) {
	pruneMap(s.sent, func(ck countKey) bool { return s.ended(now, ck.key, ck.window, 1) })
	pruneMap(s.reserved, func(ck countKey) bool { return s.ended(now, ck.key, ck.window, 0) })
	pruneMap(s.gave, func(g giftKey) bool { return s.ended(now, g.key, g.window, 0) })
	pruneMap(s.decided, func(key string) bool { return s.ended(now, key, s.decided[key], 0) })
	pruneMap(s.decidedNow, func(key string) bool { return s.ended(now, key, s.decidedNow[key], 0) })
	pruneMap(s.rolled, func(key string) bool { return s.ended(now, key, s.rolled[key], 1) })
	pruneMap(s.self, func(key string) bool { return s.ended(now, key, s.self[key].Index, 1) })
	pruneByWindow(s, now, s.retired, 1)
	for id, p := range s.peers {
		pruneByWindow(s, now, p.counts, 1)
		pruneMap(p.final, func(key string) bool { return s.ended(now, key, p.final[key], 1) })
		pruneByWindow(s, now, p.recv, 0)
		if len(p.counts) == 0 && len(p.recv) == 0 && now.Sub(p.lastSeen) > forgetAfter*s.hb {
			s.log.Info("peer forgotten", "peer", id, "silent_seconds", now.Sub(p.lastSeen).Seconds())
			delete(s.peers, id)
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
