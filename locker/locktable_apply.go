package locker

import "time"

// NextDeadline returns the earliest instant at which Advance has work:
// a lease end, a held acquisition's deadline or the end of the grace
// period. It reports false when there is none.
func (t *lockTable) NextDeadline() (time.Time, bool) {
	var next time.Time
	ok := false
	if len(t.timers) > 0 {
		next, ok = t.timers[0].at, true
	}
	if t.inGrace && (!ok || t.graceEnd.Before(next)) {
		next, ok = t.graceEnd, true
	}
	return next, ok
}

// Advance moves the table to now: leases that ended are lost and their
// locks handed to the next waiters, held acquisitions whose deadline
// passed are refused, and the grace period ends. Each of these happens at
// its own instant, in order. What it did is collected by DrainEvents.
func (t *lockTable) Advance(now time.Time) { t.advance(now) }

// DrainEvents appends the events since the last call to dst and returns
// it. The table keeps no reference to them. Call it after every Apply
// and Advance: events are kept until then.
func (t *lockTable) DrainEvents(dst []lockEvent) []lockEvent {
	dst = append(dst, t.events...)
	clear(t.events)
	t.events = t.events[:0]
	return dst
}

// Apply advances the table to now and applies r. Events it causes (such
// as the grant of a lock to the next waiter after a release) are
// collected by DrainEvents. lockList is not applied: use Locks.
func (t *lockTable) Apply(now time.Time, r lockRequest) lockResult {
	now = t.advance(now)
	if r.Verb == lockNone || r.Verb >= lockList {
		return lockResult{Status: LockError, Err: errBadLockVerb}
	}
	if len(r.Name) == 0 {
		return lockResult{Status: LockError, Err: errBadLockName}
	}
	if !validKeyBytes(r.Name) {
		return lockResult{Status: LockError, Err: errBadKey}
	}
	switch r.Verb {
	case lockAcquire:
		return t.acquire(now, r)
	case lockRenew:
		return t.renew(now, r)
	case lockRelease:
		return t.release(now, r)
	case lockAbandon:
		return t.abandon(now, r)
	case lockRevoke:
		return t.revoke(r)
	}
	return t.breakLock(now, r)
}

func (t *lockTable) ttl(d time.Duration) time.Duration {
	if d == 0 {
		return t.cfg.DefaultTTL
	}
	return min(max(d, MinLockTTL), t.cfg.MaxTTL)
}

func (t *lockTable) acquire(now time.Time, r lockRequest) lockResult {
	if err := acquireErr(r); err != nil {
		return lockResult{Status: LockError, Err: err}
	}
	maxWait := t.cfg.MaxWait
	if r.MaxWait >= 0 {
		maxWait = min(r.MaxWait, maxWait)
	}
	e := t.entry(r.Name)
	if e == nil {
		return lockResult{Status: LockError, Err: errTooManyLocks}
	}
	grant := e.waiters.n == 0 && !t.inGrace && e.fits(r.Mode)
	deadline := now.Add(maxWait)
	if !grant && (maxWait == 0 || e.waiters.n >= t.cfg.MaxWaiters || t.inGrace && deadline.Before(t.graceEnd)) {
		res := t.busy(e, r.Mode, now)
		t.dropIfFree(e)
		return res
	}
	if len(t.held)+len(t.waiting) >= t.cfg.MaxSlots {
		t.dropIfFree(e)
		return lockResult{Status: LockError, Err: errTooManyLockSlots}
	}
	s := &lockSlot{lock: e, owner: t.owner(r.Owner), mode: r.Mode, since: now, ttl: t.ttl(r.TTL), hidx: -1}
	if grant {
		t.grant(s, now)
		return lockResult{Status: LockGranted, Fence: s.fence, Until: s.at}
	}
	return t.enqueue(s, deadline)
}

// owner returns b as a string, the one of the last acquisition when it
// is the same: a client's acquisitions name one owner, copied once.
func (t *lockTable) owner(b []byte) string {
	if string(b) != t.lastOwner {
		t.lastOwner = string(b)
	}
	return t.lastOwner
}

// acquireErr reports why r is not a valid acquisition, or nil.
func acquireErr(r lockRequest) error {
	if r.Mode != LockExclusive && r.Mode != LockShared {
		return errBadLockMode
	}
	if !validOwner(r.Owner) {
		return errBadLockOwner
	}
	return nil
}

// entry returns the live lock name, making it if it is not live, or nil
// if there are too many live locks to make it.
func (t *lockTable) entry(name []byte) *lockEntry {
	if e := t.locks[string(name)]; e != nil {
		return e
	}
	if len(t.locks) >= t.cfg.MaxLocks {
		return nil
	}
	e := &lockEntry{name: string(name)}
	e.capacity = t.Capacity(e.name)
	t.locks[e.name] = e
	t.peak = max(t.peak, len(t.locks))
	return e
}

