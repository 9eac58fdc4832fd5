package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lockerd/lockerd/locker"
	zmq "github.com/pebbe/zmq4"
)

// Defaults.
const (
	// DefaultHeartbeat is the heartbeat interval: each member publishes
	// its full state this often, and is down after three silent ones.
	DefaultHeartbeat = 100 * time.Millisecond
	// DefaultFlush is how often changed counts are published.
	DefaultFlush = 2 * time.Millisecond
	// hwm is the high-water mark of the PUB and SUB sockets, in messages.
	// A member publishes about 1/DefaultFlush batches a second; 1000 is
	// two seconds of them. Beyond it ZeroMQ drops, which the cumulative
	// counts tolerate, rather than let memory grow behind a slow peer.
	hwm = 1000
	// queueLen is the length of the channels between the socket
	// goroutines and the merge loop.
	queueLen = 256
	// pollInterval bounds how long the SUB goroutine sleeps without
	// looking at its context.
	pollInterval = 50 * time.Millisecond
)

// Mode is how the members share a limit.
type Mode uint8

// Modes.
const (
	// ModeShared grants while the cluster-wide count a member knows is
	// under the limit; grants in flight between members may over-admit.
	ModeShared Mode = iota
	// ModeStrict never grants more than the limit in a window, cluster
	// wide: each member grants only from its own budget.
	ModeStrict
)

// String returns "shared" or "strict".
func (m Mode) String() string {
	if m == ModeStrict {
		return "strict"
	}
	return "shared"
}

// ParseMode parses "shared" or "strict".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "shared":
		return ModeShared, nil
	case "strict":
		return ModeStrict, nil
	}
	return 0, fmt.Errorf("peer: mode %q is not shared or strict", s)
}

// ErrNodeClosed is returned by Node.Run after its context is done.
var ErrNodeClosed = errors.New("peer: node closed")

// Config configures a Node. ID and Publish are required.
type Config struct {
	// ID is this member's id; members must have distinct ids. It should
	// be the server's id.
	ID string
	// Publish is the endpoint this member's PUB socket binds, spelled as
	// the other members list it in their Peers (in strict mode the sorted
	// list of all publish endpoints decides each member's share).
	Publish string
	// Peers are the publish endpoints of the members. The same list may
	// be given to every member: each ignores its own Publish endpoint.
	Peers []string
	// Mode is ModeShared (the zero value) or ModeStrict.
	Mode Mode
	// Heartbeat is the heartbeat interval. If zero, DefaultHeartbeat is
	// used.
	Heartbeat time.Duration
	// Flush is how often changed counts are published. If zero,
	// DefaultFlush is used.
	Flush time.Duration
	// Logger receives the node's log. If nil, nothing is logged.
	Logger *slog.Logger
	// Now returns the current time. If nil, time.Now is used. It must be
	// the clock the server uses.
	Now func() time.Time
	// DropRate, for tests, is the fraction of received messages dropped
	// on purpose, between 0 and 1.
	DropRate float64
	// Started, for tests, is when this member's run began, for its fence
	// (see locker.FederationConfig.Fence): it grants nothing in the window
	// it started in (strict: nor in the next). If zero, Now() at New is
	// used, as it must be in a real server.
	Started time.Time
	// PubSecurity, if not nil, is applied to the PUB socket before it
	// binds: a CURVE server whose allow list holds the members' keys, so
	// a stranger cannot read the stream.
	PubSecurity func(*zmq.Socket) error
	// SubSecurity, if not nil, is applied to the SUB socket before it
	// connects: a CURVE client that checks each member's server key, so
	// a stranger cannot publish fake grants.
	SubSecurity func(*zmq.Socket) error
}

// Node is one member of a federation of lockerd servers that share their
// limits over PUB/SUB. It reaches the server only through its Counter.
//
// Its methods are safe for concurrent use. A Node runs once.
type Node struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	others  []string
	members []string
	rank    int

	mu sync.Mutex // guards m
	m  *merger

	ready   chan struct{}
	started sync.Once
}

// New checks cfg and makes counter a member of the federation (see
// locker.Counter.EnableFederation); in strict mode, counter grants nothing
// in the current and the next window from now on, whatever an earlier run
// of this member did in them. Nothing is bound until Run.
func New(cfg Config, counter *locker.Counter) (*Node, error) {
	cfg, err := checkConfig(cfg)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, now: cfg.Now, ready: make(chan struct{})}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.now == nil {
		n.now = time.Now
	}
	n.members = append(n.members, cfg.Publish)
	for _, p := range cfg.Peers {
		if p != "" && !slices.Contains(n.members, p) {
			n.members = append(n.members, p)
			n.others = append(n.others, p)
		}
	}
	if len(n.members) > MaxMembers {
		return nil, fmt.Errorf("peer: %d members, at most %d", len(n.members), MaxMembers)
	}
	slices.Sort(n.members)
	n.rank = slices.Index(n.members, cfg.Publish)
	started := cfg.Started
	if started.IsZero() {
		started = n.now()
	}
	err = counter.EnableFederation(locker.FederationConfig{
		Strict: cfg.Mode == ModeStrict, Members: len(n.members), Rank: n.rank, Fence: started,
	})
	if err != nil {
		return nil, err
	}
	n.m = newMerger(cfg.ID, cfg.Mode == ModeStrict, n.members, n.rank, cfg.Heartbeat, counter, n.log)
	return n, nil
}

