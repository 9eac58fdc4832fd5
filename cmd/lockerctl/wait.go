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
	d, err := client.WaitUntil(ctx, *key, *n, deadline)
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted while waiting: %w", ctx.Err())
	case errors.Is(err, locker.ErrTimeout):
		return fmt.Errorf("no answer from %s within %s (beyond the time a server may hold the wait)", c.g.serverList(), c.g.timeout)
	case err != nil:
		return err
	}
	fmt.Fprintln(c.g.stdout, formatDecision(d))
	if !d.OK {
		return errSorry
	}
	return nil
}

// formatDecision writes d as the server sends it. A decision with no
// fields but OK came as a bare go or sorry (the seed's server): a full
// one always has a window index above 0.
func formatDecision(d locker.Decision) string {
	bare := d == locker.Decision{OK: d.OK}
	return string(locker.AppendDecision(nil, d, bare))
}
