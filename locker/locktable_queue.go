package locker

import (
	"slices"
	"time"
)

type slotList struct {
	head, tail *lockSlot
	n          int
}

func (l *slotList) push(s *lockSlot) {
	s.prev, s.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = s
	} else {
		l.head = s
	}
	l.tail = s
	l.n++
}

func (l *slotList) remove(s *lockSlot) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		l.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		l.tail = s.prev
	}
	s.prev, s.next = nil, nil
	l.n--
}

// pump grants e to the waiters at the head of its queue that fit, in
// order, at at.
func (t *lockTable) pump(e *lockEntry, at time.Time) {
	if t.inGrace {
		return
	}
	for s := e.waiters.head; s != nil && e.fits(s.mode); s = e.waiters.head {
		e.waiters.remove(s)
		delete(t.waiting, s.ticket)
		t.grant(s, at)
		t.events = append(t.events, lockEvent{Name: e.name, Ticket: s.ticket, At: at,
			Result: lockResult{Status: LockGranted, Fence: s.fence, Until: s.at}})
	}
}

// dropIfFree forgets e if nobody holds or waits for it.
func (t *lockTable) dropIfFree(e *lockEntry) {
	if e.held.n > 0 || e.waiters.n > 0 {
		return
	}
	delete(t.locks, e.name)
	if len(t.locks) == 0 && t.peak > 1024 {
		// Go maps keep their buckets: start afresh so that memory
		// returns to where it was after a burst of names.
		t.locks = make(map[string]*lockEntry)
		t.held = make(map[uint64]*lockSlot)
		t.waiting = make(map[uint64]*lockSlot)
		t.timers = nil
		t.peak = 0
	}
}

// unwait removes the waiter s, letting those behind it move up.
func (t *lockTable) unwait(s *lockSlot, at time.Time) {
	e := s.lock
	wasHead := e.waiters.head == s
	e.waiters.remove(s)
	delete(t.waiting, s.ticket)
	if s.hidx >= 0 {
		t.remove(s.hidx)
	}
	if wasHead {
		t.pump(e, at)
	}
	t.dropIfFree(e)
}

// instant already seen if now is earlier.
func (t *lockTable) advance(now time.Time) time.Time {
	if now.Before(t.now) {
		now = t.now
	}
	for {
		var top *lockSlot
		if len(t.timers) > 0 {
			top = t.timers[0]
		}
		// At one instant: lease ends, then the end of grace, then
		// waiter deadlines.
		if t.inGrace && (top == nil || t.graceEnd.Before(top.at) || t.graceEnd.Equal(top.at) && top.waiting) {
			if t.graceEnd.After(now) {
				break
			}
			t.now = t.graceEnd
			t.endGrace()
			continue
		}
		if top == nil || top.at.After(now) {
			break
		}
		at := top.at
		t.now = at
		t.remove(0)
		e := top.lock
		if top.waiting {
			e.waiters.remove(top)
			delete(t.waiting, top.ticket)
			res := t.busy(e, top.mode, at)
			t.events = append(t.events, lockEvent{Name: e.name, Ticket: top.ticket, At: at, Result: res})
			t.pump(e, at) // those behind a blocked head may fit
		} else {
			t.unhold(top)
			t.events = append(t.events, lockEvent{Name: e.name, At: at,
				Result: lockResult{Status: LockExpired, Fence: top.fence, Owner: top.owner, Since: top.since}})
			t.pump(e, at)
		}
		t.dropIfFree(e)
	}
	t.now = now
	return now
}

// endGrace ends the grace period and serves the queues, in name order so
// that replicas agree on the fences.
func (t *lockTable) endGrace() {
	t.inGrace = false
	names := make([]string, 0, len(t.locks))
	for name, e := range t.locks {
		if e.waiters.n > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		t.pump(t.locks[name], t.graceEnd)
	}
}

// The timers form a binary min-heap of slots, each knowing its index, so
// that a renewal or release moves or removes its slot in O(log n).

func slotLess(a, b *lockSlot) bool {
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	if a.waiting != b.waiting {
		return !a.waiting // lease ends first
	}
	if a.waiting {
		return a.ticket < b.ticket
	}
	return a.fence < b.fence
}

func (t *lockTable) push(s *lockSlot) {
	s.hidx = len(t.timers)
	t.timers = append(t.timers, s)
	t.up(s.hidx)
}

func (t *lockTable) remove(i int) {
	last := len(t.timers) - 1
	s := t.timers[i]
	if i != last {
		t.swap(i, last)
	}
	t.timers[last] = nil
	t.timers = t.timers[:last]
	s.hidx = -1
	if i != last {
		t.fix(i)
	}
}

func (t *lockTable) fix(i int) {
	if !t.down(i) {
		t.up(i)
	}
}

func (t *lockTable) swap(i, j int) {
	t.timers[i], t.timers[j] = t.timers[j], t.timers[i]
	t.timers[i].hidx = i
	t.timers[j].hidx = j
}

func (t *lockTable) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !slotLess(t.timers[i], t.timers[p]) {
			return
		}
		t.swap(i, p)
		i = p
	}
}

func (t *lockTable) down(i int) bool {
	i0, n := i, len(t.timers)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && slotLess(t.timers[r], t.timers[l]) {
			c = r
		}
		if !slotLess(t.timers[c], t.timers[i]) {
			break
		}
		t.swap(i, c)
		i = c
	}
	return i > i0
}
