package locker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// Lock errors.
var (
	// ErrLockBusy is wrapped by the error of an acquisition that was not
	// granted: a *LockBusyError says who holds the lock.
	ErrLockBusy = errors.New("locker: lock busy")
	// ErrLeaseExpired: the lease ended without being renewed in time.
	ErrLeaseExpired = errors.New("locker: lease expired")
	// ErrLeaseRevoked: the lease ended after a revocation.
	ErrLeaseRevoked = errors.New("locker: lease revoked")
	// ErrLeaseBroken: the server no longer knows the lease: it was
	// broken by an operator, or the server restarted.
	ErrLeaseBroken = errors.New("locker: lease broken")
	// ErrNoLocks: the server does not serve locks (an older lockerd,
	// which answers the lock verbs as legacy requests).
	ErrNoLocks = errors.New("locker: server does not serve locks")
)

// LockBusyError is the refusal of an acquisition.
type LockBusyError struct {
	Name string
	// Owner is the owner of the lock's oldest holder, "" if none.
	Owner string
	// FreeIn is when the lock could be free if no holder renews: a
	// hint, not a reservation.
	FreeIn           time.Duration
	Holders, Waiters int
}

// Error implements error.
func (e *LockBusyError) Error() string {
	owner := e.Owner
	if owner == "" {
		owner = "-"
	}
	return fmt.Sprintf("locker: lock %s busy: %d holders (oldest %s), %d waiters, could be free in %s",
		e.Name, e.Holders, owner, e.Waiters, e.FreeIn)
}

// Is makes errors.Is(err, ErrLockBusy) true.
func (e *LockBusyError) Is(target error) bool { return target == ErrLockBusy }

// LockOptions are the options of an acquisition.
type LockOptions struct {
	// TTL is the lease asked for; zero means the server's default. The
	// server clamps it to its bounds.
	TTL time.Duration
	// Shared asks for a shared (read) hold: shared holders hold a lock
	// together up to its capacity. Otherwise the hold is exclusive.
	Shared bool
	// Owner names the holder in listings; empty means "host:pid".
	Owner string
}

// lockHold is the longest one acquisition is held by the server before
// Lock sends another; the server's own maximum may cut it.
const lockHold = DefaultMaxLockWait

// DefaultLockOwner returns "host:pid", cut to maxLockOwnerLen bytes, with
// anything outside printable ASCII replaced by '_'. It is worked out once
// per process: a hostname changed later is not seen.
func DefaultLockOwner() string { return defaultLockOwner() }

var defaultLockOwner = sync.OnceValue(func() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	pid := ":" + strconv.Itoa(os.Getpid())
	b := []byte(host)
	for i, c := range b {
		if c <= ' ' || c > '~' {
			b[i] = '_'
		}
	}
	if len(b)+len(pid) > maxLockOwnerLen {
		b = b[:maxLockOwnerLen-len(pid)]
	}
	return string(b) + pid
})

func (o LockOptions) request(name string, maxWait time.Duration) (lockRequest, error) {
	if err := ValidKeyName(name); err != nil {
		return lockRequest{}, err
	}
	if o.TTL < 0 {
		return lockRequest{}, errors.New("locker: negative lock TTL")
	}
	owner := o.Owner
	if owner == "" {
		owner = DefaultLockOwner()
	}
	if !validOwner([]byte(owner)) {
		return lockRequest{}, errBadLockOwner
	}
	r := lockRequest{Verb: lockAcquire, Name: []byte(name), TTL: o.TTL, MaxWait: maxWait, Owner: []byte(owner)}
	if o.TTL > 0 && o.TTL < time.Millisecond {
		r.TTL = time.Millisecond
	}
	if o.Shared {
		r.Mode = LockShared
	}
	return r, nil
}

// Lock blocks until the lock name is held, and returns its lease, or
// until ctx ends, and returns ctx.Err() (wrapped with the last
// *LockBusyError if the server had answered). The server holds the
// acquisition in the lock's queue, first come first served, so the lock
// is handed over as soon as it is free; when the server's maximum wait
// passes, Lock asks again. When ctx ends the client withdraws the queued
// acquisition (abandon), and releases a grant that crossed it.
//
// One acquisition is held at most DefaultMaxLockWait (30 s), or the
// server's maximum if lower; the one sent after it joins the back of the
// queue.
//
// The lease renews itself until Unlock or its loss (see Lease). While no
// server answers, Lock keeps trying until ctx ends. It returns a
// *ServerError for a request the server refuses, and an error wrapping
// ErrNoLocks for a server that does not serve locks.
func (c *Client) Lock(ctx context.Context, name string, o LockOptions) (*Lease, error) {
	return c.lock(ctx, name, o, true)
}

// TryLock asks for the lock name once, without waiting: it returns the
// lease, or an error wrapping ErrLockBusy (a *LockBusyError) when the
// lock is held or has waiters.
func (c *Client) TryLock(ctx context.Context, name string, o LockOptions) (*Lease, error) {
	return c.lock(ctx, name, o, false)
}

