package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// WaitCommand blocks until tokens are granted.
type WaitCommand struct{ g *globals }

// Usage implements command.
func (c *WaitCommand) Usage() string {
	return "wait [-k KEY] [-n N] [--max-wait D] block until go (0); sorry (1) when max-wait passes"
}

// holdChunk is the longest one wait request asks to be held; servers cap
// holds at their --max-wait (30s by default), so a longer wait is several
// requests.
const holdChunk = 25 * time.Second

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
	for {
		hold := holdChunk
		if !deadline.IsZero() {
			hold = min(hold, time.Until(deadline))
		}
		hold = max(hold, 0).Truncate(time.Millisecond)
		body := "wait " + *key + " " + strconv.FormatInt(*n, 10) + " " + strconv.FormatInt(hold.Milliseconds(), 10)
		start := time.Now()
		r, err := client.Do(ctx, []byte(body))
		if err != nil {
			return c.g.explain(err)
		}
		if r.Kind != locker.ReplySorry || !deadline.IsZero() && !time.Now().Before(deadline) {
			return printDecision(c.g, r)
		}
		// A sorry before the hold ran out (a full queue, or a server
		// that does not hold waits): wait for the hint, then ask again.
		if pause := time.Until(start.Add(hold)); pause > 0 {
			if r.Full && r.Decision.RetryAfter > 0 {
				pause = min(pause, r.Decision.RetryAfter)
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
