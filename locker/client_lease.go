package locker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Lease is a held lock. It renews itself in the background, a third of
// the way through its lease, until Unlock or its loss. It counts its
// lease end on its own clock, from when it sent the request that the
// server answered, so it never thinks it holds the lock after the
// server's lease end: when no renewal is answered before then, Lost is
// closed. Fences let the protected resource refuse a holder whose lease
// passed to someone else in the moment between.
//
// A lease costs no goroutine while it waits for its next renewal: one
// runtime timer runs each renewal on a goroutine of its own, so a lock
// held for less than a third of its lease never starts one.
//
// Its methods are safe for concurrent use.
type Lease struct {
	c     *Client
	name  string
	fence uint64

	mu sync.Mutex
	// lost and revoked are made by the first Lost or Revoked, or by
	// the loss or revocation that closes them.
	lost, revoked chan struct{}
	end           time.Time     // by the local clock
	ttl           time.Duration // the lease's length, as last granted
	err           error
	isRevoked     bool
	// timer runs the next renewal (tick); retry says the last one got
	// no answer.
	timer *time.Timer
	retry bool
	// stopped is set by Unlock. renewing is set while a tick renews,
	// with cancelRenew to cut that renewal short; idle, made by an
	// Unlock that found one running, is closed when it ends.
	stopped     bool
	renewing    bool
	cancelRenew context.CancelFunc
	idle        chan struct{}
}

// newLease makes the lease of a grant of name sent at sent. A grant that
// was held long in the queue is renewed at once, so that its end is known
// from a request sent after the grant.
func (c *Client) newLease(ctx context.Context, name string, sent time.Time, rep LockReply) (*Lease, error) {
	l := &Lease{c: c, name: name, fence: rep.Fence, end: sent.Add(rep.Lease), ttl: rep.Lease}
	if time.Until(l.end) < 2*l.ttl/3 {
		// More than a third of the lease went by in the queue: the
		// lease end counted from the request is too early to be of use.
		if err := l.renew(ctx); err != nil {
			l.release(context.Background())
			return nil, fmt.Errorf("locker: lock %s: granted, but not renewed: %w", name, err)
		}
	}
	l.mu.Lock()
	l.schedule()
	l.mu.Unlock()
	return l, nil
}

// Name returns the lock's name.
func (l *Lease) Name() string { return l.name }

// Fence returns the lease's fencing token: strictly greater than every
// fence given before for the lock, restarts included. Give it to the
// protected resource with every write, so it can refuse an older one.
func (l *Lease) Fence() int64 { return int64(l.fence) }

// Lost returns a channel closed when the lease is lost: it expired, was
// revoked and ran out, was broken, or could not be renewed before its
// end. Err then says why. Unlock does not close it.
func (l *Lease) Lost() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = make(chan struct{})
		if l.err != nil {
			close(l.lost)
		}
	}
	return l.lost
}

// Revoked returns a channel closed when the server says a revocation was
// asked: the lease is no longer renewed, and the caller should finish
// and Unlock before it ends.
func (l *Lease) Revoked() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.revoked == nil {
		l.revoked = make(chan struct{})
		if l.isRevoked {
			close(l.revoked)
		}
	}
	return l.revoked
}

// Err returns why the lease was lost (wrapping ErrLeaseExpired,
// ErrLeaseRevoked or ErrLeaseBroken), or nil while it is not.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Deadline returns the end of the lease by the local clock, as last
// renewed.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.end
}

// lose marks the lease lost with err, once. It requires that l.mu is
// held.
func (l *Lease) lose(err error) {
	if l.err == nil {
		l.err = err
		if l.lost != nil {
			close(l.lost)
		}
	}
}

func (l *Lease) markRevoked() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.isRevoked {
		l.isRevoked = true
		if l.revoked != nil {
			close(l.revoked)
		}
	}
}

// endErr is the error of a lease that reached its end. It requires that
// l.mu is held.
func (l *Lease) endErr() error {
	if l.isRevoked {
		return fmt.Errorf("%w: lock %s, fence %d", ErrLeaseRevoked, l.name, l.fence)
	}
	return fmt.Errorf("%w: lock %s, fence %d: no renewal answered before its end", ErrLeaseExpired, l.name, l.fence)
}

// schedule sets the timer for the next renewal: a third of the way
// through the lease, sooner after a renewal that got no answer, at the
// lease end once revoked (to mark it lost). It requires that l.mu is
// held.
func (l *Lease) schedule() {
	at := l.end.Add(-2 * l.ttl / 3)
	if l.isRevoked {
		at = l.end // not renewed any more: wait for its end
	} else if l.retry {
		at = time.Now().Add(min(l.ttl/10, time.Until(l.end)))
	}
	d := max(time.Until(at), 0)
	if l.timer == nil {
		l.timer = time.AfterFunc(d, l.tick)
	} else {
		l.timer.Reset(d)
	}
}