func (c *Client) lock(ctx context.Context, name string, o LockOptions, wait bool) (*Lease, error) {
	req, err := o.request(name, 0)
	if err != nil {
		return nil, err
	}
	var busy *LockBusyError
	backoff := 10 * time.Millisecond
	for {
		hold := acquireHold(ctx, wait)
		req.MaxWait = hold
		cl := c.acquireCall(req)
		sent := time.Now()
		b, err := c.do(ctx, cl)
		if wait && errors.Is(err, ErrTimeout) {
			// No server answered: keep trying, as Wait does, until ctx
			// ends.
			if err := sleepCtx(ctx, backoff); err != nil {
				return nil, err
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		if err != nil {
			if busy != nil && ctx.Err() != nil {
				return nil, fmt.Errorf("%w: %w", err, busy)
			}
			return nil, err
		}
		rep, err := parseLockReply(b)
		if err != nil {
			return nil, err
		}
		if rep.Status != LockBusy {
			return c.acquired(ctx, name, sent, rep, b)
		}
		busy = &LockBusyError{Name: name, Owner: rep.Owner, FreeIn: rep.Free, Holders: rep.Holders, Waiters: rep.Waiters}
		if !wait {
			return nil, busy
		}
		if backoff, err = pauseBusy(ctx, busy, sent, hold, backoff); err != nil {
			return nil, err
		}
	}
}

// acquireHold is how long an acquisition asks the server to hold it: as
// long as ctx allows, up to the server's maximum, or not at all for
// TryLock.
func acquireHold(ctx context.Context, wait bool) time.Duration {
	if !wait {
		return 0
	}
	hold, _ := waitHold(ctx, lockHold, time.Time{})
	return hold
}

// acquired turns the answer rep (body b), other than busy, to an
// acquisition of name sent at sent into a lease or an error.
func (c *Client) acquired(ctx context.Context, name string, sent time.Time, rep LockReply, b []byte) (*Lease, error) {
	switch rep.Status {
	case LockGranted:
		return c.newLease(ctx, name, sent, rep)
	case LockError:
		return nil, &ServerError{Msg: rep.Text}
	}
	return nil, fmt.Errorf("%w: %.64q to acquire", ErrBadReply, b)
}

// pauseBusy waits before asking again after busy, the answer to an
// acquisition sent at sent and held for up to hold, and returns the next
// backoff.
func pauseBusy(ctx context.Context, busy *LockBusyError, sent time.Time, hold, backoff time.Duration) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return backoff, fmt.Errorf("%w: %w", err, busy)
	}
	// Held for the server's maximum: ask again at once. Refused early
	// (a full queue, the grace period): back off.
	if time.Since(sent) >= hold/2 {
		return 10 * time.Millisecond, nil
	}
	if err := sleepCtx(ctx, min(backoff, max(busy.FreeIn, time.Millisecond))); err != nil {
		return backoff, fmt.Errorf("%w: %w", err, busy)
	}
	return min(2*backoff, time.Second), nil
}

// acquireCall is the call of an acquisition: withdrawn with abandon when
// its caller gives up, and a grant that comes after that is released.
func (c *Client) acquireCall(req lockRequest) *call {
	name := string(req.Name)
	// The body and the cancel share one buffer; the body's capacity is
	// cut so that nothing appended to it can reach the cancel.
	const abandon = "abandon "
	buf := lockRequestBody(req, len(abandon)+len(name))
	body := buf[:len(buf):len(buf)]
	cancel := append(append(buf[len(buf):], abandon...), name...)
	cl := &call{body: body, hold: max(req.MaxWait, 0), attempts: c.cfg.Attempts,
		cancel: cancel, orphan: releaseGranted(name), quick: true}
	if req.MaxWait > 0 {
		cl.rehold = func(hold time.Duration) []byte {
			r := req
			r.MaxWait = hold
			return lockRequestBody(r, 0)
		}
	}
	return cl
}

// releaseGranted returns the orphan handler of an acquisition of name:
// a grant nobody waits for any more is released.
func releaseGranted(name string) func([]byte) []byte {
	return func(reply []byte) []byte {
		rep, err := ParseLockReply(reply)
		if err != nil || rep.Status != LockGranted {
			return nil
		}
		return lockRequestBody(lockRequest{Verb: lockRelease, Name: []byte(name), Fence: rep.Fence}, 0)
	}
}

// parseLockReply parses a lock reply, telling a server that does not
// serve locks from a bad reply.
func parseLockReply(b []byte) (LockReply, error) {
	rep, err := ParseLockReply(b)
	if err != nil {
		if r, e := ParseReply(b); e == nil && (r.Kind == ReplyGo || r.Kind == ReplySorry) {
			return LockReply{}, fmt.Errorf("%w: it answered %.32q", ErrNoLocks, b)
		}
		return LockReply{}, err
	}
	return rep, nil
}

