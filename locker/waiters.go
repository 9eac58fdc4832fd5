package locker

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// waiter is a held wait request.
type waiter struct {
	// env is the request's envelope, routing id first, in one
	// allocation made by packFrames.
	env []byte
	// user is the client's CURVE key, when requests are checked.
	user     string
	n        int64
	deadline time.Time
}

// waitQueue is one key's FIFO of held waits. It is owned by the server's
// loop goroutine.
type waitQueue struct {
	items []waiter
	head  int
	// minDeadline is no later than the earliest deadline in the queue.
	minDeadline time.Time
	// label is the name the queue's answers are observed under and its
	// waiters counted under: the configured key, or the template of a
	// key made on demand, never a name a client made.
	label string
	count *atomic.Int64
}

func (q *waitQueue) len() int { return len(q.items) - q.head }

func (q *waitQueue) push(w waiter) {
	if q.len() == 0 || w.deadline.Before(q.minDeadline) {
		q.minDeadline = w.deadline
	}
	q.items = append(q.items, w)
	q.count.Add(1)
}

func (q *waitQueue) pop() waiter {
	w := q.items[q.head]
	q.items[q.head] = waiter{}
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
	q.count.Add(-1)
	return w
}

// enqueue holds w on the queue of key, the requested key, whose
// configuration (its template's, for a key made on demand) is named
// label. It reports false when the queue is full.
func (s *Server) enqueue(key []byte, label string, w waiter) bool {
	q := s.waiters[string(key)]
	if q == nil {
		c, _ := s.waitCount.LoadOrStore(label, new(atomic.Int64))
		q = &waitQueue{label: label, count: c.(*atomic.Int64)}
		s.waiters[string(key)] = q
	}
	if q.len() >= s.cfg.MaxWaiters {
		return false
	}
	q.push(w)
	return true
}

// serveWaiters answers the held waits that can be answered at now: the
// queue heads whose tokens are now available, in order, and every waiter
// whose deadline has passed. An empty queue of a key made on demand is
// forgotten, so that held waits leave nothing behind per key.
func (s *Server) serveWaiters(now time.Time) {
	for key, q := range s.waiters {
		if q.len() == 0 {
			if q.label != key {
				delete(s.waiters, key)
			}
			continue
		}
		if _, ok := s.counter.Key(key); !ok { // key removed by a reload
			for q.len() > 0 {
				s.answerWaitErr(q.label, q.pop(), wireError(fmt.Sprintf("unknown key %q (removed by a reload)", key)))
			}
			delete(s.waiters, key)
			continue
		}
		for q.len() > 0 {
			w := &q.items[q.head]
			if !s.userAllowed(w.user) { // its key was revoked while it was held
				s.answerWaitErr(q.label, q.pop(), errKeyNotAllowed)
				continue
			}
			// Grant before looking at the deadline: a waiter whose
			// tokens came at its last moment gets them.
			d, err := s.counter.TakeAt(now, key, w.n)
			if errors.Is(err, ErrTooManyKeys) {
				s.answerWaitErr(q.label, q.pop(), s.tooManyKeys())
				continue
			}
			if err != nil { // limit lowered below n by a reload
				s.answerWaitErr(q.label, q.pop(), err)
				continue
			}
			if d.OK {
				s.answerWait(q.label, q.pop(), d)
				continue
			}
			if !now.Before(w.deadline) {
				s.answerWait(q.label, q.pop(), d) // d is exact: nothing is ahead of the head
				continue
			}
			break
		}
		if q.len() > 0 && !now.Before(q.minDeadline) {
			s.expire(key, q, now)
		}
	}
}

// expire answers the waiters behind the head whose deadline has passed,
// keeping the others in order.
func (s *Server) expire(key string, q *waitQueue, now time.Time) {
	q.filter(func(w waiter) bool {
		if now.Before(w.deadline) {
			return true
		}
		s.answerWait(q.label, w, s.queuedSorry(now, key, w.n, q))
		return false
	})
}