// checkConfig checks cfg and fills in the defaults.
func checkConfig(cfg Config) (Config, error) {
	if err := validID(cfg.ID); err != nil {
		return cfg, err
	}
	if cfg.Publish == "" {
		return cfg, errors.New("peer: no publish endpoint")
	}
	if cfg.Mode > ModeStrict {
		return cfg, fmt.Errorf("peer: unknown mode %d", cfg.Mode)
	}
	if cfg.Mode == ModeStrict && strings.Contains(cfg.Publish, "*") {
		return cfg, fmt.Errorf("peer: strict mode needs a publish endpoint spelled as the peers list it, not %q", cfg.Publish)
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Flush == 0 {
		cfg.Flush = DefaultFlush
	}
	if cfg.Heartbeat < 0 || cfg.Flush < 0 {
		return cfg, errors.New("peer: negative interval")
	}
	if cfg.DropRate < 0 || cfg.DropRate > 1 {
		return cfg, fmt.Errorf("peer: drop rate %v not in 0..1", cfg.DropRate)
	}
	return cfg, nil
}

// Ready returns a channel that is closed once the PUB socket is bound.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Run binds the PUB socket, subscribes to the peers and exchanges counts
// until ctx is done; then it closes both sockets and returns
// ErrNodeClosed. It returns another error if a socket cannot be set up,
// and at once if called a second time.
func (n *Node) Run(ctx context.Context) error {
	first := false
	n.started.Do(func() { first = true })
	if !first {
		return errors.New("peer: node already ran")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	out := make(chan []byte, queueLen)
	in := make(chan *Message, queueLen)
	bound := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); n.publish(ctx, out, bound) }()
	if err := <-bound; err != nil {
		return err
	}
	subErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			// Decoding what peers send must not crash the process: a
			// panic ends Run with an error, as a socket failure does.
			if r := recover(); r != nil {
				subErr <- fmt.Errorf("peer: subscriber panic: %v", r)
			}
		}()
		subErr <- n.subscribe(ctx, in)
	}()
	close(n.ready)
	n.log.Info("federation started", "id", n.cfg.ID, "mode", n.cfg.Mode.String(), "publish", n.cfg.Publish,
		"peers", n.others, "rank", n.rank, "members", len(n.members))

	flush := time.NewTicker(n.cfg.Flush)
	defer flush.Stop()
	hb := time.NewTicker(n.cfg.Heartbeat)
	defer hb.Stop()
	s := &sender{n: n, out: out}
	send := s.send
	n.mu.Lock()
	send(n.m.heartbeat(n.now()))
	n.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ErrNodeClosed
		case err := <-subErr:
			if ctx.Err() != nil { // both ended with ctx
				return ErrNodeClosed
			}
			cancel()
			if err == nil {
				err = errors.New("peer: subscriber stopped")
			}
			return err
		case m := <-in:
			n.receive(m, in, send)
		case <-flush.C:
			n.mu.Lock()
			send(n.m.flush(n.now()))
			n.mu.Unlock()
		case <-hb.C:
			n.mu.Lock()
			send(n.m.heartbeat(n.now()))
			n.mu.Unlock()
		}
	}
}

// sender encodes messages and queues them for the PUB goroutine; it
// requires that n.mu is held.
type sender struct {
	n   *Node
	out chan<- []byte
	buf []byte
}

// send queues msgs, counting those the queue has no room for.
func (s *sender) send(msgs []*Message) {
	for _, m := range msgs {
		b, err := Encode(s.buf[:0], m)
		if err != nil {
			s.n.log.Error("encode", "err", err)
			continue
		}
		select {
		case s.out <- slices.Clone(b):
		default:
			s.n.m.dropped++
		}
		s.buf = b
	}
}

// receive folds m and whatever else is queued on in into the state, under
// one lock.
func (n *Node) receive(m *Message, in <-chan *Message, send func([]*Message)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	newcomer := n.m.handle(n.now(), m)
	for i, more := 0, true; more && i < queueLen; i++ {
		select {
		case m = <-in:
			newcomer = n.m.handle(n.now(), m) || newcomer
		default:
			more = false
		}
	}
	if newcomer {
		// A member that (re)joined learns this one's state now rather
		// than at the next heartbeat.
		send(n.m.heartbeat(n.now()))
	}
}