// LockState is one lock in a listing.
type LockState struct {
	Name     string
	Capacity int
	// Mode is "exclusive" or "shared", or "free" while the lock has
	// only waiters.
	Mode    string
	Holders []LockHolderState // in grant order
	Waiters []LockWaiterState // in queue order
}

// LockHolderState is one holder in a listing.
type LockHolderState struct {
	Owner string
	Fence int64
	Mode  string
	// Since is when it was granted, by the server's clock.
	Since time.Time
	// Held is how long it has held the lock, Lease how long its lease
	// has left, as of the listing.
	Held, Lease time.Duration
	Revoked     bool
}

// LockWaiterState is one queued acquisition in a listing.
type LockWaiterState struct {
	Owner string
	Mode  string
	// Waited is how long it has been queued, Left how long it may still
	// wait.
	Waited, Left time.Duration
}

// Locks returns the live locks, sorted by name; with a name, only that
// lock (none if nobody holds or waits for it).
func (c *Client) Locks(ctx context.Context, name string) ([]LockState, error) {
	doc, _, err := c.locks(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]LockState, len(doc.Locks))
	for i, e := range doc.Locks {
		s := LockState{Name: e.Name, Capacity: e.Capacity, Mode: e.Mode}
		for _, h := range e.Holders {
			s.Holders = append(s.Holders, LockHolderState{Owner: h.Owner, Fence: int64(h.Fence), Mode: h.Mode,
				Since: time.UnixMilli(h.SinceMS), Held: time.Duration(h.HeldMS) * time.Millisecond,
				Lease: time.Duration(h.LeaseMS) * time.Millisecond, Revoked: h.Revoked})
		}
		for _, w := range e.Waiters {
			s.Waiters = append(s.Waiters, LockWaiterState{Owner: w.Owner, Mode: w.Mode,
				Waited: time.Duration(w.WaitedMS) * time.Millisecond, Left: time.Duration(w.LeftMS) * time.Millisecond})
		}
		out[i] = s
	}
	return out, nil
}

// LocksJSON is Locks, answered with the server's JSON listing as it came
// (PROTOCOL.md, "locks"), once it has been checked to be one.
func (c *Client) LocksJSON(ctx context.Context, name string) ([]byte, error) {
	_, b, err := c.locks(ctx, name)
	return b, err
}

// locks asks for the listing of name (every lock when empty) and returns
// it decoded and as it came.
func (c *Client) locks(ctx context.Context, name string) (lockListDoc, []byte, error) {
	var doc lockListDoc
	req := lockRequest{Verb: lockList}
	if name != "" {
		if err := ValidKeyName(name); err != nil {
			return doc, nil, err
		}
		req.Name = []byte(name)
	}
	b, err := c.do(ctx, &call{body: appendLockRequest(nil, req), attempts: c.cfg.Attempts})
	if err != nil {
		return doc, nil, err
	}
	if len(b) == 0 || b[0] != '{' {
		if rep, err := parseLockReply(b); err != nil {
			return doc, nil, err
		} else if rep.Status == LockError {
			return doc, nil, &ServerError{Msg: rep.Text}
		}
		return doc, nil, fmt.Errorf("%w: %.64q to locks", ErrBadReply, b)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return doc, nil, fmt.Errorf("locker: lock listing: %w", err)
	}
	return doc, b, nil
}

// RevokeLock asks the holders of the lock name to release it: each
// learns it at its next renewal, which no longer extends its lease. It
// returns the number of holders asked.
func (c *Client) RevokeLock(ctx context.Context, name string) (int, error) {
	rep, err := c.lockAdmin(ctx, lockRevoke, name, LockRevoking)
	return rep.Count, err
}

// BreakLock removes every holder of the lock name at once (for a holder
// known to be gone), and returns their number and a new fence above all
// of theirs, which the protected resource can be given to refuse them.
func (c *Client) BreakLock(ctx context.Context, name string) (int, int64, error) {
	rep, err := c.lockAdmin(ctx, lockBreak, name, LockBroken)
	return rep.Count, int64(rep.Fence), err
}

func (c *Client) lockAdmin(ctx context.Context, verb lockVerb, name string, want LockStatus) (LockReply, error) {
	if err := ValidKeyName(name); err != nil {
		return LockReply{}, err
	}
	b, err := c.do(ctx, &call{body: appendLockRequest(nil, lockRequest{Verb: verb, Name: []byte(name)}), attempts: c.cfg.Attempts})
	if err != nil {
		return LockReply{}, err
	}
	rep, err := parseLockReply(b)
	switch {
	case err != nil:
		return LockReply{}, err
	case rep.Status == LockError:
		return LockReply{}, &ServerError{Msg: rep.Text}
	case rep.Status != want:
		return LockReply{}, fmt.Errorf("%w: %.64q to %s", ErrBadReply, b, verb)
	}
	return rep, nil
}
