package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/lockerd/lockerd/locker"
)

// ProbeCommand asks once for tokens and prints the reply.
type ProbeCommand struct{ g *globals }

// Usage implements command.
func (c *ProbeCommand) Usage() string {
	return "probe [-k KEY] [-n N]          take N tokens now if there are any: go (0) or sorry (1)"
}

// Run implements command.
func (c *ProbeCommand) Run(ctx context.Context, args []string) error {
	fs := c.g.flagSet("probe")
	key := fs.StringP("key", "k", locker.DefaultKey, "key to take from")
	n := fs.Int64P("n", "n", 1, "tokens to take")
	if err := c.g.parse(fs, c, args); err != nil {
		return err
	}
	if err := checkKeyN(*key, *n); err != nil {
		return err
	}
	client, cctx, done, err := c.g.session(ctx)
	if err != nil {
		return err
	}
	defer done()
	r, err := client.Do(cctx, []byte("take "+*key+" "+strconv.FormatInt(*n, 10)))
	if err != nil {
		return c.g.explain(ctx, err)
	}
	return printDecision(c.g, r)
}

// printDecision prints a go, sorry or error reply as received and returns
// the error that gives its exit status.
func printDecision(g *globals, r locker.Reply) error {
	switch r.Kind {
	case locker.ReplyGo:
		fmt.Fprintln(g.stdout, r.Body)
		return nil
	case locker.ReplySorry:
		fmt.Fprintln(g.stdout, r.Body)
		return errSorry
	case locker.ReplyError:
		return &locker.ServerError{Msg: r.Text}
	}
	return fmt.Errorf("unexpected reply %q", r.Body)
}

func checkKeyN(key string, n int64) error {
	if err := locker.ValidKeyName(key); err != nil {
		return fmt.Errorf("-k: %w", err)
	}
	if n < 1 || n > locker.MaxLimit {
		return fmt.Errorf("-n %d: want 1 to %d", n, locker.MaxLimit)
	}
	return nil
}