// publish owns the PUB socket: it binds it, reports the result on bound,
// and sends what arrives on out until ctx is done.
func (n *Node) publish(ctx context.Context, out <-chan []byte, bound chan<- error) {
	sock, err := zmq.NewSocket(zmq.PUB)
	if err != nil {
		bound <- fmt.Errorf("peer: socket: %w", err)
		return
	}
	defer sock.Close()
	for _, set := range []func() error{
		func() error { return sock.SetLinger(0) },
		func() error { return sock.SetIpv6(true) }, // for tcp://[::1]:P
		func() error { return sock.SetSndhwm(hwm) },
	} {
		if err := set(); err != nil {
			bound <- fmt.Errorf("peer: pub socket option: %w", err)
			return
		}
	}
	if n.cfg.PubSecurity != nil {
		if err := n.cfg.PubSecurity(sock); err != nil {
			bound <- fmt.Errorf("peer: pub socket security: %w", err)
			return
		}
	}
	if err := sock.Bind(n.cfg.Publish); err != nil {
		bound <- fmt.Errorf("peer: bind %s: %w", n.cfg.Publish, err)
		return
	}
	bound <- nil
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-out:
			if _, err := sock.SendBytes(b, zmq.DONTWAIT); err != nil {
				n.log.Debug("publish failed", "err", err)
			}
		}
	}
}

// subscribe owns the SUB socket: it connects to every other member and
// hands decoded messages to in until ctx is done.
func (n *Node) subscribe(ctx context.Context, in chan<- *Message) error {
	sock, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		return fmt.Errorf("peer: socket: %w", err)
	}
	defer sock.Close()
	if err := n.setupSub(sock); err != nil {
		return err
	}
	r := &receiver{n: n, sock: sock, in: in}
	if n.cfg.DropRate > 0 {
		r.rng = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	}
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	for {
		if _, err := poller.Poll(pollInterval); err != nil && !retryable(err) {
			return fmt.Errorf("peer: poll: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err := r.drain(ctx); err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// setupSub sets the SUB socket's options and connects it to the others.
func (n *Node) setupSub(sock *zmq.Socket) error {
	for _, set := range []func() error{
		func() error { return sock.SetLinger(0) },
		func() error { return sock.SetIpv6(true) }, // for tcp://[::1]:P
		func() error { return sock.SetRcvhwm(hwm) },
		// Retry a member that is not up yet often at first, so that it
		// is heard soon after it starts.
		func() error { return sock.SetReconnectIvl(10 * time.Millisecond) },
		func() error { return sock.SetReconnectIvlMax(100 * time.Millisecond) },
		func() error { return sock.SetMaxmsgsize(MaxMessageSize) },
		func() error { return sock.SetSubscribe("") },
	} {
		if err := set(); err != nil {
			return fmt.Errorf("peer: sub socket option: %w", err)
		}
	}
	if n.cfg.SubSecurity != nil {
		if err := n.cfg.SubSecurity(sock); err != nil {
			return fmt.Errorf("peer: sub socket security: %w", err)
		}
	}
	for _, p := range n.others {
		if err := sock.Connect(p); err != nil {
			return fmt.Errorf("peer: connect %s: %w", p, err)
		}
	}
	return nil
}

// receiver reads the SUB socket; it is owned by the SUB goroutine.
type receiver struct {
	n    *Node
	sock *zmq.Socket
	in   chan<- *Message
	rng  *rand.Rand // drops on purpose when not nil
	bad  int        // messages that did not decode
}

// drain hands every message waiting on the socket to r.in, until there
// is none or ctx is done.
func (r *receiver) drain(ctx context.Context) error {
	for {
		b, err := r.sock.RecvBytes(zmq.DONTWAIT)
		if err != nil {
			if !retryable(err) {
				return fmt.Errorf("peer: recv: %w", err)
			}
			return nil
		}
		if r.rng != nil && r.rng.Float64() < r.n.cfg.DropRate {
			continue
		}
		m, err := Decode(b)
		if err != nil {
			r.bad++
			if r.bad&(r.bad-1) == 0 { // log the 1st, 2nd, 4th, ... only
				r.n.log.Warn("bad peer message", "err", err, "count", r.bad)
			}
			continue
		}
		select {
		case r.in <- m:
		case <-ctx.Done():
			return nil
		}
	}
}

// retryable reports whether err only says "not now" (EAGAIN) or
// "interrupted" (EINTR).
func retryable(err error) bool {
	switch zmq.AsErrno(err) {
	case zmq.Errno(syscall.EAGAIN), zmq.Errno(syscall.EINTR):
		return true
	}
	return false
}
