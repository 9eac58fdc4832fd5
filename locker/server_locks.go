package locker

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The server's side of the lock verbs (PROTOCOL.md, "Locks"): the loop
// owns a lockTable, holds the envelopes of queued acquisitions, and
// answers them when the table reports their events.

// LockOutcome is what happened to a lock, as reported to a LockObserver.
type LockOutcome uint8

// Lock outcomes. The first four end an acquisition.
const (
	// LockOutcomeGranted: an acquisition was granted, at once or after
	// waiting.
	LockOutcomeGranted LockOutcome = iota
	// LockOutcomeBusy: an acquisition was refused, at once or when its
	// wait ended.
	LockOutcomeBusy
	// LockOutcomeError: an acquisition was refused with an error (a
	// bound, a bad argument, a federated server).
	LockOutcomeError
	// LockOutcomeAbandoned: a queued acquisition was withdrawn.
	LockOutcomeAbandoned
	// LockOutcomeReleased: a lease was released; Held is how long.
	LockOutcomeReleased
	// LockOutcomeExpired: a lease ended without renewal or release (its
	// holder died, hung or lost the server); Held is how long.
	LockOutcomeExpired
	// LockOutcomeBroken: a lease was removed by a break.
	LockOutcomeBroken
)

var lockOutcomeNames = [...]string{"granted", "busy", "error", "abandoned", "released", "expired", "broken"}

// String returns the outcome's name, as metrics label it.
func (o LockOutcome) String() string {
	if int(o) < len(lockOutcomeNames) {
		return lockOutcomeNames[o]
	}
	return fmt.Sprintf("lockoutcome(%d)", int(o))
}

// LockObserver is told about locks. A Config.Observer that also
// implements it gets the lock events; its methods are called from the
// server's loop goroutine and must not block.
type LockObserver interface {
	// ObserveLock reports one outcome for a lock. label is the
	// configured lock name or template (PREFIX*) the lock falls under,
	// or "other" for a name made on demand: never a name a client made
	// up. held is the hold time of a released or expired lease.
	ObserveLock(label string, outcome LockOutcome, held time.Duration)
}

// otherLockLabel labels, in LockObserver and ServerLockStats, the locks
// that no configured name or template covers.
const otherLockLabel = "other"

// ServerLockStats counts the holders and queued acquisitions of the
// locks under one label (see LockObserver).
type ServerLockStats struct {
	Label            string
	Holders, Waiters int64
}

// errLocksFederated answers the lock verbs on a federated server.
var errLocksFederated error = wireError("locks are served by a single lockerd, not a federation")

// lockWait is a queued acquisition: where to answer it.
type lockWait struct {
	env   []byte // packed by packFrames
	user  string
	key   string // in lockServer.byEnv
	name  string
	label string
}

// lockTemplate is a configured template: its prefix and its label,
// made once.
type lockTemplate struct{ prefix, label string }

// lockGauge counts what one label holds.
type lockGauge struct{ holders, waiters atomic.Int64 }

// lockServer is the lock state of a Server, owned by its loop.
type lockServer struct {
	table  *lockTable
	held   map[uint64]*lockWait // by ticket
	byEnv  map[string][]uint64  // name, NUL, packed envelope -> tickets
	events []lockEvent
	infos  []lockInfo
	peak   int               // most queued acquisitions since the maps were made
	exact  map[string]string // configured name -> its label (itself)
	tmpls  []lockTemplate    // longest prefix first
	obs    LockObserver

	gauges sync.Map // label -> *lockGauge, read by Stats
	live   atomic.Int64
}

func newLockServer(cfg LockTableConfig, start time.Time, obs Observer) (*lockServer, error) {
	t, err := newLockTable(cfg, start)
	if err != nil {
		return nil, err
	}
	ls := &lockServer{table: t, held: make(map[uint64]*lockWait), byEnv: make(map[string][]uint64), exact: make(map[string]string)}
	ls.obs, _ = obs.(LockObserver)
	for _, s := range cfg.Locks {
		if s.Template {
			ls.tmpls = append(ls.tmpls, lockTemplate{prefix: s.Name, label: s.Name + "*"})
		} else {
			ls.exact[s.Name] = s.Name
		}
	}
	// Longest prefix first, as the table matches them.
	for i := 1; i < len(ls.tmpls); i++ {
		for j := i; j > 0 && len(ls.tmpls[j].prefix) > len(ls.tmpls[j-1].prefix); j-- {
			ls.tmpls[j], ls.tmpls[j-1] = ls.tmpls[j-1], ls.tmpls[j]
		}
	}
	ls.gauge(otherLockLabel)
	for _, s := range cfg.Locks {
		ls.gauge(s.String()[:strings.LastIndexByte(s.String(), '=')])
	}
	return ls, nil
}

