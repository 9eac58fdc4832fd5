package main

import (
	"context"
	"fmt"
)

// RevokeCommand asks the holders of a lock to release it.
type RevokeCommand struct{ g *globals }

// Usage implements command.
func (c *RevokeCommand) Usage() string {
	return "revoke NAME                    ask the holders of NAME to release it (no more renewals)"
}

// Run implements command.
func (c *RevokeCommand) Run(ctx context.Context, args []string) error {
	fs := c.g.flagSet("revoke")
	if err := c.g.parseArgs(fs, c, args); err != nil {
		return err
	}
	name, err := oneName(fs.Args())
	if err != nil {
		return err
	}
	client, cctx, done, err := c.g.session(ctx)
	if err != nil {
		return err
	}
	defer done()
	n, err := client.RevokeLock(cctx, name)
	if err != nil {
		return c.g.explain(ctx, err)
	}
	fmt.Fprintf(c.g.stdout, "revoking %s: %d holders asked to release\n", name, n)
	return nil
}
