package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/lockerd/lockerd/loadstats"
	"github.com/lockerd/lockerd/locker"
)

func init() {
	benchCommand = func(g *globals) (command, bool) { return &BenchCommand{g: g}, true }
}

// BenchCommand is "lockerctl bench": it drives lockerd through the Go
// client from many goroutines and prints throughput, latency percentiles
// and go/sorry/error counts.
type BenchCommand struct{ g *globals }

// Usage implements command.
func (c *BenchCommand) Usage() string {
	return "bench [-c N] [-d D] [-k KEY] [--json]  load test through the Go client: decisions/s, latency"
}

// benchOptions are the parsed flags of lockerctl bench.
type benchOptions struct {
	client     locker.ClientConfig
	goroutines int
	sockets    int
	duration   time.Duration
	key        string
	n          int64
	wait       bool
	json       bool
}

// Run implements command. It prints decisions/s, p50/p90/p99/p99.9
// latency and go/sorry/error counts, with a progress line every second
// when stdout is a terminal, or one JSON object with --json.
func (c *BenchCommand) Run(ctx context.Context, args []string) error {
	var o benchOptions
	fs := c.g.flagSet("bench")
	fs.IntVarP(&o.goroutines, "concurrency", "c", 64, "goroutines making requests back to back")
	fs.IntVar(&o.sockets, "sockets", 1, "clients (DEALER sockets) the goroutines are spread over")
	fs.DurationVarP(&o.duration, "duration", "d", 10*time.Second, "how long to run")
	fs.StringVarP(&o.key, "key", "k", locker.DefaultKey, "key to take from")
	fs.Int64VarP(&o.n, "n", "n", 1, "tokens per request")
	fs.BoolVar(&o.wait, "wait", false, "send wait requests (held until go, at most the duration) instead of take")
	fs.BoolVar(&o.json, "json", false, "print one JSON object")
	if err := c.g.parse(fs, c, args); err != nil {
		return err
	}
	if err := checkKeyN(o.key, o.n); err != nil {
		return err
	}
	sec, err := c.g.security()
	if err != nil {
		return err
	}
	o.client = locker.ClientConfig{Endpoints: c.g.servers, Timeout: c.g.timeout, Security: sec}
	var progress io.Writer
	if !o.json && isTerminal(c.g.stdout) {
		progress = c.g.stdout
	}
	s, err := runBench(ctx, o, progress)
	if err != nil {
		return err
	}
	if o.json {
		return s.WriteJSON(c.g.stdout)
	}
	return s.WriteText(c.g.stdout)
}

// runBench runs the load described by o against lockerd and returns its
// summary. When progress is not nil a line is written to it every second.
func runBench(ctx context.Context, o benchOptions, progress io.Writer) (loadstats.Summary, error) {
	if o.goroutines < 1 || o.sockets < 1 || o.sockets > o.goroutines {
		return loadstats.Summary{}, errors.New("need 1 <= --sockets <= --concurrency")
	}
	if o.duration <= 0 {
		return loadstats.Summary{}, errors.New("--duration must be positive")
	}
	clients := make([]*locker.Client, o.sockets)
	for i := range clients {
		cl, err := locker.NewClient(o.client)
		if err != nil {
			return loadstats.Summary{}, err
		}
		defer cl.Close()
		clients[i] = cl
	}
	opts := loadstats.Options{Goroutines: o.goroutines, Duration: o.duration}
	if progress != nil {
		var last int64
		var lastT time.Duration
		opts.Progress = func(el time.Duration, done int64) {
			rate := float64(done-last) / (el - lastT).Seconds()
			last, lastT = done, el
			fmt.Fprintf(progress, "%5.1fs %10d requests %10.0f/s\n", el.Seconds(), done, rate)
		}
	}
	hold := min(o.duration, locker.DefaultHold)
	return loadstats.Run(ctx, opts, func(i int) (loadstats.Work, func(), error) {
		cl := clients[i%len(clients)]
		return loadstats.Loop(func() (loadstats.Outcome, error) {
			var d locker.Decision
			var err error
			if o.wait {
				d, err = cl.WaitMax(ctx, o.key, o.n, hold)
			} else {
				d, err = cl.Take(ctx, o.key, o.n)
			}
			switch {
			case err != nil:
				return loadstats.Error, err
			case d.OK:
				return loadstats.Go, nil
			}
			return loadstats.Sorry, nil
		}), nil, nil
	})
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
