package locker

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// loop owns the DEALER socket and waits on it and on the wakeup.
func (c *Client) loop(ready chan<- error) {
	p, err := newLoopPoller(c.wk)
	if err != nil {
		ready <- err
		return
	}
	defer p.close()
	l := &clientLoop{c: c, pending: make(map[uint64]*call), orphans: make(map[uint64]orphanCall)}
	c.own.Lock()
	defer c.own.Unlock()
	if err := l.connect(); err != nil {
		ready <- err
		return
	}
	defer func() {
		p.unwatch()
		if l.sock != nil {
			l.sock.Close()
			l.sock = nil // no caller may use it now
		}
	}()
	if err := p.watch(l.sock); err != nil {
		ready <- err
		return
	}
	c.l = l
	ready <- nil

	for l.turn(p) {
		if l.expire(time.Now()) {
			l.reconnect(p)
		}
		c.loopCalls.Store(int64(len(l.pending)))
	}
}

// turn sleeps until there is something to do, sends the new calls and
// delivers the replies that came. It returns false once the client is
// closed, after failing every call.
func (l *clientLoop) turn(p *loopPoller) bool {
	c := l.c
	if l.delivered > 0 && l.delivered <= yieldBelow && c.noIncoming() {
		// About to sleep with a few callers just answered: let them run
		// on this thread first, instead of leaving them to another
		// thread while this one sleeps in a system call. Their next
		// requests then find the loop awake, with no wake-up to pay.
		// With many callers the loop is better off sending their
		// requests in batches.
		runtime.Gosched()
	}
	c.sleeping.Store(true)
	if c.noIncoming() && p.wait(l.timeout(), len(l.pending) == 0, &c.own) {
		c.stats.ticks.Add(1)
		if !c.noIncoming() {
			// The loop slept its whole timeout while a call was queued:
			// a wake-up was lost, or a call came just as it ended.
			c.stats.lateWakeups.Add(1)
		}
	}
	c.sleeping.Store(false)
	select {
	case <-c.done:
		l.cancelWaits()
		l.failAll(ErrClientClosed)
		return false
	default:
	}
	c.mu.Lock()
	in := c.incoming
	c.incoming = l.spare[:0]
	c.mu.Unlock()
	now := time.Now()
	for i, cl := range in {
		l.pending[cl.id] = cl
		l.send(cl, now)
		in[i] = nil
	}
	l.spare = in
	l.delivered = 0
	for i := 0; l.sock != nil && i < recvBatch; i++ {
		msg, err := recvFrames(l.sock, l.frames)
		l.frames = msg
		if err != nil {
			break
		}
		if l.deliver(msg) {
			l.delivered++
		}
	}
	c.loopCalls.Store(int64(len(l.pending)))
	return true
}

// directResult is what Client.direct did with a call.
type directResult int

const (
	// directNotTried: the call is the loop's to send (submit it).
	directNotTried directResult = iota
	// directAnswered: the caller has the answer.
	directAnswered
	// directHandedOff: the call was sent and is now among the loop's
	// pending calls, which will answer it.
	directHandedOff
)