// label returns the metrics label of the lock name: a configured name,
// the PREFIX* of the template that covers it, or "other". It makes no
// string of its own.
func (ls *lockServer) label(name []byte) string {
	if s, ok := ls.exact[string(name)]; ok {
		return s
	}
	for _, s := range ls.tmpls {
		if len(name) >= len(s.prefix) && string(name[:len(s.prefix)]) == s.prefix {
			return s.label
		}
	}
	return otherLockLabel
}

func (ls *lockServer) gauge(label string) *lockGauge {
	if g, ok := ls.gauges.Load(label); ok {
		return g.(*lockGauge)
	}
	g, _ := ls.gauges.LoadOrStore(label, new(lockGauge))
	return g.(*lockGauge)
}

func (ls *lockServer) observe(label string, o LockOutcome, held time.Duration) {
	if ls.obs != nil {
		ls.obs.ObserveLock(label, o, held)
	}
}

// stats returns the counts of every label, sorted as gauges ranges them
// (unsorted); the caller sorts.
func (ls *lockServer) stats() []ServerLockStats {
	var out []ServerLockStats
	ls.gauges.Range(func(k, v any) bool {
		g := v.(*lockGauge)
		out = append(out, ServerLockStats{Label: k.(string), Holders: g.holders.Load(), Waiters: g.waiters.Load()})
		return true
	})
	return out
}

// isLockBody reports whether body could start with a lock verb, so that
// the take path does not pay for parseLockRequest.
func isLockBody(body []byte) bool {
	if len(body) == 0 {
		return false
	}
	switch body[0] {
	case 'a', 'r', 'b', 'l':
		return true
	}
	return false
}

// lockHandlers answer the lock requests of each verb once they are
// allowed. Adding a lock verb adds a line here and its handler.
var lockHandlers = [...]func(*Server, *request, lockRequest, time.Time){
	lockAcquire: (*Server).acquireLock,
	lockRenew:   (*Server).applyLock,
	lockRelease: (*Server).applyLock,
	lockAbandon: (*Server).abandonLock,
	lockRevoke:  (*Server).applyLock,
	lockBreak:   (*Server).applyLock,
	lockList:    (*Server).listLocks,
}

// handleLock answers a lock request, or holds an acquisition.
func (s *Server) handleLock(r *request, lr lockRequest, err error) {
	if err == nil && !s.userAllowed(r.user) {
		err = errKeyNotAllowed
	}
	if err == nil && s.cfg.Federated {
		err = errLocksFederated
	}
	if err != nil {
		s.refuseLock(r, lr, err)
		return
	}
	lockHandlers[lr.Verb](s, r, lr, s.now())
}

// refuseLock answers lr with err, counting a refused acquisition.
func (s *Server) refuseLock(r *request, lr lockRequest, err error) {
	if lr.Verb == lockAcquire {
		ls := s.locks
		ls.observe(ls.label(lr.Name), LockOutcomeError, 0)
	}
	s.reply(r.env, appendError(s.buf[:0], err))
}

// listLocks answers a listing of every lock, or of the lock lr.Name.
func (s *Server) listLocks(r *request, lr lockRequest, now time.Time) {
	ls := s.locks
	ls.table.Advance(now)
	s.deliverLocks(now)
	ls.infos = ls.infos[:0]
	if len(lr.Name) == 0 {
		ls.infos = ls.table.Locks(ls.infos)
	} else if li, ok := ls.table.Lock(string(lr.Name)); ok {
		ls.infos = append(ls.infos, li)
	}
	s.reply(r.env, appendLockList(s.buf[:0], now, ls.infos))
	clear(ls.infos)
}

// acquireLock applies an acquisition, refusing to hold one whose
// envelope is too large to keep.
func (s *Server) acquireLock(r *request, lr lockRequest, now time.Time) {
	if framesSize(r.msg) > MaxHeldBytes && lr.MaxWait != 0 {
		s.refuseLock(r, lr, errTooLargeToHold)
		return
	}
	s.applyLock(r, lr, now)
}

