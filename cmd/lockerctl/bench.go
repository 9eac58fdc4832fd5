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

// BenchCommand is "lockerctl bench": it drives lockerd through the Go
// client from many goroutines and prints throughput, latency percentiles
// and go/sorry/error counts.
type BenchCommand struct{ g *globals }

// Usage implements command.
func (c *BenchCommand) Usage() string {
	return "bench [-c N] [-d D] [-k KEY] [--json]  load test through the Go client: decisions/s, latency"
}

const (
	// maxConcurrency bounds -c: each goroutine keeps a 16 KiB histogram
	// and a request in flight.
	maxConcurrency = 4096
	// maxPerSocket bounds the requests in flight on one client socket:
	// beyond ZeroMQ's default queue of 1000 messages, requests are
	// dropped and come back as timeouts.
	maxPerSocket = 1000
	// maxSockets bounds --sockets.
	maxSockets = 256
	// benchGrace is how long requests still in flight when -d ends may
	// take to finish; after it they are abandoned and not counted, so
	// bench ends within -d plus benchGrace.
	benchGrace = 500 * time.Millisecond
)

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
	var err error
	o.client, err = c.g.clientConfig()
	if err != nil {
		return err
	}
	// Each request may make the client's default attempts, each within
	// --timeout; the run's end cuts them short anyway.
	o.client.Timeout, o.client.Attempts = c.g.timeout, 0
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
	if err := o.check(); err != nil {
		return loadstats.Summary{}, err
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
	// Requests end with the run, plus benchGrace: the clock starts when
	// the clients are ready, a moment before loadstats.Run starts its own.
	end := time.Now().Add(o.duration)
	opCtx, cancel := context.WithDeadline(ctx, end.Add(benchGrace))
	defer cancel()
	return loadstats.Run(ctx, opts, func(i int) (loadstats.Work, func(), error) {
		cl := clients[i%len(clients)]
		return loadstats.Loop(func() (loadstats.Outcome, error) {
			return benchOne(opCtx, cl, o, end)
		}), nil, nil
	})
}

// check refuses options that cannot make a useful run, naming the flag
// the user gives.
func (o benchOptions) check() error {
	switch {
	case o.goroutines < 1 || o.goroutines > maxConcurrency:
		return fmt.Errorf("-c %d: want 1 to %d goroutines", o.goroutines, maxConcurrency)
	case o.sockets < 1 || o.sockets > min(o.goroutines, maxSockets):
		return fmt.Errorf("--sockets %d: want 1 to %d (no more than -c)", o.sockets, min(o.goroutines, maxSockets))
	case (o.goroutines+o.sockets-1)/o.sockets > maxPerSocket:
		return fmt.Errorf("-c %d over %d socket(s) is over %d requests in flight per socket, more than ZeroMQ queues: raise --sockets to %d or more",
			o.goroutines, o.sockets, maxPerSocket, (o.goroutines+maxPerSocket-1)/maxPerSocket)
	case o.duration <= 0:
		return errors.New("-d must be positive")
	}
	return nil
}

// benchOne makes one request of the run that ends at end. A request
// abandoned because the run ended is not counted.
func benchOne(ctx context.Context, cl *locker.Client, o benchOptions, end time.Time) (loadstats.Outcome, error) {
	var d locker.Decision
	var err error
	if o.wait {
		hold := min(time.Until(end), locker.DefaultHold).Truncate(time.Millisecond)
		d, err = cl.WaitMax(ctx, o.key, o.n, max(hold, 0))
	} else {
		d, err = cl.Take(ctx, o.key, o.n)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return loadstats.Skip, nil
	case err != nil:
		return loadstats.Error, err
	case d.OK:
		return loadstats.Go, nil
	}
	return loadstats.Sorry, nil
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	if cw, ok := w.(*checkedWriter); ok {
		w = cw.w
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
