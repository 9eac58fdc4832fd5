package locker

import (
	"bytes"
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
	count       *atomic.Int64
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

// enqueue holds w on key's queue. It reports false when the queue is
// full.
func (s *Server) enqueue(key string, w waiter) bool {
	q := s.waiters[key]
	if q == nil {
		c, _ := s.waitCount.LoadOrStore(key, new(atomic.Int64))
		q = &waitQueue{count: c.(*atomic.Int64)}
		s.waiters[key] = q
	}
	if q.len() >= s.cfg.MaxWaiters {
		return false
	}
	q.push(w)
	return true
}

// serveWaiters answers the held waits that can be answered at now: the
// queue heads whose tokens are now available, in order, and every waiter
// whose deadline has passed.
func (s *Server) serveWaiters(now time.Time) {
	for key, q := range s.waiters {
		if q.len() == 0 {
			continue
		}
		cfg, ok := s.counter.Key(key)
		if !ok { // key removed by a reload
			for q.len() > 0 {
				s.answerWaitErr(key, q.pop(), wireError(fmt.Sprintf("unknown key %q (removed by a reload)", key)))
			}
			delete(s.waiters, key)
			continue
		}
		for q.len() > 0 {
			w := &q.items[q.head]
			if !s.userAllowed(w.user) { // its key was revoked while it was held
				s.answerWaitErr(key, q.pop(), errKeyNotAllowed)
				continue
			}
			// Grant before looking at the deadline: a waiter whose
			// tokens came at its last moment gets them.
			d, err := s.counter.TakeAt(now, key, w.n)
			if err != nil { // limit lowered below n by a reload
				s.answerWaitErr(key, q.pop(), err)
				continue
			}
			if d.OK {
				s.answerWait(key, q.pop(), d)
				continue
			}
			if !now.Before(w.deadline) {
				s.answerWait(key, q.pop(), sorryAt(now, cfg.Window))
				continue
			}
			break
		}
		if q.len() > 0 && !now.Before(q.minDeadline) {
			s.expire(key, q, now, cfg.Window)
		}
	}
}

// expire answers the waiters behind the head whose deadline has passed,
// keeping the others in order.
func (s *Server) expire(key string, q *waitQueue, now time.Time, window time.Duration) {
	q.filter(func(w waiter) bool {
		if now.Before(w.deadline) {
			return true
		}
		s.answerWait(key, w, sorryAt(now, window))
		return false
	})
}

// cancel withdraws the waiters of cfg's queue q whose envelope is env,
// answering each with sorry, and returns their number.
func (s *Server) cancel(cfg KeyConfig, q *waitQueue, env []byte, now time.Time) int {
	n := 0
	q.filter(func(w waiter) bool {
		if !bytes.Equal(w.env, env) {
			return true
		}
		s.answerWait(cfg.Name, w, sorryAt(now, cfg.Window))
		n++
		return false
	})
	return n
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
	s.replyPacked(w.env, AppendError(s.buf[:0], err))
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
		w := DefaultWindow
		if cfg, ok := s.counter.Key(key); ok {
			w = cfg.Window
		}
		for q.len() > 0 {
			s.answerWait(key, q.pop(), sorryAt(now, w))
		}
	}
}