// direct sends cl and waits for its answer on the calling goroutine
// when it is the only call (lone: no other goroutine is in Client.do):
// no hop to the loop goroutine and back, the same system calls as a bare
// REQ socket. It takes the socket from the loop only while the loop
// sleeps with nothing pending. Callers that overlap leave their calls to
// the loop, which sends them in batches: were they to take turns on the
// socket, each would hold it for a whole round trip. When the answer
// does not come within directWait (a slow or dead server) the call joins
// the loop's pending calls, which time it out, fail over and honour ctx
// as usual. Wait requests, which the server may hold, go through the
// loop, unless marked quick (lock acquisitions, most often answered at
// once): a lone quick call held by the server keeps the socket at most
// directWait.
func (c *Client) direct(ctx context.Context, cl *call, lone bool) (result, directResult) {
	if !lone || (!cl.quick && (cl.hold != 0 || cl.rehold != nil)) {
		return result{}, directNotTried
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < directWait {
		return result{}, directNotTried // ctx would end while the socket is blocked
	}
	if !c.takeSocket() {
		return result{}, directNotTried // the loop is busy: it sends in batches
	}
	l := c.l
	if l.sock == nil || len(l.pending) != 0 || !c.noIncoming() || l.closing() {
		c.own.Unlock()
		return result{}, directNotTried
	}
	c.stats.direct.Add(1)
	l.send(cl, time.Now())
	// Late answers (to calls abandoned earlier) may come first: they go
	// where the loop would send them (a grant that crossed a caller's
	// giving up is released, say). A bounded number of reads, each at
	// most directWait.
	for range 8 {
		msg, err := recvFramesWait(l.sock, l.frames)
		l.frames = msg
		if err != nil {
			break // directWait passed, or the socket failed
		}
		if len(msg) >= 2 && len(msg[0]) == 8 && binary.BigEndian.Uint64(msg[0]) == cl.id {
			body := msg[len(msg)-1]
			c.own.Unlock()
			return result{body: body}, directAnswered
		}
		l.deliver(msg)
	}
	l.pending[cl.id] = cl
	c.loopCalls.Store(int64(len(l.pending)))
	c.own.Unlock()
	c.stats.handoffs.Add(1)
	c.wk.wake() // the loop sleeps without the socket: it must watch it now
	return result{}, directHandedOff
}

// takeSocket locks own for a caller. The loop holds own while it runs a
// turn: when it has no call of its own left it is about to sleep and
// unlock, so the caller waits briefly for that (yielding, since the loop
// may share its thread); when it has calls, or others are queued, the
// caller leaves its call to the loop too.
func (c *Client) takeSocket() bool {
	var until time.Time
	for {
		if c.own.TryLock() {
			return true
		}
		if c.loopCalls.Load() != 0 || !c.noIncoming() {
			return false
		}
		now := time.Now()
		if until.IsZero() {
			until = now.Add(directSpin)
		} else if now.After(until) {
			return false
		}
		runtime.Gosched()
	}
}

// closing reports whether the client is being closed.
func (l *clientLoop) closing() bool {
	select {
	case <-l.c.done:
		return true
	default:
		return false
	}
}

// recvFramesWait receives one message, waiting for its first frame up to
// the socket's receive timeout (directWait).
func recvFramesWait(sock *zmq.Socket, frames [][]byte) ([][]byte, error) {
	if cap(frames) > maxKeptFrames {
		frames = nil
	}
	frames = frames[:0]
	flags := zmq.Flag(0)
	for {
		b, err := sock.RecvBytes(flags)
		if err != nil {
			return frames[:0], err
		}
		frames = append(frames, b)
		more, err := sock.GetRcvmore()
		if err != nil {
			return frames[:0], err
		}
		if !more {
			return frames, nil
		}
		flags = zmq.DONTWAIT // the rest of a message comes with its first frame
	}
}

// reconnect replaces the socket with one connected to the next endpoint
// that takes a connection, and sends every pending call again. When none
// does, the loop goes on without a socket: calls are not sent, time out
// like calls to a server that does not answer, and the next time out
// tries the endpoints again. Nothing here waits, so a bad endpoint can
// never stop the loop from taking new calls or ending old ones.
func (l *clientLoop) reconnect(p *loopPoller) {
	p.unwatch()
	if l.sock != nil {
		// The waits are sent again on the new socket: withdraw them
		// from the server of the old one, in case it still holds them.
		l.cancelWaits()
		l.sock.Close()
		l.sock = nil
	}
	eps := l.c.cfg.Endpoints
	for range eps {
		l.next = (l.next + 1) % len(eps)
		err := l.connect()
		if err == nil {
			break
		}
		l.c.log.Error("client connect", "endpoint", eps[l.next], "err", err)
	}
	if l.sock != nil {
		if err := p.watch(l.sock); err != nil {
			// Without the watch the loop still runs, on its tick.
			l.c.log.Error("client watch", "err", err)
		}
	}
	now := time.Now()
	for _, cl := range l.pending {
		l.send(cl, now)
	}
}

// loopStats are counts the loop keeps for tests (client_export_test.go).
type loopStats struct {
	// attempts is how many attempts the loop sent (or would have sent,
	// with no socket).
	attempts atomic.Int64
	// ticks is how many times the loop slept its whole timeout.
	ticks atomic.Int64
	// lateWakeups is how many times the loop found a call queued after
	// it slept its whole timeout.
	lateWakeups atomic.Int64
	// direct is how many calls a caller sent itself (Client.direct), and
	// handoffs how many of those it then left to the loop.
	direct, handoffs atomic.Int64
}

// clientLoop is the state owned by the client's loop goroutine.
type clientLoop struct {
	c       *Client
	sock    *zmq.Socket
	next    int // index of the endpoint to use
	pending map[uint64]*call
	frames  [][]byte // reused by recvFrames
	spare   []*call  // the incoming slice handed back for reuse
	idb     [8]byte  // the id frame being sent
	// delivered is how many callers the last turn answered.
	delivered int
	// orphans are the calls with an orphan handler whose callers gave
	// up, kept until a reply to their cancel comes or until expires.
	orphans map[uint64]orphanCall
}

// orphanCall is a call whose caller gave up, and until when its late
// replies are looked at.
type orphanCall struct {
	cl      *call
	expires time.Time
}

func (l *clientLoop) connect() error {
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return fmt.Errorf("locker: socket: %w", err)
	}
	if err := l.setup(s); err != nil {
		s.SetLinger(0)
		s.Close()
		return err
	}
	l.sock = s
	return nil
}

