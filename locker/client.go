package locker

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// Client defaults.
const (
	// DefaultTimeout is how long a client waits for one attempt's answer
	// (beyond the time a wait request may be held) before it discards its
	// socket and tries again, on the next endpoint.
	DefaultTimeout = time.Second
	// DefaultAttempts is how many attempts Take, Ping, Status and Do make.
	DefaultAttempts = 3
	// DefaultHold is the longest one wait request that Wait sends is held
	// by the server; Wait sends another when it expires. It bounds how
	// long a client takes to notice a server that died while holding it.
	DefaultHold = 5 * time.Second
	// clientTick bounds how long the client's loop sleeps without looking
	// at abandoned calls and Close.
	clientTick = 100 * time.Millisecond
	// cancelLinger is how long a closed socket may still try to send the
	// cancels of the waits it held.
	cancelLinger = 100 * time.Millisecond
	// yieldBelow is the most answers in one turn after which the loop
	// yields to the callers it answered before it sleeps.
	yieldBelow = 4
)

// Client errors.
var (
	// ErrTimeout is returned when no server answered within the
	// client's attempts.
	ErrTimeout = errors.New("locker: no answer from server")
	// ErrClientClosed is returned for calls on a closed Client, and for
	// calls in flight when it is closed.
	ErrClientClosed = errors.New("locker: client closed")
)

// ServerError is an "error MESSAGE" reply from the server: the request was
// understood to be wrong (unknown key, N above the limit, ...). Retrying it
// will not help.
type ServerError struct {
	Msg string
}

// Error implements error.
func (e *ServerError) Error() string { return "locker: server: " + e.Msg }

// ClientConfig configures a Client. Only Endpoints is required.
type ClientConfig struct {
	// Endpoints are the servers, tried in order: the client talks to one
	// at a time and fails over to the next when an attempt times out.
	Endpoints []string
	// Timeout is how long one attempt waits for its answer, beyond any
	// time the server may hold a wait. If zero, DefaultTimeout is used.
	Timeout time.Duration
	// Attempts is how many attempts Take, Ping, Status and Do make before
	// they return ErrTimeout. If zero, DefaultAttempts is used. Wait
	// retries until its context is done.
	Attempts int
	// Hold is the longest one wait request is held, see DefaultHold. If
	// zero, DefaultHold is used.
	Hold time.Duration
	// Logger receives the client's log. If nil, nothing is logged.
	Logger *slog.Logger
	// Security, if not nil, is applied to each new socket before it
	// connects (for example CURVE).
	Security func(*zmq.Socket) error
}

// Client talks to one or several lockerd servers. It multiplexes the
// requests of many goroutines over one DEALER socket, with request ids, so
// many requests are in flight at once; one goroutine owns that socket.
// When an attempt gets no answer in time the client discards the socket,
// connects to the next endpoint and sends every unanswered request again
// (the Lazy Pirate pattern). A request answered twice in that way may have
// taken tokens twice: the server then counts more than was used, never
// less.
//
// A Client is safe for concurrent use by multiple goroutines. Close it to
// release its goroutines and sockets.
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	mu       sync.Mutex
	incoming []*call
	wk       *wakeup
	// sleeping is set while the loop is (about to be) blocked in poll:
	// only then does a new call need to wake it.
	sleeping atomic.Bool

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	nextID    atomic.Uint64
}

// call is one request in flight.
type call struct {
	id       uint64
	body     []byte
	hold     time.Duration // how long the server may hold it
	attempts int           // attempts left; 0 means until abandoned
	deadline time.Time     // of the current attempt, set by the loop
	reply    chan result   // buffered, 1
	gone     atomic.Bool   // the caller stopped waiting
	// cancel is the request that withdraws this one when it is a wait
	// that may be held ("cancel KEY"), sent with the same id.
	cancel []byte
}

type result struct {
	body []byte
	err  error
}

// NewClient returns a client for cfg. It does not wait for a server: a
// request sent before any server is up is delivered once one is.
func NewClient(cfg ClientConfig) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("locker: no endpoints")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.Hold == 0 {
		cfg.Hold = DefaultHold
	}
	if cfg.Timeout < 0 || cfg.Attempts < 0 || cfg.Hold < 0 {
		return nil, errors.New("locker: negative timeout, attempts or hold")
	}
	wk, err := newWakeup()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:  cfg,
		log:  cfg.Logger,
		wk:   wk,
		done: make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ready := make(chan error, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.loop(ready)
	}()
	if err := <-ready; err != nil {
		c.wg.Wait()
		wk.close()
		return nil, err
	}
	wk.start(c)
	return c, nil
}