// applyLock applies lr to the table and answers it, or holds a queued
// acquisition until the table decides it.
func (s *Server) applyLock(r *request, lr lockRequest, now time.Time) {
	ls := s.locks
	res := ls.table.Apply(now, lr)
	ls.live.Store(int64(ls.table.Len()))
	label := ls.label(lr.Name)
	if res.Status == LockQueued {
		s.holdLock(r, string(lr.Name), label, res.Ticket)
		s.deliverLocks(now)
		return
	}
	ls.record(lr.Verb, label, res, now)
	// The grants this request caused (a release hands the lock to the
	// next waiter) go out before its own reply: the next holder's round
	// trip is what a contended lock waits for, the releaser only learns
	// that it is done.
	s.deliverLocks(now)
	s.reply(r.env, appendLockReply(s.buf[:0], now, res))
}

// holdLock keeps the envelope of the queued acquisition ticket of the
// lock name, to answer it when the table decides.
func (s *Server) holdLock(r *request, name, label string, ticket uint64) {
	ls := s.locks
	s.packBuf = packFrames(s.packBuf[:0], r.env)
	key := name + "\x00" + string(s.packBuf)
	w := &lockWait{env: packFrames(make([]byte, 0, packedLen(r.env)), r.env), user: r.user, key: key, name: name, label: label}
	ls.held[ticket] = w
	ls.byEnv[key] = append(ls.byEnv[key], ticket)
	ls.peak = max(ls.peak, len(ls.held))
	ls.gauge(label).waiters.Add(1)
}

// record updates the gauges and the Observer for res, the answer at now
// to a request of verb v on a lock of label.
func (ls *lockServer) record(v lockVerb, label string, res lockResult, now time.Time) {
	switch res.Status {
	case LockGranted:
		if v == lockAcquire {
			ls.gauge(label).holders.Add(1)
			ls.observe(label, LockOutcomeGranted, 0)
		}
	case LockBusy:
		ls.observe(label, LockOutcomeBusy, 0)
	case LockError:
		if v == lockAcquire {
			ls.observe(label, LockOutcomeError, 0)
		}
	case LockReleased:
		ls.gauge(label).holders.Add(-1)
		ls.observe(label, LockOutcomeReleased, now.Sub(res.Since))
	case LockBroken:
		if res.Count > 0 {
			ls.gauge(label).holders.Add(int64(-res.Count))
			for range res.Count {
				ls.observe(label, LockOutcomeBroken, 0)
			}
		}
	}
}

// abandonLock withdraws the queued acquisitions of the lock with the
// envelope of the abandon, then answers it with their number.
func (s *Server) abandonLock(r *request, lr lockRequest, now time.Time) {
	ls := s.locks
	s.packBuf = packFrames(s.packBuf[:0], r.env)
	key := string(lr.Name) + "\x00" + string(s.packBuf)
	n := 0
	// A copy: forget edits the list.
	for _, ticket := range append([]uint64(nil), ls.byEnv[key]...) {
		w := ls.held[ticket]
		lr.Ticket = ticket
		if res := ls.table.Apply(now, lr); res.Count == 1 {
			ls.forget(ticket, w)
			ls.gauge(w.label).waiters.Add(-1)
			ls.observe(w.label, LockOutcomeAbandoned, 0)
			n++
		}
	}
	s.reply(r.env, appendLockReply(s.buf[:0], now, lockResult{Status: LockAbandoned, Count: n}))
	s.deliverLocks(now)
}

// forget removes the queued acquisition ticket from the envelope index.
func (ls *lockServer) forget(ticket uint64, w *lockWait) {
	delete(ls.held, ticket)
	ts := ls.byEnv[w.key]
	for i, t := range ts {
		if t == ticket {
			ts = append(ts[:i], ts[i+1:]...)
			break
		}
	}
	if len(ts) == 0 {
		delete(ls.byEnv, w.key)
	} else {
		ls.byEnv[w.key] = ts
	}
	if len(ls.held) == 0 && ls.peak > 1024 {
		// Go maps keep their buckets: start afresh so that memory
		// returns to where it was after a burst of waiters.
		ls.held, ls.byEnv, ls.peak = make(map[uint64]*lockWait), make(map[string][]uint64), 0
	}
}

