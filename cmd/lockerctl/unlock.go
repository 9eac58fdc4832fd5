package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/lockerd/lockerd/locker"
)

// UnlockCommand force-releases a lock whose holder is gone.
type UnlockCommand struct{ g *globals }

// Usage implements command.
func (c *UnlockCommand) Usage() string {
	return "unlock --force NAME            remove every holder of NAME now (a holder that is gone); prints a new fence"
}

// Run implements command.
func (c *UnlockCommand) Run(ctx context.Context, args []string) error {
	fs := c.g.flagSet("unlock")
	force := fs.Bool("force", false, "required: the holders are not asked, they lose the lock")
	if err := c.g.parseArgs(fs, c, args); err != nil {
		return err
	}
	name, err := oneName(fs.Args())
	if err != nil {
		return err
	}
	if !*force {
		return errors.New("unlock breaks the lock of its holders: say --force (or ask them with revoke)")
	}
	client, cctx, done, err := c.g.session(ctx)
	if err != nil {
		return err
	}
	defer done()
	n, fence, err := client.BreakLock(cctx, name)
	if err != nil {
		return c.g.explain(ctx, err)
	}
	fmt.Fprintf(c.g.stdout, "broken %s: %d holders removed; fence %d is above all of theirs\n", name, n, fence)
	return nil
}

// oneName returns the single NAME argument.
func oneName(args []string) (string, error) {
	switch {
	case len(args) == 0:
		return "", errors.New("missing NAME")
	case len(args) > 1:
		return "", fmt.Errorf("unexpected argument %q", args[1])
	}
	if err := locker.ValidKeyName(args[0]); err != nil {
		return "", fmt.Errorf("%q: %w", args[0], err)
	}
	return args[0], nil
}