// Dial returns a client for endpoints with the default configuration.
func Dial(endpoints ...string) (*Client, error) {
	return NewClient(ClientConfig{Endpoints: endpoints})
}

// Close stops the client. Calls in flight return ErrClientClosed. Close
// is idempotent and always returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.wk.wake() // let a sleeping loop see done now
		c.wg.Wait()
		c.wk.close()
	})
	c.wg.Wait()
	return nil
}

// submit queues cl for the loop.
func (c *Client) submit(cl *call) {
	c.mu.Lock()
	c.incoming = append(c.incoming, cl)
	c.mu.Unlock()
	// A busy loop picks cl up on its next turn; waking it costs a
	// system call, so only do it when it sleeps. The loop sets sleeping
	// before it looks at incoming a last time, so either it sees cl or
	// this sees sleeping.
	if c.sleeping.Swap(false) {
		c.wk.wake()
	}
}

func (c *Client) noIncoming() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.incoming) == 0
}

// Do sends body as one request and returns the parsed reply. It makes up
// to ClientConfig.Attempts attempts, and returns ctx.Err() when ctx ends
// first. Each attempt waits ClientConfig.Timeout for its answer, plus, for
// a wait request, the time the server may hold it: its MAX_MS, or
// DefaultMaxWait when it gives none.
func (c *Client) Do(ctx context.Context, body []byte) (Reply, error) {
	var hold time.Duration
	if r, err := ParseRequest(body); err == nil && r.Verb == VerbWait {
		hold = r.MaxWait
		if hold < 0 {
			hold = DefaultMaxWait
		}
	}
	b, err := c.do(ctx, body, hold, c.cfg.Attempts)
	if err != nil {
		return Reply{}, err
	}
	return ParseReply(b)
}

func (c *Client) do(ctx context.Context, body []byte, hold time.Duration, attempts int) ([]byte, error) {
	select {
	case <-c.done:
		return nil, ErrClientClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cl := &call{id: c.nextID.Add(1), body: body, hold: hold, attempts: attempts, reply: make(chan result, 1)}
	if r, err := ParseRequest(body); err == nil && r.Verb == VerbWait {
		cl.cancel = append([]byte("cancel "), r.Key...)
	}
	c.submit(cl)
	select {
	case r := <-cl.reply:
		return r.body, r.err
	case <-ctx.Done():
		cl.gone.Store(true)
		return nil, ctx.Err()
	case <-c.done:
		cl.gone.Store(true)
		return nil, ErrClientClosed
	}
}

// Take asks for n tokens of key once: the decision says go or sorry.
// It returns a *ServerError when the server refuses the request (unknown
// key, n above the key's limit), ErrTimeout when no server answers, or
// ctx.Err().
func (c *Client) Take(ctx context.Context, key string, n int64) (Decision, error) {
	if err := checkArgs(key, n); err != nil {
		return Decision{}, err
	}
	return c.decide(ctx, appendReq(nil, "take", key, n, -1), 0, c.cfg.Attempts)
}

// WaitMax sends one wait request for n tokens of key that the server may
// hold for up to max (capped by the server's own maximum): the decision is
// go as soon as the tokens are granted, or sorry when max passes first.
// If ctx ends first, the client asks the server to cancel the wait.
func (c *Client) WaitMax(ctx context.Context, key string, n int64, max time.Duration) (Decision, error) {
	if err := checkArgs(key, n); err != nil {
		return Decision{}, err
	}
	if max < 0 {
		return Decision{}, errors.New("locker: negative max wait")
	}
	return c.decide(ctx, appendReq(nil, "wait", key, n, max), max, c.cfg.Attempts)
}

// Wait blocks until n tokens of key are granted, and returns the go
// decision, or until ctx is done, and returns ctx.Err(); the client then
// asks the server to cancel the wait it holds, so that its tokens go to
// the next waiter. It holds wait
// requests on the server, so it is answered as soon as a window opens; it
// never polls. It returns a *ServerError at once for a request the server
// refuses. While no server answers it keeps trying until ctx is done.
func (c *Client) Wait(ctx context.Context, key string, n int64) (Decision, error) {
	if err := checkArgs(key, n); err != nil {
		return Decision{}, err
	}
	backoff := 10 * time.Millisecond
	for {
		hold := c.cfg.Hold
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl); left < hold {
				hold = left.Truncate(time.Millisecond)
			}
		}
		if hold <= 0 {
			// Under a millisecond left: one last look, then wait out ctx.
			if d, err := c.decide(ctx, appendReq(nil, "take", key, n, -1), 0, 1); err == nil && d.OK {
				return d, nil
			}
			<-ctx.Done()
			return Decision{}, ctx.Err()
		}
		start := time.Now()
		b, err := c.do(ctx, appendReq(nil, "wait", key, n, hold), hold, 0)
		if err != nil {
			return Decision{}, err
		}
		d, full, err := toDecision(b)
		if err != nil || d.OK {
			return d, err
		}
		// A sorry that came before the hold ran out (a full queue, a
		// server with a lower cap, or a seed server that does not hold):
		// wait for the hint, or back off, before asking again.
		pause := time.Duration(0)
		if time.Since(start) < hold {
			pause = d.RetryAfter
			if !full || pause <= 0 {
				pause, backoff = backoff, min(2*backoff, time.Second)
			}
		}
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return Decision{}, ctx.Err()
			case <-t.C:
			}
		}
	}
}

