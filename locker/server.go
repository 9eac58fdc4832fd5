package locker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// Server defaults.
const (
	// DefaultEndpoint is where a server binds when Config.Endpoints is
	// empty: the seed design's port on every interface.
	DefaultEndpoint = "tcp://*:7777"
	// DefaultMaxWait caps how long a wait request is held.
	DefaultMaxWait = 30 * time.Second
	// DefaultMaxWaiters bounds the wait queue of each key.
	DefaultMaxWaiters = 10000
	// DefaultMaxMsgSize is the largest inbound frame, in bytes; a peer
	// that sends a larger one is disconnected by ZeroMQ before the frame
	// is read into memory.
	DefaultMaxMsgSize = 4096
	// MaxFrames is the most frames a request may have; a longer one is
	// answered with an error carrying only the first frame as envelope.
	MaxFrames = 32
	// MaxHeldBytes bounds what a held wait keeps: the sizes of all the
	// frames of a wait request (routing id, envelope and body) added up.
	// A wait above it is answered at once with an error, never held.
	MaxHeldBytes = 512
	// pollInterval bounds how long the loop sleeps without looking at
	// its context.
	pollInterval = 50 * time.Millisecond
	// recvBatch is how many requests the loop reads before it serves
	// waiters again.
	recvBatch = 256
)

// ErrServerClosed is returned by Server.Run after its context is done.
var ErrServerClosed = errors.New("locker: server closed")

// Outcome is the result of a request, as reported to an Observer.
type Outcome uint8

// Outcomes.
const (
	OutcomeGo Outcome = iota
	OutcomeSorry
	OutcomeError
)

// String returns "go", "sorry" or "error".
func (o Outcome) String() string {
	switch o {
	case OutcomeGo:
		return "go"
	case OutcomeSorry:
		return "sorry"
	}
	return "error"
}

// Observer is told about every answered take, wait and legacy request.
// Its methods are called from the server's loop goroutine and must not
// block. A nil Observer costs nothing.
type Observer interface {
	// ObserveRequest reports one answer. key is the configured key name,
	// or "" when the request named no configured key. elapsed is the time
	// the server spent deciding, not the time a wait was held.
	ObserveRequest(key string, outcome Outcome, elapsed time.Duration)
}

// Config configures a Server. The zero value serves the key DefaultKey on
// DefaultEndpoint with the defaults below.
type Config struct {
	// Endpoints are the ZeroMQ endpoints to bind. If empty,
	// DefaultEndpoint is used.
	Endpoints []string
	// Keys are the rate-limited keys. DefaultKey is added when missing.
	Keys []KeyConfig
	// ID names the server in pong and status replies. If empty,
	// "lockerd" is used.
	ID string
	// MaxWait caps how long a wait request is held. If zero,
	// DefaultMaxWait is used.
	MaxWait time.Duration
	// MaxWaiters bounds each key's wait queue. If zero,
	// DefaultMaxWaiters is used.
	MaxWaiters int
	// MaxMsgSize is the largest inbound frame in bytes. If zero,
	// DefaultMaxMsgSize is used.
	MaxMsgSize int64
	// Logger receives the server's log. If nil, nothing is logged.
	Logger *slog.Logger
	// Now returns the current time. If nil, time.Now is used.
	Now func() time.Time
	// Observer, if not nil, is told about every decision.
	Observer Observer
	// StatusExtra, if not nil, is called from the server loop when a
	// status request is answered; the fields it returns are added to the
	// status document. It must not block.
	StatusExtra func() map[string]any
	// Security, if not nil, is applied to the server socket before it
	// binds (for example CURVE).
	Security func(*zmq.Socket) error
}

