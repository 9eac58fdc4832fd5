package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// lockerdLocks drives a real lockerd through its lock verbs (docs/locks.md)
// with the Go client, shared by every goroutine.
type lockerdLocks struct {
	c     *locker.Client
	ttl   time.Duration
	owner string
}

// lockerdTimeout is the client's attempt timeout.
const lockerdTimeout = 2 * time.Second

func newLockerd(ep string, ttl time.Duration) (*lockerdLocks, error) {
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: lockerdTimeout, Attempts: 1})
	if err != nil {
		return nil, err
	}
	return &lockerdLocks{c: c, ttl: ttl, owner: "lockcmp:" + strconv.Itoa(os.Getpid())}, nil
}

func (l *lockerdLocks) close() { l.c.Close() }

// worker is the lockerd side of the comparison: it takes name through the
// Go client's Lock, held by the server until the lock is handed over, and
// returns the lease's Unlock.
func (l *lockerdLocks) worker(_ context.Context, name string) (acquire, func(), error) {
	return func(ctx context.Context) (func(context.Context) error, error) {
		lease, err := l.c.Lock(ctx, name, locker.LockOptions{TTL: l.ttl, Owner: l.owner})
		if err != nil {
			return nil, err
		}
		return lease.Unlock, nil
	}, nil, nil
}

// notServed is the answer of a lockerd that does not serve the lock
// verbs: it takes them for legacy take requests.
type notServed struct{ reply string }

func (n notServed) Error() string {
	return fmt.Sprintf("this lockerd does not serve locks: it answered an acquire with %q (a legacy take)", n.reply)
}

// do sends one lock request and parses the reply as a lock reply. Client.Do
// parses replies as take replies: it gives a lock reply back only in the
// text of ErrBadReply, from which do takes it. A reply Do can read as go or
// sorry comes from a lockerd that does not serve locks (notServed); an
// error reply is a *locker.ServerError.
func (l *lockerdLocks) do(ctx context.Context, body []byte) (locker.LockReply, error) {
	rep, err := l.c.Do(ctx, body)
	var raw string
	switch {
	case err == nil:
		raw = rep.Body
	case errors.Is(err, locker.ErrBadReply):
		raw, err = replyInError(err)
		if err != nil {
			return locker.LockReply{}, err
		}
	default:
		return locker.LockReply{}, err
	}
	r, perr := locker.ParseLockReply([]byte(raw))
	switch {
	case perr != nil && err == nil && (rep.Kind == locker.ReplyGo || rep.Kind == locker.ReplySorry):
		return locker.LockReply{}, notServed{raw}
	case perr != nil:
		return locker.LockReply{}, perr
	case r.Status == locker.LockError:
		return locker.LockReply{}, &locker.ServerError{Msg: r.Text}
	}
	return r, nil
}

// replyInError takes the reply body out of an ErrBadReply of Client.Do,
// "...: \"BODY\"".
func replyInError(err error) (string, error) {
	msg := err.Error()
	i := strings.Index(msg, `"`)
	if i < 0 {
		return "", err
	}
	s, uerr := strconv.Unquote(msg[i:])
	if uerr != nil {
		return "", err
	}
	return s, nil
}

// ready checks that lockerd serves locks, waiting out its restart grace
// period for up to wait (it queues every acquisition during it).
func (l *lockerdLocks) ready(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	body := []byte(fmt.Sprintf("acquire lockcmp.probe exclusive %d 0 %s", l.ttl.Milliseconds(), l.owner))
	for {
		r, err := l.do(ctx, body)
		if err != nil {
			return err
		}
		switch r.Status {
		case locker.LockGranted:
			rr, err := l.do(ctx, []byte("release lockcmp.probe "+strconv.FormatUint(r.Fence, 10)))
			if err != nil {
				return err
			}
			if rr.Status != locker.LockReleased {
				return fmt.Errorf("probe release: unexpected reply %+v", rr)
			}
			return nil
		case locker.LockBusy:
			if r.Holders > 0 {
				return fmt.Errorf("the probe lock is held by %q", r.Owner)
			}
			// No holder: the restart grace period, which ends in r.Free.
			if time.Now().Add(r.Free).After(deadline) {
				return fmt.Errorf("lockerd grants no lock for %s more (its restart grace period); "+
					"start it without one (-lockerd-flags) or raise -grace-wait", r.Free)
			}
			t := time.NewTimer(r.Free + 10*time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		default:
			return fmt.Errorf("probe acquire: unexpected reply %+v", r)
		}
	}
}

// take is one take of a token of key, for the take measurements.
func (l *lockerdLocks) take(ctx context.Context, key string) error {
	d, err := l.c.Take(ctx, key, 1)
	if err != nil {
		return err
	}
	if !d.OK {
		return errors.New("take: sorry from a key whose limit no run reaches")
	}
	return nil
}
