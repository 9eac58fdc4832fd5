package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// StatusCommand prints the server's keys (and peers, when federating).
type StatusCommand struct{ g *globals }

// Usage implements command.
func (c *StatusCommand) Usage() string {
	return "status [-k KEY] [--json]       the server's keys and templates: limit, window, used now, waiters; with -k one key, each of its limits"
}

// Run implements command.
func (c *StatusCommand) Run(ctx context.Context, args []string) error {
	fs := c.g.flagSet("status")
	asJSON := fs.Bool("json", false, "print the server's JSON document as is")
	key := fs.StringP("key", "k", "", "show only KEY, configured or made on demand from a template, live or not")
	if err := c.g.parse(fs, c, args); err != nil {
		return err
	}
	if *key != "" {
		if err := locker.ValidKeyName(*key); err != nil {
			return fmt.Errorf("-k: %w", err)
		}
	}
	client, cctx, done, err := c.g.session(ctx)
	if err != nil {
		return err
	}
	defer done()
	if *key != "" {
		return keyStatus(ctx, cctx, c.g, client, *key, *asJSON)
	}
	st, err := client.Status(cctx)
	if err != nil {
		return c.g.explain(ctx, err)
	}
	if *asJSON {
		fmt.Fprintln(c.g.stdout, string(st.Raw)) // run checks the writes
		return nil
	}
	fmt.Fprintf(c.g.stdout, "server %s (protocol %d)\n\n", st.ID, st.Protocol)
	tw := tabwriter.NewWriter(c.g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tLIMIT\tWINDOW\tUSED\tWAITERS")
	for _, k := range st.Keys {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\n", k.Name, k.Limit, time.Duration(k.WindowMS)*time.Millisecond, k.Granted, k.Waiters)
	}
	tw.Flush() // run checks the writes
	printTemplates(c.g, st.Raw)
	printPeers(c.g, st.Raw)
	return nil
}

// printTemplates prints the "templates" array of a status document, if
// any: each template with its count of live keys. run checks the writes.
func printTemplates(g *globals, raw json.RawMessage) {
	var doc struct {
		Templates []locker.StatusTemplate `json:"templates"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Templates) == 0 {
		return
	}
	fmt.Fprintln(g.stdout)
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TEMPLATE\tSPEC\tLIVE KEYS\tWAITERS")
	for _, t := range doc.Templates {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", t.Name, t.Spec, t.Live, t.Waiters)
	}
	tw.Flush()
}

// printPeers prints the "peers" array of a status document, if any, as a
// table of whatever fields its objects have. run checks the writes.
func printPeers(g *globals, raw json.RawMessage) {
	var doc struct {
		Peers []map[string]any `json:"peers"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Peers) == 0 {
		return
	}
	cols := map[string]bool{}
	for _, p := range doc.Peers {
		for k := range p {
			cols[k] = true
		}
	}
	names := make([]string, 0, len(cols))
	for k := range cols {
		if k != "id" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	if cols["id"] {
		names = append([]string{"id"}, names...)
	}
	fmt.Fprintln(g.stdout)
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(names, "\t")))
	for _, p := range doc.Peers {
		vals := make([]string, len(names))
		for i, n := range names {
			if v, ok := p[n]; ok {
				vals[i] = fmt.Sprint(v)
			}
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	tw.Flush()
}
