package locker

import (
	"slices"
	"strings"
	"time"
)

// lockTableStats counts what a lockTable holds.
type lockTableStats struct {
	Locks, Holders, Waiters int
	// LastFence is the highest fence given so far (or FenceFloor).
	LastFence uint64
	// GraceEnd is when the grace period ends, or the zero time if the
	// table is not in it.
	GraceEnd time.Time
}

// Stats returns the table's counts.
func (t *lockTable) Stats() lockTableStats {
	st := lockTableStats{Locks: len(t.locks), Holders: len(t.held), Waiters: len(t.waiting), LastFence: t.fence}
	if t.inGrace {
		st.GraceEnd = t.graceEnd
	}
	return st
}

// lockHolderInfo describes one holder in a listing.
type lockHolderInfo struct {
	Owner    string
	Fence    uint64
	Mode     LockMode
	Since    time.Time
	LeaseEnd time.Time
	Revoked  bool
}

// lockWaiterInfo describes one held acquisition in a listing.
type lockWaiterInfo struct {
	Owner    string
	Mode     LockMode
	Since    time.Time
	Deadline time.Time
}

// lockInfo describes one live lock.
type lockInfo struct {
	Name     string
	Capacity int
	// Mode is the holders' mode; meaningless without holders.
	Mode    LockMode
	Holders []lockHolderInfo // in grant order
	Waiters []lockWaiterInfo // in queue order
}

// Lock returns the state of the lock name, and false if it is not live.
func (t *lockTable) Lock(name string) (lockInfo, bool) {
	e := t.locks[name]
	if e == nil {
		return lockInfo{}, false
	}
	return e.info(), true
}

// Locks appends every live lock to dst, sorted by name.
func (t *lockTable) Locks(dst []lockInfo) []lockInfo {
	n := len(dst)
	for _, e := range t.locks {
		dst = append(dst, e.info())
	}
	slices.SortFunc(dst[n:], func(a, b lockInfo) int { return strings.Compare(a.Name, b.Name) })
	return dst
}

func (e *lockEntry) info() lockInfo {
	li := lockInfo{Name: e.name, Capacity: e.capacity, Mode: LockShared}
	if e.exclusive {
		li.Mode = LockExclusive
	}
	for s := e.held.head; s != nil; s = s.next {
		li.Holders = append(li.Holders, lockHolderInfo{Owner: s.owner, Fence: s.fence, Mode: s.mode, Since: s.since, LeaseEnd: s.at, Revoked: s.revoked})
	}
	for s := e.waiters.head; s != nil; s = s.next {
		li.Waiters = append(li.Waiters, lockWaiterInfo{Owner: s.owner, Mode: s.mode, Since: s.since, Deadline: s.at})
	}
	return li
}
