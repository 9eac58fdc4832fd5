package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/lockerd/lockerd/bench/stats"
	"github.com/lockerd/lockerd/locker"
)

// BenchCommand is "lockerctl bench": it drives lockerd through the Go
// client from many goroutines and prints throughput, latency percentiles
// and go/sorry/error counts.
type BenchCommand struct {
	// Stdout and Stderr default to os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
}

const benchUsage = `usage: lockerctl bench [flags]

Drives lockerd through the Go client: GOROUTINES goroutines share one
client (or --sockets clients) and take N tokens of KEY back to back for
DURATION. Prints decisions/s, p50/p90/p99/p99.9 latency and go/sorry/error
counts; a progress line every second when stdout is a terminal.

flags:
`

// Usage prints the command's help to Stderr.
func (c *BenchCommand) Usage() {
	w := c.stderr()
	fmt.Fprint(w, benchUsage)
	fs, _ := newBenchFlags(w)
	fs.PrintDefaults()
}

func (c *BenchCommand) stdout() io.Writer {
	if c.Stdout != nil {
		return c.Stdout
	}
	return os.Stdout
}

func (c *BenchCommand) stderr() io.Writer {
	if c.Stderr != nil {
		return c.Stderr
	}
	return os.Stderr
}

// benchOptions are the parsed flags of lockerctl bench.
type benchOptions struct {
	endpoints  []string
	goroutines int
	sockets    int
	duration   time.Duration
	key        string
	n          int64
	wait       bool
	json       bool
}

func newBenchFlags(stderr io.Writer) (*pflag.FlagSet, *benchOptions) {
	o := &benchOptions{}
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringSliceVarP(&o.endpoints, "endpoint", "e", []string{"tcp://127.0.0.1:7777"}, "lockerd endpoints, tried in order")
	fs.IntVarP(&o.goroutines, "concurrency", "c", 64, "goroutines making requests")
	fs.IntVar(&o.sockets, "sockets", 1, "clients (DEALER sockets) the goroutines are spread over")
	fs.DurationVarP(&o.duration, "duration", "d", 10*time.Second, "how long to run")
	fs.StringVarP(&o.key, "key", "k", locker.DefaultKey, "key to take from")
	fs.Int64VarP(&o.n, "tokens", "n", 1, "tokens per request")
	fs.BoolVar(&o.wait, "wait", false, "send wait requests (held by the server until go, at most the duration) instead of take")
	fs.BoolVar(&o.json, "json", false, "print one JSON object")
	return fs, o
}

// Run parses args, runs the benchmark and prints the summary.
func (c *BenchCommand) Run(ctx context.Context, args []string) error {
	fs, o := newBenchFlags(c.stderr())
	fs.Usage = c.Usage
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	var progress io.Writer
	if !o.json && isTerminal(c.stdout()) {
		progress = c.stdout()
	}
	s, err := runBench(ctx, *o, progress)
	if err != nil {
		return err
	}
	if o.json {
		return s.WriteJSON(c.stdout())
	}
	return s.WriteText(c.stdout())
}

// runBench runs the load described by o against lockerd and returns its
// summary. When progress is not nil a line is written to it every second.
func runBench(ctx context.Context, o benchOptions, progress io.Writer) (stats.Summary, error) {
	if o.goroutines < 1 || o.sockets < 1 || o.sockets > o.goroutines {
		return stats.Summary{}, errors.New("bench: need 1 <= sockets <= goroutines")
	}
	if o.duration <= 0 {
		return stats.Summary{}, errors.New("bench: duration must be positive")
	}
	clients := make([]*locker.Client, o.sockets)
	for i := range clients {
		cl, err := locker.NewClient(locker.ClientConfig{Endpoints: o.endpoints})
		if err != nil {
			return stats.Summary{}, fmt.Errorf("bench: %w", err)
		}
		defer cl.Close()
		clients[i] = cl
	}
	opts := stats.Options{Goroutines: o.goroutines, Duration: o.duration}
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
	return stats.Run(ctx, opts, func(i int) (stats.Work, func(), error) {
		cl := clients[i%len(clients)]
		return stats.Loop(func() (stats.Outcome, error) {
			var d locker.Decision
			var err error
			if o.wait {
				d, err = cl.WaitMax(ctx, o.key, o.n, hold)
			} else {
				d, err = cl.Take(ctx, o.key, o.n)
			}
			switch {
			case err != nil:
				return stats.Error, err
			case d.OK:
				return stats.Go, nil
			}
			return stats.Sorry, nil
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