// tick, run by the timer, renews the lease once and sets the timer for
// the next renewal, or marks the lease lost.
func (l *Lease) tick() {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return
	}
	end := l.end
	if !time.Now().Before(end) {
		l.lose(l.endErr())
		l.mu.Unlock()
		return
	}
	if l.isRevoked {
		l.schedule()
		l.mu.Unlock()
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), end)
	l.renewing, l.cancelRenew = true, cancel
	l.mu.Unlock()

	err := l.renew(ctx)
	cancel()

	l.mu.Lock()
	defer l.mu.Unlock()
	l.renewing, l.cancelRenew = false, nil
	if l.stopped { // Unlock
		if l.idle != nil {
			close(l.idle)
		}
		return
	}
	l.retry = false
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseBroken), errors.Is(err, ErrLeaseExpired):
		l.lose(err)
		return
	case errors.Is(err, context.DeadlineExceeded):
		l.lose(l.endErr())
		return
	case errors.Is(err, ErrClientClosed):
		l.lose(fmt.Errorf("%w: lock %s, fence %d: %w", ErrLeaseExpired, l.name, l.fence, err))
		return
	default:
		l.retry = true // no answer yet: there is time left
	}
	l.schedule()
}

// ask sends verb (renew or release) for the lease and returns the reply,
// parsed and as it came.
func (l *Lease) ask(ctx context.Context, verb lockVerb) (LockReply, []byte, error) {
	body := lockRequestBody(lockRequest{Verb: verb, Name: []byte(l.name), Fence: l.fence}, 0)
	b, err := l.c.do(ctx, &call{body: body, attempts: l.c.cfg.Attempts})
	if err != nil {
		return LockReply{}, nil, err
	}
	rep, err := parseLockReply(b)
	return rep, b, err
}

// renew renews the lease once, and sets its end from the reply.
func (l *Lease) renew(ctx context.Context) error {
	sent := time.Now()
	rep, b, err := l.ask(ctx, lockRenew)
	if err != nil {
		return err
	}
	switch rep.Status {
	case LockGranted, LockRevoked:
		l.mu.Lock()
		if end := sent.Add(rep.Lease); rep.Status == LockGranted || end.Before(l.end) {
			l.end = end
		}
		if rep.Status == LockGranted {
			l.ttl = rep.Lease
		}
		l.mu.Unlock()
		if rep.Status == LockRevoked {
			l.markRevoked()
		}
		return nil
	case LockLost:
		l.mu.Lock()
		defer l.mu.Unlock()
		if !time.Now().Before(l.end) {
			return l.endErr()
		}
		return fmt.Errorf("%w: lock %s, fence %d: the server no longer holds it", ErrLeaseBroken, l.name, l.fence)
	case LockError:
		return fmt.Errorf("%w: lock %s, fence %d: %w", ErrLeaseBroken, l.name, l.fence, &ServerError{Msg: rep.Text})
	}
	return fmt.Errorf("%w: %.64q to renew", ErrBadReply, b)
}

// Unlock stops the renewals and releases the lock. It returns nil when
// the server released it, or why the lease was lost before (the lock was
// then not held to the end: the fence tells the resource).
func (l *Lease) Unlock(ctx context.Context) error {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return errors.New("locker: lease already unlocked")
	}
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
	}
	var renewing chan struct{}
	if l.renewing {
		l.cancelRenew()
		l.idle = make(chan struct{})
		renewing = l.idle
	}
	l.mu.Unlock()
	// Release at once, without waiting for the renewal to stop: a
	// renewal that crosses the release only finds the lease lost.
	err := l.release(ctx)
	if renewing != nil {
		<-renewing
	}
	if lost := l.Err(); lost != nil {
		return lost
	}
	return err
}

func (l *Lease) release(ctx context.Context) error {
	rep, b, err := l.ask(ctx, lockRelease)
	if err != nil {
		return err
	}
	switch rep.Status {
	case LockReleased:
		return nil
	case LockLost:
		return fmt.Errorf("%w: lock %s, fence %d: lost before release", ErrLeaseExpired, l.name, l.fence)
	case LockError:
		return &ServerError{Msg: rep.Text}
	}
	return fmt.Errorf("%w: %.64q to release", ErrBadReply, b)
}