// Ping asks the server for its id. It spends no token.
func (c *Client) Ping(ctx context.Context) (string, error) {
	r, err := c.Do(ctx, []byte("ping"))
	if err != nil {
		return "", err
	}
	switch r.Kind {
	case ReplyPong:
		return r.Text, nil
	case ReplyError:
		return "", &ServerError{Msg: r.Text}
	}
	return "", fmt.Errorf("%w: not a pong", ErrBadReply)
}

// Status is the document a server returns for a status request.
type Status struct {
	ID       string      `json:"id"`
	Protocol int         `json:"protocol"`
	Keys     []StatusKey `json:"keys"`
	// Raw is the whole document, including fields this version of the
	// client does not know (such as federation peers).
	Raw json.RawMessage `json:"-"`
}

// StatusKey is one key in a Status.
type StatusKey struct {
	Name     string `json:"name"`
	Limit    int64  `json:"limit"`
	WindowMS int64  `json:"window_ms"`
	Window   int64  `json:"window"`
	Granted  int64  `json:"granted"`
	Waiters  int64  `json:"waiters"`
}

// Status asks the server for its status document.
func (c *Client) Status(ctx context.Context) (Status, error) {
	r, err := c.Do(ctx, []byte("status"))
	if err != nil {
		return Status{}, err
	}
	switch r.Kind {
	case ReplyStatus:
	case ReplyError:
		return Status{}, &ServerError{Msg: r.Text}
	default:
		return Status{}, fmt.Errorf("%w: not a status document", ErrBadReply)
	}
	var st Status
	if err := json.Unmarshal([]byte(r.Text), &st); err != nil {
		return Status{}, fmt.Errorf("locker: status: %w", err)
	}
	st.Raw = json.RawMessage(r.Text)
	return st, nil
}

func (c *Client) decide(ctx context.Context, body []byte, hold time.Duration, attempts int) (Decision, error) {
	b, err := c.do(ctx, body, hold, attempts)
	if err != nil {
		return Decision{}, err
	}
	d, _, err := toDecision(b)
	return d, err
}

func toDecision(b []byte) (Decision, bool, error) {
	r, err := ParseReply(b)
	if err != nil {
		return Decision{}, false, err
	}
	switch r.Kind {
	case ReplyGo, ReplySorry:
		return r.Decision, r.Full, nil
	case ReplyError:
		return Decision{}, false, &ServerError{Msg: r.Text}
	}
	return Decision{}, false, fmt.Errorf("%w: %.64q", ErrBadReply, b)
}

func checkArgs(key string, n int64) error {
	if err := ValidKeyName(key); err != nil {
		return err
	}
	if n < 1 || n > MaxLimit {
		return ErrBadN
	}
	return nil
}

// appendReq appends "VERB KEY N [MAX_MS]"; max < 0 leaves MAX_MS out.
func appendReq(buf []byte, verb, key string, n int64, max time.Duration) []byte {
	buf = append(buf, verb...)
	buf = append(buf, ' ')
	buf = append(buf, key...)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, n, 10)
	if max >= 0 {
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, max.Milliseconds(), 10)
	}
	return buf
}

