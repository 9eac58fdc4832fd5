package locker

import (
	"errors"
	"fmt"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// send writes a reply with the envelope env. Errors are not fatal: a
// client that went away simply does not get its reply.
func (s *Server) send(env [][]byte, body []byte) {
	for _, f := range env {
		if _, err := s.sock.SendBytes(f, zmq.SNDMORE|zmq.DONTWAIT); err != nil {
			s.log.Debug("send failed", "err", err)
			return
		}
	}
	if _, err := s.sock.SendBytes(body, zmq.DONTWAIT); err != nil {
		s.log.Debug("send failed", "err", err)
	}
}

// sendPacked is send for an envelope kept by packFrames.
func (s *Server) sendPacked(env []byte, body []byte) {
	for f, rest, ok := nextFrame(env); ok; f, rest, ok = nextFrame(rest) {
		if _, err := s.sock.SendBytes(f, zmq.SNDMORE|zmq.DONTWAIT); err != nil {
			s.log.Debug("send failed", "err", err)
			return
		}
	}
	if _, err := s.sock.SendBytes(body, zmq.DONTWAIT); err != nil {
		s.log.Debug("send failed", "err", err)
	}
}

// request is the request being handled, as its handler sees it.
type request struct {
	msg  [][]byte // every frame: msg[0] is the routing id, the last the body
	env  [][]byte // every frame but the body
	req  wireRequest
	user string // the client's CURVE key, when requests are checked
	// start is when the server began deciding, for the Observer; zero
	// when there is none.
	start time.Time
}

// handlers answer the requests of each verb. Adding a verb adds a line
// here and its handler.
var handlers = [...]func(*Server, *request){
	verbLegacy: (*Server).handleTake,
	verbTake:   (*Server).handleTake,
	verbWait:   (*Server).handleWait,
	verbPing:   (*Server).handlePing,
	verbStatus: (*Server).handleStatus,
	verbCancel: (*Server).handleCancel,
}

// handle answers one request. msg[0] is the routing id added by ROUTER;
// the last frame is the body and everything before it is the envelope.
// user is the User-Id ZeroMQ gave the message.
func (s *Server) handle(msg [][]byte, user string) {
	if len(msg) < 2 {
		return
	}
	if len(msg)-1 > MaxFrames { // the routing id is ROUTER's, not the client's
		s.send(msg[:1], appendError(s.buf[:0], errTooManyFrames))
		s.observe("", OutcomeError, time.Time{})
		return
	}
	// The request lives in the server, so handling one allocates nothing.
	r := &s.cur
	*r = request{msg: msg, env: msg[:len(msg)-1], user: user}
	if s.cfg.Observer != nil {
		r.start = time.Now()
	}
	body := msg[len(msg)-1]
	if isLockBody(body) {
		if lr, err := parseLockRequest(body); lr.Verb != lockNone {
			s.handleLock(r, lr, err)
			return
		}
	}
	var err error
	r.req, err = parseRequest(body)
	if err == nil && !s.userAllowed(user) {
		err = errKeyNotAllowed
	}
	if err != nil {
		s.replyError(r, "", err)
		return
	}
	handlers[r.req.Verb](s, r)
}

// Errors the server answers with.
var (
	errTooManyFrames  error = wireError(fmt.Sprintf("more than %d frames", MaxFrames))
	errKeyNotAllowed  error = wireError("client key not allowed")
	errTooLargeToHold error = wireError(fmt.Sprintf("request too large to hold: more than %d bytes of envelope and body", MaxHeldBytes))
)

func (s *Server) handlePing(r *request) {
	s.reply(r.env, append(append(s.buf[:0], wordPong+" "...), s.cfg.ID...))
}

// handleStatus answers "status" with every key, and "status KEY" with
// one.
func (s *Server) handleStatus(r *request) {
	if len(r.req.Key) == 0 {
		s.reply(r.env, s.statusJSON())
		return
	}
	b, err := s.keyStatusJSON(string(r.req.Key))
	if err != nil {
		s.replyError(r, "", err)
		return
	}
	s.reply(r.env, b)
}

// handleTake answers take and legacy requests.
func (s *Server) handleTake(r *request) {
	if cfg, d, _, ok := s.decide(r); ok {
		s.replyDecision(r, cfg.Name, d)
	}
}

// handleWait answers a wait at once, or holds it on its key's queue.
func (s *Server) handleWait(r *request) {
	if framesSize(r.msg) > MaxHeldBytes {
		s.replyError(r, "", errTooLargeToHold)
		return
	}
	cfg, d, now, ok := s.decide(r)
	if !ok {
		return
	}
	if !d.OK {
		maxWait := s.cfg.MaxWait
		if r.req.MaxWait >= 0 && r.req.MaxWait < maxWait {
			maxWait = r.req.MaxWait
		}
		// The envelope is copied into one allocation: its frames are
		// receive buffers that the request would otherwise keep.
		w := waiter{env: packFrames(make([]byte, 0, packedLen(r.env)), r.env), user: r.user,
			n: r.req.N, deadline: now.Add(maxWait)}
		if maxWait > 0 && s.enqueue(r.req.Key, cfg.Name, w) {
			return // answered, and observed, by serveWaiters
		}
	}
	s.replyDecision(r, cfg.Name, d)
}

// handleCancel withdraws the waits held on the key with the envelope of
// the cancel; each is answered with sorry, then the cancel with their
// number.
func (s *Server) handleCancel(r *request) {
	key := string(r.req.Key)
	if _, ok := s.counter.Key(key); !ok {
		s.replyError(r, "", wireError(fmt.Sprintf("unknown key %q", r.req.Key)))
		return
	}
	n := 0
	if q := s.waiters[key]; q != nil && q.len() > 0 {
		s.packBuf = packFrames(s.packBuf[:0], r.env)
		n = s.cancel(key, q, s.packBuf, s.now())
	}
	s.reply(r.env, appendCancelled(s.buf[:0], n))
}

// decide takes the request's tokens, unless waits are held on its key:
// held waits are served first come, first served, so a take or a new
// wait does not jump the queue. It answers the request itself, with an
// error, and reports false when the request cannot be granted ever.
func (s *Server) decide(r *request) (*KeyConfig, Decision, time.Time, bool) {
	now := s.now()
	q := s.waiters[string(r.req.Key)]
	queued := q != nil && q.len() > 0
	cfg, d, err := s.counter.takeBytes(now, r.req.Key, r.req.N, !queued)
	switch {
	case errors.Is(err, ErrUnknownKey):
		s.replyError(r, "", wireError(fmt.Sprintf("unknown key %q", r.req.Key)))
		return cfg, d, now, false
	case errors.Is(err, ErrTooManyKeys):
		s.replyError(r, cfg.Name, s.tooManyKeys())
		if s.refused != nil {
			s.refused.ObserveKeyRefused(cfg.Name)
		}
		return cfg, d, now, false
	case !errors.Is(err, ErrBadCount) && err != nil: // a *ReachError
		s.replyError(r, cfg.Name, err)
		return cfg, d, now, false
	case err != nil:
		s.replyError(r, cfg.Name, wireError(aboveLimit(r.req.N, cfg)))
		return cfg, d, now, false
	}
	if queued {
		d = s.queuedSorry(now, string(r.req.Key), r.req.N, q)
	}
	return cfg, d, now, true
}

// tooManyKeys is the error a request that would make one key on demand
// too many is answered with.
func (s *Server) tooManyKeys() error {
	return wireError(fmt.Sprintf("too many live keys made on demand (--max-keys %d)", s.counter.MaxKeys()))
}

// aboveLimit says why n tokens of cfg are refused: n is above the most
// one request may take, and names the limit that binds: the only limit of
// a key of one, the burst of a gcra limit, the smallest part of a
// multi-limit key.
func aboveLimit(n int64, cfg *KeyConfig) string {
	parts := cfg.Parts()
	bind := parts[0]
	for _, p := range parts[1:] {
		if p.maxN() < bind.maxN() {
			bind = p
		}
	}
	msg := fmt.Sprintf("N %d above the limit %d of key %s", n, bind.maxN(), cfg.Name)
	switch {
	case bind.alg() == AlgGCRA && bind.Burst != 0 && bind.Burst < bind.Limit:
		msg += fmt.Sprintf(" (the burst of its limit %s)", bind)
	case len(parts) > 1:
		msg += fmt.Sprintf(" (its limit %s)", bind)
	}
	return msg
}

func (s *Server) replyDecision(r *request, key string, d Decision) {
	s.reply(r.env, AppendDecision(s.buf[:0], d, r.req.Verb == verbLegacy))
	out := OutcomeGo
	if !d.OK {
		out = OutcomeSorry
	}
	s.observe(key, out, r.start)
}

func (s *Server) replyError(r *request, key string, err error) {
	s.reply(r.env, appendError(s.buf[:0], err))
	s.observe(key, OutcomeError, r.start)
}

func (s *Server) reply(env [][]byte, body []byte) {
	s.buf = body[:0]
	s.send(env, body)
}

func (s *Server) observe(key string, o Outcome, start time.Time) {
	if s.cfg.Observer == nil {
		return
	}
	var el time.Duration
	if !start.IsZero() {
		el = time.Since(start)
	}
	s.cfg.Observer.ObserveRequest(key, o, el)
}
