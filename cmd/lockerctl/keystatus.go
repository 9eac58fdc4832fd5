package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// keyStatus prints one key, from "status KEY": its spec, whether it is
// made on demand and live, and each of its limits. With asJSON it prints
// the server's document as is. cctx bounds the request; ctx is the
// command's, for telling an interruption from a timeout.
func keyStatus(ctx, cctx context.Context, g *globals, client *locker.Client, key string, asJSON bool) error {
	doc, err := client.KeyStatus(cctx, key)
	if err != nil {
		return g.explain(ctx, err)
	}
	if asJSON {
		fmt.Fprintln(g.stdout, string(doc.Raw)) // run checks the writes
		return nil
	}
	k := doc.Key
	kind := "configured"
	if k.Template != "" {
		kind = "made on demand from " + k.Template + ", not live (its next take makes it afresh)"
		if k.Live {
			kind = "made on demand from " + k.Template + ", live"
		}
	}
	fmt.Fprintf(g.stdout, "key %s (%s)\nspec %s\nwaiters %d\n\n", k.Name, kind, k.Spec, k.Waiters)
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PART\tLIMIT\tWINDOW\tALGORITHM\tBURST\tUSED")
	for i, p := range k.Parts {
		burst := "-"
		if p.Algorithm == string(locker.AlgGCRA) {
			burst = fmt.Sprint(p.Burst)
			if p.Burst == 0 {
				burst = fmt.Sprint(p.Limit)
			}
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%d\n", i, p.Limit, time.Duration(p.WindowMS)*time.Millisecond, p.Algorithm, burst, p.Used)
	}
	tw.Flush() // run checks the writes
	return nil
}
