package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// WaitCommand blocks until tokens are granted.
type WaitCommand struct{ g *globals }

// Usage implements command.
func (c *WaitCommand) Usage() string {
	return "wait [-k KEY] [-n N] [--max-wait D] block until go (0); sorry (1) when max-wait passes"
}

const (
	// firstHold is the longest the first wait request may be held. A
	// server that is not there is noticed after it plus --timeout, so
	// wait fails as fast as probe does.
	firstHold = 500 * time.Millisecond
	// holdChunk is the longest any later wait request may be held: a
	// server that dies while holding one is noticed within holdChunk plus
	// --timeout. Servers cap holds at their --max-wait (30s by default).
	holdChunk = 5 * time.Second
)

// Run implements command.
func (c *WaitCommand) Run(ctx context.Context, args []string) error {
	fs := c.g.flagSet("wait")
	key := fs.StringP("key", "k", locker.DefaultKey, "key to take from")
	n := fs.Int64P("n", "n", 1, "tokens to take")
	maxWait := fs.Duration("max-wait", 0, "give up with sorry after this long (0: wait until interrupted)")
	if err := c.g.parse(fs, c, args); err != nil {
		return err
	}
	if err := checkKeyN(*key, *n); err != nil {
		return err
	}
	if *maxWait < 0 {
		return fmt.Errorf("--max-wait %s is negative", *maxWait)
	}
	client, err := c.g.client()
	if err != nil {
		return err
	}
	defer client.Close()
	var deadline time.Time
	if *maxWait > 0 {
		deadline = time.Now().Add(*maxWait)
	}
	backoff := 20 * time.Millisecond
	for chunk := firstHold; ; chunk = holdChunk {
		hold := chunk
		if !deadline.IsZero() {
			hold = min(hold, time.Until(deadline))
		}
		hold = max(hold, 0).Truncate(time.Millisecond)
		start := time.Now()
		// WaitMax, unlike Do, gives the request hold plus --timeout to be
		// answered.
		d, err := client.WaitMax(ctx, *key, *n, hold)
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("interrupted while waiting: %w", ctx.Err())
		case errors.Is(err, locker.ErrTimeout):
			return fmt.Errorf("no answer from %s within %s", c.g.serverList(), hold+c.g.timeout)
		case err != nil:
			return err
		case d.OK:
			fmt.Fprintln(c.g.stdout, formatDecision(d))
			return nil
		case !deadline.IsZero() && !time.Now().Before(deadline):
			fmt.Fprintln(c.g.stdout, formatDecision(d))
			return errSorry
		}
		// A sorry before the hold ran out (a full queue, a server with a
		// lower cap, or a seed server that does not hold waits): wait for
		// the hint, or back off, then ask again.
		if pause := time.Until(start.Add(hold)); pause > 0 {
			if d.RetryAfter > 0 {
				pause = min(pause, d.RetryAfter)
			} else {
				pause, backoff = min(pause, backoff), min(2*backoff, time.Second)
			}
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("interrupted while waiting: %w", ctx.Err())
			case <-t.C:
			}
		}
	}
}

// formatDecision writes d as the server sends it. A decision with no
// fields but OK came as a bare go or sorry (the seed's server): a full
// one always has a window index above 0.
func formatDecision(d locker.Decision) string {
	bare := d == locker.Decision{OK: d.OK}
	return string(locker.AppendDecision(nil, d, bare))
}
