package locker

import (
	"context"
	"errors"
	"time"
)

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
	return c.decide(ctx, c.waitCall(key, n, max, c.cfg.Attempts))
}

// Wait blocks until n tokens of key are granted, and returns the go
// decision, or until ctx is done, and returns ctx.Err(); the client then
// asks the server to cancel the wait it holds, so that its tokens go to
// the next waiter. It holds wait requests on the server, so it is
// answered as soon as a window opens; it never polls. It returns a
// *ServerError at once for a request the server refuses. While no server answers it keeps trying until ctx is done.
func (c *Client) Wait(ctx context.Context, key string, n int64) (Decision, error) {
	return c.wait(ctx, key, n, time.Time{}, 0)
}

// WaitUntil is Wait with a deadline: when deadline passes before the
// tokens are granted it returns the sorry decision of its last request.
// Unlike Wait it gives up, with ErrTimeout, when no server answers one of
// its requests within the client's Attempts. A zero deadline means none.
func (c *Client) WaitUntil(ctx context.Context, key string, n int64, deadline time.Time) (Decision, error) {
	return c.wait(ctx, key, n, deadline, c.cfg.Attempts)
}

// wait is Wait and WaitUntil: it sends wait requests, each held at most
// the client's Hold (FirstHold for the first), until one is granted, the
// deadline (if not zero) or ctx ends, or a request fails.
func (c *Client) wait(ctx context.Context, key string, n int64, deadline time.Time, attempts int) (Decision, error) {
	if err := checkArgs(key, n); err != nil {
		return Decision{}, err
	}
	backoff := 10 * time.Millisecond
	for chunk := c.cfg.FirstHold; ; chunk = c.cfg.Hold {
		hold, ctxBound := waitHold(ctx, chunk, deadline)
		if hold <= 0 && ctxBound {
			// Under a millisecond left: one last look, then wait out ctx.
			if d, err := c.decide(ctx, &call{body: appendReq(nil, "take", key, n, -1), attempts: 1}); err == nil && d.OK {
				return d, nil
			}
			<-ctx.Done()
			return Decision{}, ctx.Err()
		}
		start := time.Now()
		b, err := c.do(ctx, c.waitCall(key, n, hold, attempts))
		if err != nil {
			return Decision{}, err
		}
		d, full, err := toDecision(b)
		if err != nil || d.OK || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			return d, err
		}
		var pause time.Duration
		pause, backoff = retryPause(d, full, time.Until(start.Add(hold)), backoff)
		if err := sleepCtx(ctx, pause); err != nil {
			return Decision{}, err
		}
	}
}

// retryPause returns how long to wait before asking again after a sorry
// (d, with full if the server said its queue is full) when left is what
// remains of the request's hold, and the backoff to use next time. A sorry
// that came before the hold ran out (a full queue, a server with a lower
// cap, or a seed server that does not hold) waits for the hint, or backs
// off, but never past the end of the hold.
func retryPause(d Decision, full bool, left, backoff time.Duration) (pause, next time.Duration) {
	switch {
	case left <= 0:
		return 0, backoff
	case full && d.RetryAfter > 0:
		return min(left, d.RetryAfter), backoff
	}
	return min(left, backoff), min(2*backoff, time.Second)
}

// waitHold returns how long the next wait request may be held: chunk, cut
// to what is left before deadline (if not zero) and before ctx's deadline,
// in whole milliseconds. ctxBound reports that ctx's deadline is what cut
// it.
func waitHold(ctx context.Context, chunk time.Duration, deadline time.Time) (hold time.Duration, ctxBound bool) {
	hold = chunk
	if !deadline.IsZero() {
		hold = min(hold, time.Until(deadline))
	}
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < hold {
			hold, ctxBound = left, true
		}
	}
	return max(hold, 0).Truncate(time.Millisecond), ctxBound
}

// waitCall is a wait request for n tokens of key held at most hold.
func (c *Client) waitCall(key string, n int64, hold time.Duration, attempts int) *call {
	return &call{body: appendReq(nil, "wait", key, n, hold), hold: hold, attempts: attempts,
		rehold: reholdWait(key, n), cancel: cancelBody(key)}
}

// cancelBody is the request that withdraws the waits on key sent with
// the same envelope (see call.cancel).
func cancelBody(key string) []byte { return append([]byte("cancel "), key...) }

// reholdWait returns the body of a wait request for n tokens of key held
// at most hold.
func reholdWait(key string, n int64) func(time.Duration) []byte {
	return func(hold time.Duration) []byte { return appendReq(nil, "wait", key, n, hold) }
}

// sleepCtx sleeps for d, or until ctx is done and returns ctx.Err().
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