// cancel withdraws the waiters of key's queue q whose envelope is env,
// answering each with sorry, and returns their number.
func (s *Server) cancel(key string, q *waitQueue, env []byte, now time.Time) int {
	n := 0
	q.filter(func(w waiter) bool {
		if !bytes.Equal(w.env, env) {
			return true
		}
		s.answerWait(q.label, w, s.queuedSorry(now, key, w.n, q))
		n++
		return false
	})
	return n
}

// queuedSorry is the sorry for a request of n tokens of key that waits
// held on key's queue q are ahead of: its RETRY_MS is the counter's exact
// time until n tokens could be granted, or, if they could be now, until
// the queue's head could be (the queue is served first). WINDOW is the
// counter's, for every algorithm. q may be nil or empty.
func (s *Server) queuedSorry(now time.Time, key string, n int64, q *waitQueue) Decision {
	d, err := s.counter.CheckAt(now, key, n)
	if err != nil {
		cfg, _ := s.counter.Key(key)
		return sorryAt(now, max(cfg.Window, MinWindow))
	}
	if d.OK {
		d = Decision{Reset: d.Reset, Window: d.Window}
		if q != nil && q.len() > 0 {
			if head, err := s.counter.CheckAt(now, key, q.items[q.head].n); err == nil && !head.OK {
				d.RetryAfter = head.RetryAfter
			}
		}
	}
	return d
}

// filter keeps, in order, the waiters for which keep reports true.
func (q *waitQueue) filter(keep func(waiter) bool) {
	kept := q.items[:q.head]
	var min time.Time
	for _, w := range q.items[q.head:] {
		if !keep(w) {
			q.count.Add(-1)
			continue
		}
		if len(kept) == q.head || w.deadline.Before(min) {
			min = w.deadline
		}
		kept = append(kept, w)
	}
	clear(q.items[len(kept):])
	q.items = kept
	q.minDeadline = min
}

func sorryAt(now time.Time, window time.Duration) Decision {
	k := WindowIndex(now, window)
	left := time.Duration((k+1)*int64(window) - now.UnixNano())
	return Decision{Reset: left, RetryAfter: left, Window: k}
}

func (s *Server) answerWait(key string, w waiter, d Decision) {
	s.replyPacked(w.env, AppendDecision(s.buf[:0], d, false))
	out := OutcomeGo
	if !d.OK {
		out = OutcomeSorry
	}
	s.observe(key, out, time.Time{})
}

func (s *Server) answerWaitErr(key string, w waiter, err error) {
	s.replyPacked(w.env, appendError(s.buf[:0], err))
	s.observe(key, OutcomeError, time.Time{})
}

func (s *Server) replyPacked(env []byte, body []byte) {
	s.buf = body[:0]
	s.sendPacked(env, body)
}

// nextWake returns how long the loop may sleep: until the tokens of the
// head of a queue come back (a window boundary for a fixed window), or the
// earliest waiter deadline, and never longer than the poll interval.
func (s *Server) nextWake(now time.Time) time.Duration {
	wake := s.poll
	for key, q := range s.waiters {
		if q.len() == 0 {
			continue
		}
		d, ok := s.counter.retryAt(now, key, q.items[q.head].n)
		if !ok {
			return 0
		}
		if dl := q.minDeadline.Sub(now); dl < d {
			d = dl
		}
		if d < wake {
			wake = d
		}
	}
	if wake <= 0 {
		return 0
	}
	// Poll counts whole milliseconds and truncates: round up, so the loop
	// wakes at or just after the boundary instead of spinning before it.
	return (wake + time.Millisecond - 1).Truncate(time.Millisecond)
}

// drain answers every held wait with sorry, and every queued
// acquisition with busy, at shutdown.
func (s *Server) drain() {
	s.drainLocks()
	now := s.now()
	for key, q := range s.waiters {
		for q.len() > 0 {
			w := q.pop()
			s.answerWait(q.label, w, s.queuedSorry(now, key, w.n, nil))
		}
	}
}