// serveLocks moves the lock table to now and answers what it did.
func (s *Server) serveLocks(now time.Time) {
	if s.locks == nil {
		return
	}
	if next, ok := s.locks.table.NextDeadline(); !ok || next.After(now) {
		return
	}
	s.locks.table.Advance(now)
	s.deliverLocks(now)
}

// deliverLocks answers the queued acquisitions the table has decided,
// and counts the leases that expired.
func (s *Server) deliverLocks(now time.Time) {
	ls := s.locks
	ls.events = ls.table.DrainEvents(ls.events[:0])
	for i := 0; i < len(ls.events); i++ {
		ev := &ls.events[i]
		if ev.Result.Status == LockExpired {
			label := ls.label([]byte(ev.Name))
			ls.gauge(label).holders.Add(-1)
			ls.observe(label, LockOutcomeExpired, ev.At.Sub(ev.Result.Since))
			continue
		}
		w := ls.held[ev.Ticket]
		if w == nil {
			continue
		}
		ls.forget(ev.Ticket, w)
		g := ls.gauge(w.label)
		g.waiters.Add(-1)
		switch {
		case ev.Result.Status == LockGranted && !s.userAllowed(w.user):
			// Its key was revoked while it waited: give the lock back.
			ls.table.Apply(now, lockRequest{Verb: lockRelease, Name: []byte(w.name), Fence: ev.Result.Fence})
			ls.events = ls.table.DrainEvents(ls.events)
			ls.observe(w.label, LockOutcomeError, 0)
			s.replyPacked(w.env, appendError(s.buf[:0], errKeyNotAllowed))
			continue
		case ev.Result.Status == LockGranted:
			g.holders.Add(1)
			ls.observe(w.label, LockOutcomeGranted, 0)
		default:
			ls.observe(w.label, LockOutcomeBusy, 0)
		}
		s.replyPacked(w.env, appendLockReply(s.buf[:0], now, ev.Result))
	}
	clear(ls.events)
	ls.live.Store(int64(ls.table.Len()))
}

// lockWake returns how long the loop may sleep before the lock table has
// work, at most max.
func (s *Server) lockWake(now time.Time, max time.Duration) time.Duration {
	if s.locks == nil {
		return max
	}
	next, ok := s.locks.table.NextDeadline()
	if !ok {
		return max
	}
	d := next.Sub(now)
	if d <= 0 {
		return 0
	}
	// Poll counts whole milliseconds: round up, so the loop wakes at or
	// just after the deadline instead of spinning before it.
	return min(max, (d + time.Millisecond - 1).Truncate(time.Millisecond))
}

// drainLocks answers every queued acquisition with busy, at shutdown or
// on a socket error, as held waits are answered with sorry.
func (s *Server) drainLocks() {
	if s.locks == nil {
		return
	}
	ls := s.locks
	now := s.now()
	for ticket, w := range ls.held {
		ls.forget(ticket, w)
		ls.gauge(w.label).waiters.Add(-1)
		ls.observe(w.label, LockOutcomeBusy, 0)
		s.replyPacked(w.env, appendLockReply(s.buf[:0], now, lockResult{Status: LockBusy, Until: now}))
	}
}

// LockStats returns the counts of holders and queued acquisitions by
// label (see LockObserver), and the number of live locks. It is safe to
// call from any goroutine; before Run it reports nothing.
func (s *Server) LockStats() (labels []ServerLockStats, live int64) {
	s.mu.Lock()
	ls := s.locks
	s.mu.Unlock()
	if ls == nil {
		return nil, 0
	}
	return ls.stats(), ls.live.Load()
}

// lockStatus is the "locks" field of the status document.
type lockStatus struct {
	Served  bool  `json:"served"`
	Live    int   `json:"live"`
	Holders int   `json:"holders"`
	Waiters int   `json:"waiters"`
	GraceMS int64 `json:"grace_ms"`
}

// statusDoc summarises the lock table for the status document: served
// is false on a federated server, grace_ms is what is left of the grace
// period.
func (ls *lockServer) statusDoc(now time.Time, federated bool) lockStatus {
	st := ls.table.Stats()
	doc := lockStatus{Served: !federated, Live: st.Locks, Holders: st.Holders, Waiters: st.Waiters}
	if !st.GraceEnd.IsZero() && st.GraceEnd.After(now) {
		doc.GraceMS = millis(st.GraceEnd.Sub(now))
	}
	return doc
}