// enqueue puts s, not yet granted, at the end of its lock's queue until
// deadline.
func (t *lockTable) enqueue(s *lockSlot, deadline time.Time) lockResult {
	t.ticket++
	s.waiting, s.ticket, s.at = true, t.ticket, deadline
	s.lock.waiters.push(s)
	t.waiting[s.ticket] = s
	t.push(s)
	return lockResult{Status: LockQueued, Ticket: s.ticket}
}

// fits reports whether an acquisition in mode m could hold e now.
func (e *lockEntry) fits(m LockMode) bool {
	if e.held.n == 0 {
		return true
	}
	return m == LockShared && !e.exclusive && e.held.n < e.capacity
}

// busy is the refusal of an acquisition in mode m of e at now.
func (t *lockTable) busy(e *lockEntry, m LockMode, now time.Time) lockResult {
	r := lockResult{Status: LockBusy, Holders: e.held.n, Waiters: e.waiters.n, Until: now}
	if h := e.held.head; h != nil {
		r.Owner = h.owner
		// An exclusive request waits for every holder, a shared one
		// for the first lease to end (all of them if the holder is
		// exclusive, and then there is one).
		first, last := h.at, h.at
		for s := h.next; s != nil; s = s.next {
			if s.at.Before(first) {
				first = s.at
			}
			if s.at.After(last) {
				last = s.at
			}
		}
		r.Until = last
		if m == LockShared && !e.exclusive {
			r.Until = first
		}
	}
	if t.inGrace && r.Until.Before(t.graceEnd) {
		r.Until = t.graceEnd
	}
	return r
}

// nextFence returns a fence above every one given, at the clock.
func (t *lockTable) nextFence(at time.Time) uint64 {
	f := t.fence + 1
	if us := at.UnixMicro(); us > 0 && uint64(us) > f {
		f = uint64(us)
	}
	t.fence = f
	return f
}

// grant makes s, not in any list, a holder of its lock at at.
func (t *lockTable) grant(s *lockSlot, at time.Time) {
	e := s.lock
	s.waiting = false
	s.fence = t.nextFence(at)
	s.since = at
	s.at = at.Add(s.ttl)
	e.held.push(s)
	e.exclusive = s.mode == LockExclusive
	t.held[s.fence] = s
	if s.hidx < 0 {
		t.push(s)
	} else {
		t.fix(s.hidx)
	}
}

// unhold removes the holder s from its lock and the timers.
func (t *lockTable) unhold(s *lockSlot) {
	s.lock.held.remove(s)
	delete(t.held, s.fence)
	if s.hidx >= 0 {
		t.remove(s.hidx)
	}
}

// holder returns the lease fence of the lock name, or nil.
func (t *lockTable) holder(name []byte, fence uint64) *lockSlot {
	s := t.held[fence]
	if s == nil || s.lock.name != string(name) {
		return nil
	}
	return s
}

func (t *lockTable) renew(now time.Time, r lockRequest) lockResult {
	s := t.holder(r.Name, r.Fence)
	if s == nil {
		return lockResult{Status: LockLost, Fence: r.Fence}
	}
	if s.revoked {
		return lockResult{Status: LockRevoked, Fence: s.fence, Until: s.at}
	}
	if r.TTL != 0 {
		s.ttl = t.ttl(r.TTL)
	}
	s.at = now.Add(s.ttl)
	t.fix(s.hidx)
	return lockResult{Status: LockGranted, Fence: s.fence, Until: s.at}
}

func (t *lockTable) release(now time.Time, r lockRequest) lockResult {
	s := t.holder(r.Name, r.Fence)
	if s == nil {
		return lockResult{Status: LockLost, Fence: r.Fence}
	}
	t.unhold(s)
	t.pump(s.lock, now)
	t.dropIfFree(s.lock)
	return lockResult{Status: LockReleased, Fence: s.fence, Since: s.since}
}

func (t *lockTable) abandon(now time.Time, r lockRequest) lockResult {
	s := t.waiting[r.Ticket]
	if s == nil || s.lock.name != string(r.Name) {
		return lockResult{Status: LockAbandoned}
	}
	t.unwait(s, now)
	return lockResult{Status: LockAbandoned, Count: 1}
}

func (t *lockTable) revoke(r lockRequest) lockResult {
	e := t.locks[string(r.Name)]
	if e == nil {
		return lockResult{Status: LockRevoking}
	}
	for s := e.held.head; s != nil; s = s.next {
		s.revoked = true
	}
	return lockResult{Status: LockRevoking, Count: e.held.n}
}

func (t *lockTable) breakLock(now time.Time, r lockRequest) lockResult {
	res := lockResult{Status: LockBroken}
	e := t.locks[string(r.Name)]
	if e != nil {
		for s := e.held.head; s != nil; s = e.held.head {
			t.unhold(s)
			res.Count++
		}
	}
	res.Fence = t.nextFence(now)
	if e != nil {
		t.pump(e, now)
		t.dropIfFree(e)
	}
	return res
}

// advance runs the timers up to now and returns now, or the latest

func validOwner(b []byte) bool {
	if len(b) > maxLockOwnerLen {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}
