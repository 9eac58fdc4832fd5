package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// LocksCommand lists the live locks, or shows one.
type LocksCommand struct{ g *globals }

// Usage implements command.
func (c *LocksCommand) Usage() string {
	return "locks [NAME] [--json]           live locks: mode, capacity, holders (owner, fence, held for, lease ends in), waiters"
}

// Run implements command.
func (c *LocksCommand) Run(ctx context.Context, args []string) error {
	fs := c.g.flagSet("locks")
	asJSON := fs.Bool("json", false, "print the listing as JSON")
	if err := c.g.parseArgs(fs, c, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(1))
	}
	name := fs.Arg(0)
	client, cctx, done, err := c.g.session(ctx)
	if err != nil {
		return err
	}
	defer done()
	if *asJSON {
		b, err := client.LocksJSON(cctx, name)
		if err != nil {
			return c.g.explain(ctx, err)
		}
		fmt.Fprintln(c.g.stdout, string(b))
		return nil
	}
	locks, err := client.Locks(cctx, name)
	if err != nil {
		return c.g.explain(ctx, err)
	}
	return c.printText(name, locks)
}

// printText prints locks, the answer to a listing of name (all locks when
// name is empty), as a table, then the holders and waiters of each lock.
func (c *LocksCommand) printText(name string, locks []locker.LockState) error {
	switch {
	case name != "" && len(locks) == 0:
		fmt.Fprintf(c.g.stdout, "%s: free, nobody waits\n", name)
		return nil
	case len(locks) == 0:
		fmt.Fprintln(c.g.stdout, "no live locks")
		return nil
	}
	w := tabwriter.NewWriter(c.g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tMODE\tCAP\tHOLDERS\tWAITERS")
	for _, l := range locks {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\n", l.Name, l.Mode, l.Capacity, len(l.Holders), len(l.Waiters))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, l := range locks {
		if len(l.Holders)+len(l.Waiters) == 0 {
			continue
		}
		if err := c.printQueue(l); err != nil {
			return err
		}
	}
	return nil
}

// printQueue prints the holders and waiters of the lock l.
func (c *LocksCommand) printQueue(l locker.LockState) error {
	fmt.Fprintf(c.g.stdout, "\n%s:\n", l.Name)
	w := tabwriter.NewWriter(c.g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  \tOWNER\tMODE\tFENCE\tHELD FOR\tLEASE ENDS IN")
	for _, h := range l.Holders {
		lease := roundDur(h.Lease).String()
		if h.Revoked {
			lease += " (revoked)"
		}
		fmt.Fprintf(w, "  holder\t%s\t%s\t%d\t%s\t%s\n", h.Owner, h.Mode, h.Fence, roundDur(h.Held), lease)
	}
	for i, q := range l.Waiters {
		fmt.Fprintf(w, "  waiter %d\t%s\t%s\t-\twaited %s\tgives up in %s\n", i+1, q.Owner, q.Mode, roundDur(q.Waited), roundDur(q.Left))
	}
	return w.Flush()
}

func roundDur(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
