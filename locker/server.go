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

	sock   *zmq.Socket
	buf    []byte
	frames [][]byte // reused by recvFrames
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
// first or after the first failed.
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

	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	for {
		// Serve waiters before choosing how long to sleep: nextWake
		// only looks ahead to the next window boundary, so a boundary
		// crossed while the last batch was handled would otherwise
		// leave the queue heads unserved for a whole poll interval.
		now := s.now()
		s.serveWaiters(now)
		timeout := s.nextWake(now)
		if _, err := poller.Poll(timeout); err != nil && !isRetryable(err) {
			return fmt.Errorf("locker: poll: %w", err)
		}
		if ctx.Err() != nil {
			s.drain()
			return ErrServerClosed
		}
		s.serveWaiters(s.now())
		for i := 0; i < recvBatch; i++ {
			msg, err := recvFrames(sock, s.frames)
			s.frames = msg
			if err != nil {
				if !isRetryable(err) {
					return fmt.Errorf("locker: recv: %w", err)
				}
				break
			}
			s.handle(msg)
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
	case zmq.Errno(11), zmq.Errno(4): // EAGAIN, EINTR
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
	if err := sock.SetIpv6(true); err != nil { // or tcp://[::1]:P fails to bind
		return nil, fmt.Errorf("locker: set ipv6: %w", err)
	}
	if err := sock.SetMaxmsgsize(s.cfg.MaxMsgSize); err != nil {
		return nil, fmt.Errorf("locker: set max message size: %w", err)
	}
	if s.cfg.Security != nil {
		if err := s.cfg.Security(sock); err != nil {
			return nil, err
		}
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

// handle answers one request. msg[0] is the routing id added by ROUTER;
// the last frame is the body and everything before it is the envelope.
func (s *Server) handle(msg [][]byte) {
	if len(msg) < 2 {
		return
	}
	if len(msg)-1 > MaxFrames { // the routing id is ROUTER's, not the client's
		s.send(msg[:1], AppendError(s.buf[:0], errTooManyFrames))
		s.observe("", OutcomeError, time.Time{})
		return
	}
	env, body := msg[:len(msg)-1], msg[len(msg)-1]
	var start time.Time
	if s.cfg.Observer != nil {
		start = time.Now()
	}
	req, err := ParseRequest(body)
	if err != nil {
		s.reply(env, AppendError(s.buf[:0], err))
		s.observe("", OutcomeError, start)
		return
	}
	switch req.Verb {
	case VerbPing:
		s.reply(env, append(append(s.buf[:0], wordPong+" "...), s.cfg.ID...))
		return
	case VerbStatus:
		s.reply(env, s.statusJSON())
		return
	}
	now := s.now()
	// Held waits are served first come, first served: a take or a new
	// wait does not jump the queue, so nothing is taken while one is held.
	q := s.waiters[string(req.Key)]
	queued := q != nil && q.len() > 0
	cfg, d, err := s.counter.takeBytes(now, req.Key, req.N, !queued)
	switch {
	case errors.Is(err, ErrUnknownKey):
		s.reply(env, AppendError(s.buf[:0], fmt.Errorf("unknown key %q", req.Key)))
		s.observe("", OutcomeError, start)
		return
	case err != nil:
		s.reply(env, AppendError(s.buf[:0], fmt.Errorf("N %d above the limit %d of key %s", req.N, cfg.Limit, cfg.Name)))
		s.observe(cfg.Name, OutcomeError, start)
		return
	}
	if queued {
		d = sorryAt(now, cfg.Window)
	}
	if !d.OK && req.Verb == VerbWait {
		maxWait := s.cfg.MaxWait
		if req.MaxWait >= 0 && req.MaxWait < maxWait {
			maxWait = req.MaxWait
		}
		// env aliases s.frames, which the next request reuses.
		env = append([][]byte(nil), env...)
		if maxWait > 0 && s.enqueue(cfg.Name, waiter{env: env, n: req.N, deadline: now.Add(maxWait)}) {
			return // answered, and observed, by serveWaiters
		}
	}
	s.reply(env, AppendDecision(s.buf[:0], d, req.Verb == VerbLegacy))
	out := OutcomeGo
	if !d.OK {
		out = OutcomeSorry
	}
	s.observe(cfg.Name, out, start)
}

var errTooManyFrames = fmt.Errorf("locker: more than %d frames", MaxFrames)

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
