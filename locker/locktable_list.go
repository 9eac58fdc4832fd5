package locker

import (
	"slices"
	"strings"
	"time"
)

// LockTableStats counts what a LockTable holds.
type LockTableStats struct {
	Locks, Holders, Waiters int
	// LastFence is the highest fence given so far (or FenceFloor).
	LastFence uint64
	// GraceEnd is when the grace period ends, or the zero time if the
	// table is not in it.
	GraceEnd time.Time
}

// Stats returns the table's counts.
func (t *LockTable) Stats() LockTableStats {
	st := LockTableStats{Locks: len(t.locks), Holders: len(t.held), Waiters: len(t.waiting), LastFence: t.fence}
	if t.inGrace {
		st.GraceEnd = t.graceEnd
	}
	return st
}

// LockHolderInfo describes one holder in a listing.
type LockHolderInfo struct {
	Owner    string
	Fence    uint64
	Mode     LockMode
	Since    time.Time
	LeaseEnd time.Time
	Revoked  bool
}

// LockWaiterInfo describes one held acquisition in a listing.
type LockWaiterInfo struct {
	Owner    string
	Mode     LockMode
	Since    time.Time
	Deadline time.Time
}

// LockInfo describes one live lock.
type LockInfo struct {
	Name     string
	Capacity int
	// Mode is the holders' mode; meaningless without holders.
	Mode    LockMode
	Holders []LockHolderInfo // in grant order
	Waiters []LockWaiterInfo // in queue order
}

// Lock returns the state of the lock name, and false if it is not live.
func (t *LockTable) Lock(name string) (LockInfo, bool) {
	e := t.locks[name]
	if e == nil {
		return LockInfo{}, false
	}
	return e.info(), true
}

// Locks appends every live lock to dst, sorted by name.
func (t *LockTable) Locks(dst []LockInfo) []LockInfo {
	n := len(dst)
	for _, e := range t.locks {
		dst = append(dst, e.info())
	}
	slices.SortFunc(dst[n:], func(a, b LockInfo) int { return strings.Compare(a.Name, b.Name) })
	return dst
}

func (e *lockEntry) info() LockInfo {
	li := LockInfo{Name: e.name, Capacity: e.capacity, Mode: LockShared}
	if e.exclusive {
		li.Mode = LockExclusive
	}
	for s := e.held.head; s != nil; s = s.next {
		li.Holders = append(li.Holders, LockHolderInfo{Owner: s.owner, Fence: s.fence, Mode: s.mode, Since: s.since, LeaseEnd: s.at, Revoked: s.revoked})
	}
	for s := e.waiters.head; s != nil; s = s.next {
		li.Waiters = append(li.Waiters, LockWaiterInfo{Owner: s.owner, Mode: s.mode, Since: s.since, Deadline: s.at})
	}
	return li
}
