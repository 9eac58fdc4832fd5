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
	fs.Usage = func() {
		fmt.Fprintf(c.g.stderr, "Usage: lockerctl %s\n\nFlags:\n%s", c.Usage(), fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	name, err := oneName(fs.Args())
	if err != nil {
		return err
	}
	client, err := c.g.client()
	if err != nil {
		return err
	}
	defer client.Close()
	cctx, cancel := c.g.withTimeout(ctx)
	defer cancel()
	n, err := client.RevokeLock(cctx, name)
	if err != nil {
		return c.g.explain(ctx, err)
	}
	fmt.Fprintf(c.g.stdout, "revoking %s: %d holders asked to release\n", name, n)
	return nil
}