// Server answers go/sorry requests on a ZeroMQ ROUTER socket, which REQ
// and DEALER clients can both talk to. One goroutine, the one that calls
// Run, owns the socket.
//
// Its methods are safe for concurrent use. A Server runs once.
type Server struct {
	cfg     Config
	counter *Counter
	log     *slog.Logger
	now     func() time.Time

	ready     chan struct{}
	ran       atomic.Bool // set by the first Run
	mu        sync.Mutex
	endpoints []string

	// waiters are owned by the loop goroutine; waitCount mirrors their
	// lengths for Stats.
	waiters   map[string]*waitQueue
	waitCount sync.Map // key name -> *atomic.Int64

	sock    *zmq.Socket
	buf     []byte
	frames  [][]byte // reused by recvMessage
	packBuf []byte   // a cancel's packed envelope
	// recv receives one message; tests replace it to inject errors.
	recv func(sock *zmq.Socket, frames [][]byte, withUser bool) ([][]byte, string, error)
	// zapDomain is the CURVE domain whose allow list each request's
	// User-Id is checked against; "" when requests are not checked.
	zapDomain string
}

// NewServer checks cfg and returns a server for it. Nothing is bound
// until Run.
func NewServer(cfg Config) (*Server, error) {
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = []string{DefaultEndpoint}
	}
	if cfg.ID == "" {
		cfg.ID = "lockerd"
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.MaxWait < 0 {
		return nil, fmt.Errorf("locker: negative max wait %s", cfg.MaxWait)
	}
	if cfg.MaxWaiters == 0 {
		cfg.MaxWaiters = DefaultMaxWaiters
	}
	if cfg.MaxWaiters < 0 {
		return nil, fmt.Errorf("locker: negative max waiters %d", cfg.MaxWaiters)
	}
	if cfg.MaxMsgSize == 0 {
		cfg.MaxMsgSize = DefaultMaxMsgSize
	}
	c, err := NewCounter(cfg.Keys)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		counter: c,
		log:     cfg.Logger,
		now:     cfg.Now,
		ready:   make(chan struct{}),
		waiters: make(map[string]*waitQueue),
		recv:    recvMessage,
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Counter returns the server's counter, through which keys can be
// reconfigured and federated peers can share counts.
func (s *Server) Counter() *Counter { return s.counter }

// ID returns the server id.
func (s *Server) ID() string { return s.cfg.ID }

// Ready returns a channel that is closed once every endpoint is bound.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Endpoints returns the bound endpoints, with wildcard ports resolved
// (tcp://127.0.0.1:* becomes tcp://127.0.0.1:40123). It is empty before
// Ready is closed.
func (s *Server) Endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.endpoints...)
}

// Stats is a snapshot of a server.
type Stats struct {
	ID   string
	Keys []KeyStat
}

// KeyStat is a snapshot of one key of a server.
type KeyStat struct {
	KeyStats
	// Waiters is the number of wait requests held for the key.
	Waiters int64
}

// Stats returns a snapshot of every key.
func (s *Server) Stats() Stats {
	snap := s.counter.SnapshotAt(s.now())
	st := Stats{ID: s.cfg.ID, Keys: make([]KeyStat, len(snap))}
	for i, k := range snap {
		st.Keys[i].KeyStats = k
		if v, ok := s.waitCount.Load(k.Name); ok {
			st.Keys[i].Waiters = v.(*atomic.Int64).Load()
		}
	}
	return st
}

// Run binds the endpoints and answers requests until ctx is done. Then it
// answers every held wait with sorry, closes the socket and returns
// ErrServerClosed. It returns another error if the socket cannot be set
// up, and at once if called a second time, even concurrently with the
// first or after the first failed. A socket error ends it too: the held
// waits are answered with sorry, as at shutdown, and Run returns the
// error.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("locker: server already ran")
	}
	sock, err := s.listen()
	if err != nil {
		return err
	}
	s.sock = sock
	defer func() {
		sock.SetLinger(200 * time.Millisecond)
		sock.Close()
	}()
	close(s.ready)
	s.log.Info("serving", "endpoints", s.Endpoints(), "id", s.cfg.ID)
	// Deferred, so that every way out of the loop, a panic included,
	// answers the held waits before the socket closes.
	defer s.drain()
	err = s.loop(ctx)
	if !errors.Is(err, ErrServerClosed) {
		s.log.Error("server stopped", "err", err)
	}
	return err
}

