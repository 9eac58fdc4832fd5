package main

import (
	"context"
	"fmt"
)

// PingCommand checks that a server answers, without spending a token.
type PingCommand struct{ g *globals }

// Usage implements command.
func (c *PingCommand) Usage() string {
	return "ping                           check that the server answers (spends no token)"
}

// Run implements command.
func (c *PingCommand) Run(ctx context.Context, args []string) error {
	fs := c.g.flagSet("ping")
	if err := c.g.parse(fs, c, args); err != nil {
		return err
	}
	client, cctx, done, err := c.g.session(ctx)
	if err != nil {
		return err
	}
	defer done()
	id, err := client.Ping(cctx)
	if err != nil {
		return c.g.explain(ctx, err)
	}
	fmt.Fprintln(c.g.stdout, "pong", id) // run checks the writes
	return nil
}