func (l *clientLoop) setup(s *zmq.Socket) error {
	if err := s.SetLinger(0); err != nil {
		return err
	}
	// Without it ZeroMQ cannot reach an IPv6 address; with it, it still
	// reaches IPv4 ones.
	if err := s.SetIpv6(true); err != nil {
		return err
	}
	// Only a caller in Client.direct blocks on a receive; the loop never
	// does (DONTWAIT).
	if err := s.SetRcvtimeo(min(directWait, l.c.cfg.Timeout)); err != nil {
		return err
	}
	if l.c.cfg.Security != nil {
		if err := l.c.cfg.Security(s); err != nil {
			return err
		}
	}
	ep := l.c.cfg.Endpoints[l.next]
	if err := s.Connect(ep); err != nil {
		return fmt.Errorf("locker: connect %s: %w", ep, err)
	}
	return nil
}

// send sends cl's current attempt and sets its deadline. A wait request
// sent again (to the next endpoint) asks to be held only for what is left
// of its first hold, so failing over never makes a wait longer than the
// hold it asked for plus the client's timeout per attempt.
func (l *clientLoop) send(cl *call, now time.Time) {
	hold := cl.hold
	if cl.rehold != nil {
		if cl.holdEnd.IsZero() {
			cl.holdEnd = now.Add(cl.hold)
		} else {
			hold = max(cl.holdEnd.Sub(now), 0)
			cl.body = cl.rehold(hold)
		}
	}
	cl.deadline = now.Add(hold + l.c.cfg.Timeout)
	l.c.stats.attempts.Add(1)
	if l.sock == nil {
		return // no endpoint took a connection: the attempt times out
	}
	l.sendBody(cl.id, cl.body) // a lost one counts as a lost attempt when it times out
}

// sendBody sends [id, "", body] on the current socket.
func (l *clientLoop) sendBody(id uint64, body []byte) {
	idb := l.idb[:]
	binary.BigEndian.PutUint64(idb, id)
	if _, err := l.sock.SendBytes(idb, zmq.SNDMORE|zmq.DONTWAIT); err != nil {
		return
	}
	if _, err := l.sock.SendBytes(nil, zmq.SNDMORE|zmq.DONTWAIT); err != nil {
		return
	}
	l.sock.SendBytes(body, zmq.DONTWAIT)
}