// loop answers requests until ctx is done (ErrServerClosed) or the
// socket fails.
func (s *Server) loop(ctx context.Context) error {
	poller := zmq.NewPoller()
	poller.Add(s.sock, zmq.POLLIN)
	for {
		// Serve waiters before choosing how long to sleep: nextWake
		// only looks ahead to the next window boundary, so a boundary
		// crossed while the last batch was handled would otherwise
		// leave the queue heads unserved for a whole poll interval.
		now := s.now()
		s.serveWaiters(now)
		if _, err := poller.Poll(s.nextWake(now)); err != nil && !isRetryable(err) {
			return fmt.Errorf("locker: poll: %w", err)
		}
		if ctx.Err() != nil {
			return ErrServerClosed
		}
		s.serveWaiters(s.now())
		for i := 0; i < recvBatch; i++ {
			msg, user, err := s.recv(s.sock, s.frames, s.zapDomain != "")
			s.frames = msg
			if err != nil {
				if !isRetryable(err) {
					return fmt.Errorf("locker: recv: %w", err)
				}
				break
			}
			s.handle(msg, user)
		}
	}
}

// LocalEndpoint reports whether a ZeroMQ endpoint can only be reached from
// this host: ipc and inproc endpoints, and tcp on a loopback address.
func LocalEndpoint(ep string) bool {
	scheme, addr, ok := strings.Cut(ep, "://")
	if !ok {
		return false
	}
	switch scheme {
	case "ipc", "inproc":
		return true
	case "tcp":
	default:
		return false
	}
	host := addr
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		host = addr[:i]
	}
	if i := strings.IndexByte(host, ';'); i >= 0 { // "src;dst" form
		host = host[i+1:]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isRetryable(err error) bool {
	switch zmq.AsErrno(err) {
	case zmq.Errno(syscall.EAGAIN), zmq.Errno(syscall.EINTR):
		return true
	}
	return false
}

func (s *Server) listen() (*zmq.Socket, error) {
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return nil, fmt.Errorf("locker: socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			sock.SetLinger(0)
			sock.Close()
		}
	}()
	if err := sock.SetLinger(0); err != nil {
		return nil, err
	}
	if err := sock.SetMaxmsgsize(s.cfg.MaxMsgSize); err != nil {
		return nil, fmt.Errorf("locker: set max message size: %w", err)
	}
	if s.cfg.Security != nil {
		if err := s.cfg.Security(sock); err != nil {
			return nil, err
		}
		s.zapDomain = checkedDomain(sock)
	}
	var eps []string
	for _, ep := range s.cfg.Endpoints {
		if s.cfg.Security == nil && !LocalEndpoint(ep) {
			s.log.Warn("binding a non-loopback address without CURVE: anyone who can reach the port can spend the quota", "endpoint", ep)
		}
		if err := sock.Bind(ep); err != nil {
			return nil, fmt.Errorf("locker: bind %s: %w", ep, err)
		}
		last, err := sock.GetLastEndpoint()
		if err != nil {
			last = ep
		}
		eps = append(eps, last)
	}
	s.mu.Lock()
	s.endpoints = eps
	s.mu.Unlock()
	ok = true
	return sock, nil
}

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
	req  Request
	user string // the client's CURVE key, when requests are checked
	// start is when the server began deciding, for the Observer; zero
	// when there is none.
	start time.Time
}

// handlers answer the requests of each verb. Adding a verb adds a line
// here and its handler.
var handlers = [...]func(*Server, *request){
	VerbLegacy: (*Server).handleTake,
	VerbTake:   (*Server).handleTake,
	VerbWait:   (*Server).handleWait,
	VerbPing:   (*Server).handlePing,
	VerbStatus: (*Server).handleStatus,
	VerbCancel: (*Server).handleCancel,
}

// handle answers one request. msg[0] is the routing id added by ROUTER;
// the last frame is the body and everything before it is the envelope.
// user is the User-Id ZeroMQ gave the message.
func (s *Server) handle(msg [][]byte, user string) {
	if len(msg) < 2 {
		return
	}
	if len(msg)-1 > MaxFrames { // the routing id is ROUTER's, not the client's
		s.send(msg[:1], AppendError(s.buf[:0], errTooManyFrames))
		s.observe("", OutcomeError, time.Time{})
		return
	}
	r := request{msg: msg, env: msg[:len(msg)-1], user: user}
	if s.cfg.Observer != nil {
		r.start = time.Now()
	}
	var err error
	r.req, err = ParseRequest(msg[len(msg)-1])
	if err == nil && !s.userAllowed(user) {
		err = errKeyNotAllowed
	}
	if err != nil {
		s.replyError(&r, "", err)
		return
	}
	handlers[r.req.Verb](s, &r)
}