// loop owns the DEALER socket and waits on it and on the wakeup.
func (c *Client) loop(ready chan<- error) {
	p, err := newLoopPoller(c.wk)
	if err != nil {
		ready <- err
		return
	}
	defer p.close()
	l := &clientLoop{c: c, pending: make(map[uint64]*call)}
	if err := l.connect(); err != nil {
		ready <- err
		return
	}
	defer func() {
		p.unwatch()
		l.sock.Close()
	}()
	if err := p.watch(l.sock); err != nil {
		ready <- err
		return
	}
	ready <- nil

	var idb [8]byte
	var spare []*call // the incoming slice handed back for reuse
	for {
		reconnect := false
		delivered := 0
		for !reconnect {
			if delivered > 0 && delivered <= yieldBelow && c.noIncoming() {
				// About to sleep with a few callers just answered: let
				// them run on this thread first, instead of leaving them
				// to another thread while this one sleeps in a system
				// call. Their next requests then find the loop awake,
				// with no wake-up to pay. With many callers the loop is
				// better off sending their requests in batches.
				runtime.Gosched()
			}
			c.sleeping.Store(true)
			if c.noIncoming() {
				p.wait(l.timeout())
			}
			c.sleeping.Store(false)
			select {
			case <-c.done:
				l.cancelWaits()
				l.failAll(ErrClientClosed)
				return
			default:
			}
			c.mu.Lock()
			in := c.incoming
			c.incoming = spare[:0]
			c.mu.Unlock()
			now := time.Now()
			for i, cl := range in {
				l.pending[cl.id] = cl
				l.send(cl, now, &idb)
				in[i] = nil
			}
			spare = in
			delivered = 0
			for i := 0; i < recvBatch; i++ {
				msg, err := recvFrames(l.sock, l.frames)
				l.frames = msg
				if err != nil {
					break
				}
				if l.deliver(msg) {
					delivered++
				}
			}
			reconnect = l.expire(time.Now())
		}
		// The waits are sent again on the new socket: withdraw them
		// from the server of the old one, in case it still holds them.
		l.cancelWaits()
		p.unwatch()
		l.sock.Close()
		l.next = (l.next + 1) % len(c.cfg.Endpoints)
		if err := l.connect(); err != nil {
			c.log.Error("client reconnect", "err", err)
			l.failAll(err)
			// Keep a socket so the loop can go on; try again later.
			for l.connect() != nil {
				select {
				case <-c.done:
					return
				case <-time.After(clientTick):
				}
			}
		}
		if err := p.watch(l.sock); err != nil {
			// Without the watch the loop still runs, on its tick.
			c.log.Error("client watch", "err", err)
		}
		now := time.Now()
		for _, cl := range l.pending {
			l.send(cl, now, &idb)
		}
	}
}

// clientLoop is the state owned by the client's loop goroutine.
type clientLoop struct {
	c       *Client
	sock    *zmq.Socket
	next    int // index of the endpoint to use
	pending map[uint64]*call
	frames  [][]byte // reused by recvFrames
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

func (l *clientLoop) send(cl *call, now time.Time, idb *[8]byte) {
	cl.deadline = now.Add(cl.hold + l.c.cfg.Timeout)
	l.sendBody(cl.id, cl.body, idb) // a lost one counts as a lost attempt when it times out
}

// sendBody sends [id, "", body].
func (l *clientLoop) sendBody(id uint64, body []byte, idb *[8]byte) {
	binary.BigEndian.PutUint64(idb[:], id)
	if _, err := l.sock.SendBytes(idb[:], zmq.SNDMORE|zmq.DONTWAIT); err != nil {
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
	var idb [8]byte
	sent := false
	for _, cl := range l.pending {
		if cl.cancel != nil {
			l.sendBody(cl.id, cl.cancel, &idb)
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
		return false // answered already, or abandoned
	}
	delete(l.pending, id)
	cl.reply <- result{body: msg[len(msg)-1]}
	return true
}

// expire drops abandoned calls and ends the attempts that timed out. It
// reports whether one did, so the socket should be replaced.
func (l *clientLoop) expire(now time.Time) bool {
	timedOut := false
	var idb [8]byte
	for id, cl := range l.pending {
		if cl.gone.Load() {
			delete(l.pending, id)
			if cl.cancel != nil { // a wait the server may hold
				l.sendBody(id, cl.cancel, &idb)
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