// cancelWaits asks the server to withdraw every pending wait, before the
// socket is closed, and lets the socket linger a little to send that.
func (l *clientLoop) cancelWaits() {
	if l.sock == nil {
		return
	}
	sent := false
	for _, cl := range l.pending {
		if cl.cancel != nil {
			l.sendBody(cl.id, cl.cancel)
			sent = true
		}
	}
	if sent {
		l.sock.SetLinger(cancelLinger)
	}
}

// deliver hands a reply [id, "", body] to its call. It reports whether
// a caller got an answer.
func (l *clientLoop) deliver(msg [][]byte) bool {
	if len(msg) < 2 || len(msg[0]) != 8 {
		return false
	}
	id := binary.BigEndian.Uint64(msg[0])
	cl := l.pending[id]
	if cl == nil {
		if o, ok := l.orphans[id]; ok {
			l.orphaned(id, o.cl, msg[len(msg)-1])
		}
		return false // answered already, or abandoned
	}
	if cl.orphan != nil && !cl.claimed.CompareAndSwap(false, true) {
		l.orphaned(id, cl, msg[len(msg)-1]) // its caller just gave up
		return false
	}
	delete(l.pending, id)
	cl.reply <- result{body: msg[len(msg)-1]}
	return true
}

// orphaned hands a reply for the call id, whose caller gave up, to its
// orphan handler, and sends what that asks for.
func (l *clientLoop) orphaned(id uint64, cl *call, body []byte) {
	if next := cl.orphan(body); next != nil && l.sock != nil {
		l.sendBody(l.c.nextID.Add(1), next)
	}
	if cl.cancel != nil && !bytes.HasPrefix(body, []byte(wordAbandoned)) {
		// The reply to its cancel, sent after the call, is yet to come.
		if _, ok := l.orphans[id]; !ok {
			l.orphans[id] = orphanCall{cl: cl, expires: time.Now().Add(l.c.cfg.Timeout)}
		}
		return
	}
	delete(l.orphans, id)
}

// expire drops abandoned calls and ends the attempts that timed out. It
// reports whether one did, so the socket should be replaced.
func (l *clientLoop) expire(now time.Time) bool {
	timedOut := false
	for id, cl := range l.pending {
		if cl.gone.Load() {
			delete(l.pending, id)
			if cl.cancel != nil && l.sock != nil { // a wait the server may hold
				l.sendBody(id, cl.cancel)
			}
			if cl.orphan != nil {
				l.orphans[id] = orphanCall{cl: cl, expires: now.Add(l.c.cfg.Timeout)}
			}
			continue
		}
		if now.Before(cl.deadline) {
			continue
		}
		timedOut = true
		if cl.attempts == 0 {
			continue // until abandoned
		}
		cl.attempts--
		if cl.attempts == 0 {
			delete(l.pending, id)
			cl.reply <- result{err: ErrTimeout}
		}
	}
	for id, o := range l.orphans {
		if !now.Before(o.expires) {
			delete(l.orphans, id)
		}
	}
	if timedOut {
		l.c.log.Debug("request timed out, reconnecting", "endpoint", l.c.cfg.Endpoints[l.next])
	}
	return timedOut
}

// timeout is how long the loop may sleep: until the earliest attempt
// deadline, at most clientTick.
func (l *clientLoop) timeout() time.Duration {
	wake := clientTick
	now := time.Now()
	for _, cl := range l.pending {
		if d := cl.deadline.Sub(now); d < wake {
			wake = d
		}
	}
	if wake < 0 {
		return 0
	}
	return (wake + time.Millisecond - 1).Truncate(time.Millisecond)
}

func (l *clientLoop) failAll(err error) {
	for id, cl := range l.pending {
		delete(l.pending, id)
		cl.reply <- result{err: err}
	}
	l.c.mu.Lock()
	in := l.c.incoming
	l.c.incoming = nil
	l.c.mu.Unlock()
	for _, cl := range in {
		cl.reply <- result{err: err}
	}
}