var (
	errTooManyFrames  = wireError(fmt.Sprintf("more than %d frames", MaxFrames))
	errKeyNotAllowed  = wireError("client key not allowed")
	errTooLargeToHold = wireError(fmt.Sprintf("request too large to hold: more than %d bytes of envelope and body", MaxHeldBytes))
)

func (s *Server) handlePing(r *request) {
	s.reply(r.env, append(append(s.buf[:0], wordPong+" "...), s.cfg.ID...))
}

func (s *Server) handleStatus(r *request) { s.reply(r.env, s.statusJSON()) }

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
		if maxWait > 0 && s.enqueue(cfg.Name, w) {
			return // answered, and observed, by serveWaiters
		}
	}
	s.replyDecision(r, cfg.Name, d)
}

// handleCancel withdraws the waits held on the key with the envelope of
// the cancel; each is answered with sorry, then the cancel with their
// number.
func (s *Server) handleCancel(r *request) {
	cfg, ok := s.counter.Key(string(r.req.Key))
	if !ok {
		s.replyError(r, "", wireError(fmt.Sprintf("unknown key %q", r.req.Key)))
		return
	}
	n := 0
	if q := s.waiters[cfg.Name]; q != nil && q.len() > 0 {
		s.packBuf = packFrames(s.packBuf[:0], r.env)
		n = s.cancel(cfg, q, s.packBuf, s.now())
	}
	s.reply(r.env, AppendCancelled(s.buf[:0], n))
}

// decide takes the request's tokens, unless waits are held on its key:
// held waits are served first come, first served, so a take or a new
// wait does not jump the queue. It answers the request itself, with an
// error, and reports false when the request cannot be granted ever.
func (s *Server) decide(r *request) (KeyConfig, Decision, time.Time, bool) {
	now := s.now()
	q := s.waiters[string(r.req.Key)]
	queued := q != nil && q.len() > 0
	cfg, d, err := s.counter.takeBytes(now, r.req.Key, r.req.N, !queued)
	switch {
	case errors.Is(err, ErrUnknownKey):
		s.replyError(r, "", wireError(fmt.Sprintf("unknown key %q", r.req.Key)))
		return cfg, d, now, false
	case err != nil:
		s.replyError(r, cfg.Name, wireError(fmt.Sprintf("N %d above the limit %d of key %s", r.req.N, cfg.Limit, cfg.Name)))
		return cfg, d, now, false
	}
	if queued {
		d = sorryAt(now, cfg.Window)
	}
	return cfg, d, now, true
}

func (s *Server) replyDecision(r *request, key string, d Decision) {
	s.reply(r.env, AppendDecision(s.buf[:0], d, r.req.Verb == VerbLegacy))
	out := OutcomeGo
	if !d.OK {
		out = OutcomeSorry
	}
	s.observe(key, out, r.start)
}

func (s *Server) replyError(r *request, key string, err error) {
	s.reply(r.env, AppendError(s.buf[:0], err))
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

type statusKey struct {
	Name     string `json:"name"`
	Limit    int64  `json:"limit"`
	WindowMS int64  `json:"window_ms"`
	Window   int64  `json:"window"`
	Granted  int64  `json:"granted"`
	Waiters  int64  `json:"waiters"`
}

func (s *Server) statusJSON() []byte {
	st := s.Stats()
	doc := map[string]any{"id": st.ID, "protocol": ProtocolVersion}
	keys := make([]statusKey, len(st.Keys))
	for i, k := range st.Keys {
		keys[i] = statusKey{Name: k.Name, Limit: k.Limit, WindowMS: k.KeyConfig.Window.Milliseconds(),
			Window: k.WindowIndex, Granted: k.Granted, Waiters: k.Waiters}
	}
	doc["keys"] = keys
	if s.cfg.StatusExtra != nil {
		for k, v := range s.cfg.StatusExtra() {
			if _, taken := doc[k]; !taken {
				doc[k] = v
			}
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return AppendError(nil, err)
	}
	return b
}
