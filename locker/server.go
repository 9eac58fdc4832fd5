package locker

import (
	"context"
	"errors"
	"fmt"
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
	// sweepEvery is how often, on the server's clock, the loop starts a
	// sweep of the idle keys made on demand. A sweep looks at every live
	// key, sweepBatch of them at a time (Counter.SweepSomeAt), at most
	// one batch every sweepPace of real time: at a million live keys a
	// batch takes about a millisecond, so a sweep costs some percent of
	// a core for a few seconds and never holds a request up for long.
	sweepEvery = 5 * time.Second
	sweepBatch = 4096
	sweepPace  = 10 * time.Millisecond
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
	// the template's name for a key made on demand (never the requested
	// name, so that clients cannot make labels), or "" when the request
	// named no configured key. elapsed is the time
	// the server spent deciding, not the time a wait was held.
	ObserveRequest(key string, outcome Outcome, elapsed time.Duration)
}

// KeyRefusalObserver is an Observer that is also told about each request
// refused because it would make one key on demand more than the counter's
// cap (Counter.SetMaxKeys). The server checks its Observer for it.
type KeyRefusalObserver interface {
	// ObserveKeyRefused reports one refusal; template is the name of
	// the template the key matched (tenant:*), never the requested key.
	ObserveKeyRefused(template string)
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
	// MaxKeys caps the keys made on demand from templates that live at
	// once (see Counter.SetMaxKeys). If zero, DefaultMaxKeys is used.
	MaxKeys int
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
	// binds (for example the Apply method of a curve.Server).
	Security func(*zmq.Socket) error
	// ClientAllowed, if not nil, is asked about the User-Id that the
	// ZAP handler gave the connection of every request (with CURVE, the
	// client's public key; "" when the connection has none), as the
	// request arrives and again each time a held wait is served. A
	// request or held wait of a User-Id it rejects is answered with the
	// error "client key not allowed", so a key removed from an allow
	// list is refused on connections already open. Set it with Security,
	// for example to the Allowed method of the same curve.Server. It is
	// called from the server loop and must not block.
	ClientAllowed func(userID string) bool
	// Locks configures the lock table (see LockTableConfig). The zero
	// value serves mutexes with the defaults, and grants nothing for
	// the grace period after Run starts (the maximum TTL).
	Locks LockTableConfig
	// Federated makes the server answer every lock request with an
	// error: locks are served by a single lockerd.
	Federated bool
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
	cur     request  // the request being handled
	// poll bounds how long the loop sleeps: pollInterval, or what a
	// test sets.
	poll time.Duration
	// recv receives one message; tests replace it to inject errors.
	recv func(sock *zmq.Socket, frames [][]byte, withUser bool) ([][]byte, string, error)
	// locks is the lock table and its queued acquisitions, made by
	// Run; owned by the loop goroutine.
	locks *lockServer
	// refused is the Observer, if it counts refused keys.
	refused KeyRefusalObserver
	// nextSweep is when, on the server's clock, the loop next starts a
	// sweep of idle keys made on demand; sweeping is set while one runs,
	// and lastBatch is when, in real time, it last swept a batch. Owned
	// by the loop goroutine.
	nextSweep time.Time
	sweeping  bool
	lastBatch time.Time
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
	if cfg.MaxKeys < 0 {
		return nil, fmt.Errorf("locker: negative max keys %d", cfg.MaxKeys)
	}
	if cfg.MaxMsgSize == 0 {
		cfg.MaxMsgSize = DefaultMaxMsgSize
	}
	c, err := NewCounter(cfg.Keys)
	if err != nil {
		return nil, err
	}
	c.SetMaxKeys(cfg.MaxKeys)
	if _, err := newLockTable(cfg.Locks, time.Time{}); err != nil {
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
		poll:    pollInterval,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.refused, _ = cfg.Observer.(KeyRefusalObserver)
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
	locks, err := newLockServer(s.cfg.Locks, s.now(), s.cfg.Observer)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.locks = locks
	s.mu.Unlock()
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
		s.serveLocks(now)
		s.sweep(now)
		if _, err := poller.Poll(s.lockWake(now, s.nextWake(now))); err != nil && !isRetryable(err) {
			return fmt.Errorf("locker: poll: %w", err)
		}
		if ctx.Err() != nil {
			return ErrServerClosed
		}
		now = s.now()
		s.serveWaiters(now)
		s.serveLocks(now)
		for i := 0; i < recvBatch; i++ {
			msg, user, err := s.recv(s.sock, s.frames, s.cfg.ClientAllowed != nil)
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

// sweep drops the idle keys made on demand without held waits, so that
// memory comes back when traffic stops: a sweep starts every sweepEvery
// of the server's clock and goes through the live keys a batch at a time
// (see sweepEvery). Between sweeps, making a key drops a few idle ones
// (see Counter.SweepAt).
func (s *Server) sweep(now time.Time) {
	if !s.sweeping {
		if now.Before(s.nextSweep) {
			return
		}
		s.nextSweep = now.Add(sweepEvery)
		s.sweeping = true
	}
	if real := time.Now(); real.Sub(s.lastBatch) >= sweepPace {
		s.lastBatch = real
		_, done := s.counter.SweepSomeAt(now, s.busy, sweepBatch)
		s.sweeping = !done
	}
}

// busy reports whether waits are held on key. It is called by the
// counter's sweep, from the loop goroutine that owns the queues.
func (s *Server) busy(key string) bool {
	q := s.waiters[key]
	return q != nil && q.len() > 0
}

// localEndpoint reports whether a ZeroMQ endpoint can only be reached from
// this host: ipc and inproc endpoints, and tcp on a loopback address.
func localEndpoint(ep string) bool {
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
		if s.cfg.Security == nil && !localEndpoint(ep) {
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
