package locker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	// directWait is the longest a caller that sent its request itself
	// (see Client.direct) waits on the socket for the answer before it
	// hands the call to the loop. It bounds how late such a caller sees
	// its context end.
	directWait = 5 * time.Millisecond
	// directSpin is the longest a caller waits for the loop to finish a
	// turn and let go of the socket when the loop has no other call.
	directSpin = 50 * time.Microsecond
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
	// Each is tcp://HOST:PORT (IPv6 addresses in brackets, as in
	// tcp://[::1]:7777), ipc://PATH or inproc://NAME; NewClient refuses
	// any other.
	Endpoints []string
	// Timeout is how long one attempt waits for its answer, beyond any
	// time the server may hold a wait. If zero, DefaultTimeout is used.
	Timeout time.Duration
	// Attempts is how many attempts Take, Ping, Status, Do, WaitMax and
	// each request of WaitUntil make before they return ErrTimeout. If
	// zero, DefaultAttempts is used. Wait retries until its context is
	// done.
	Attempts int
	// Hold is the longest one wait request is held, see DefaultHold. If
	// zero, DefaultHold is used.
	Hold time.Duration
	// FirstHold is the longest the first wait request of a Wait or
	// WaitUntil is held: a server that is down is noticed after FirstHold
	// plus Timeout. If zero, Hold is used.
	FirstHold time.Duration
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
// When no other call is in flight, a caller sends its request and
// receives the answer on the socket itself, which saves the hops to the
// loop goroutine and back; the loop then sleeps without looking at the
// socket, and a mutex hands the socket between them, so only one
// goroutine uses it at a time.
//
// A Client is safe for concurrent use by multiple goroutines. Close it to
// release its goroutines and sockets.
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	// own is held by whoever uses the socket and the loop's state (l):
	// the loop, except while it sleeps with nothing pending, or a caller
	// in Client.direct.
	own sync.Mutex
	l   *clientLoop
	// loopCalls is how many calls the loop has pending, as of its last
	// turn (or a caller's handoff).
	loopCalls atomic.Int64
	// active is how many calls are in Client.do: only a call alone in
	// it may use the socket directly.
	active atomic.Int64

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
	stats     loopStats
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
	// rehold, for a wait request, makes its body for a shorter hold: an
	// attempt sent again is held only until holdEnd, the end of the
	// first attempt's hold (set by the loop).
	rehold  func(hold time.Duration) []byte
	holdEnd time.Time
	// cancel is the request that withdraws this one when it is a wait
	// that may be held ("cancel KEY"), sent with the same id.
	cancel []byte
	// orphan, if not nil, is told the replies that come for this call
	// after its caller gave up (claimed first); it returns a request to
	// send in answer, with an id of its own, or nil. It is how a lock
	// granted to a caller that stopped waiting is released at once.
	orphan func(reply []byte) []byte
	// claimed is set by whoever takes the reply: the loop delivering it
	// or, for a call with orphan set, the caller giving up.
	claimed atomic.Bool
	// quick marks a request the server may hold but most often answers
	// at once (a lock acquisition): Client.direct may send it, and
	// hands it to the loop if it is held past directWait.
	quick bool
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
	for _, ep := range cfg.Endpoints {
		if err := checkEndpoint(ep); err != nil {
			return nil, err
		}
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
	if cfg.FirstHold == 0 {
		cfg.FirstHold = cfg.Hold
	}
	if cfg.Timeout < 0 || cfg.Attempts < 0 || cfg.Hold < 0 || cfg.FirstHold < 0 {
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
		c.log = slog.New(slog.DiscardHandler)
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

// Dial returns a client for endpoints with the default configuration. It
// refuses an endpoint a client cannot connect to (see
// ClientConfig.Endpoints), before any socket exists.
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
// DefaultMaxWait when it gives none. A wait request sent again, to the
// next endpoint, has its MAX_MS cut to what is left of the first one.
func (c *Client) Do(ctx context.Context, body []byte) (Reply, error) {
	cl := &call{body: body, attempts: c.cfg.Attempts}
	if r, err := parseRequest(body); err == nil && r.Verb == verbWait {
		cl.hold = r.MaxWait
		if cl.hold < 0 {
			cl.hold = DefaultMaxWait
		}
		cl.rehold = reholdWait(string(r.Key), r.N)
		cl.cancel = cancelBody(string(r.Key))
	}
	b, err := c.do(ctx, cl)
	if err != nil {
		return Reply{}, err
	}
	return ParseReply(b)
}

// begin checks that c and ctx are still live, and gives cl its id and
// reply channel.
func (c *Client) begin(ctx context.Context, cl *call) error {
	select {
	case <-c.done:
		return ErrClientClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cl.id = c.nextID.Add(1)
	cl.reply = make(chan result, 1)
	return nil
}

// do sends cl (its body, hold, attempts and rehold set) and waits for
// its answer. For a call with an orphan handler, when ctx ends either the
// caller gives up first, and the loop hands a late reply to the handler,
// or the reply was delivered, and the caller takes it.
func (c *Client) do(ctx context.Context, cl *call) ([]byte, error) {
	if err := c.begin(ctx, cl); err != nil {
		return nil, err
	}
	lone := c.active.Add(1) == 1
	defer c.active.Add(-1)
	// A lone caller sends the request itself; an acquisition the server
	// queues is handed to the loop after directWait.
	switch r, how := c.direct(ctx, cl, lone); how {
	case directAnswered:
		return r.body, r.err
	case directNotTried:
		c.submit(cl)
	case directHandedOff:
		// The loop has it, sent, in its pending calls.
	}
	var gaveUp error
	select {
	case r := <-cl.reply:
		return r.body, r.err
	case <-ctx.Done():
		gaveUp = ctx.Err()
	case <-c.done:
		gaveUp = ErrClientClosed
	}
	if cl.orphan == nil || cl.claimed.CompareAndSwap(false, true) {
		cl.gone.Store(true)
		return nil, gaveUp
	}
	r := <-cl.reply // delivered: it is in the channel or about to be
	return r.body, r.err
}

// Take asks for n tokens of key once: the decision says go or sorry.
// It returns a *ServerError when the server refuses the request (unknown
// key, n above the key's limit), ErrTimeout when no server answers, or
// ctx.Err().
func (c *Client) Take(ctx context.Context, key string, n int64) (Decision, error) {
	if err := checkArgs(key, n); err != nil {
		return Decision{}, err
	}
	return c.decide(ctx, &call{body: appendReq(nil, "take", key, n, -1), attempts: c.cfg.Attempts})
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

func (c *Client) decide(ctx context.Context, cl *call) (Decision, error) {
	b, err := c.do(ctx, cl)
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
		return errBadN
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
