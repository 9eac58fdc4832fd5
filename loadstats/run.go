package loadstats

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome is the result of one request.
type Outcome uint8

// Outcomes.
const (
	Go Outcome = iota
	Sorry
	Error
	// Skip is a request that is not counted, such as one abandoned
	// because the run ended while it was in flight.
	Skip
)

// Worker is one load goroutine's record: its latency histogram, its
// counts, and a counter that the progress reporter reads.
//
// A Worker is owned by one goroutine; only Done may be read by others.
type Worker struct {
	Hist   Histogram
	Counts Counts
	done   atomic.Int64
}

// Observe records one answered request that took d, or a failed one.
// Failed requests count as errors and are kept out of the histogram.
func (w *Worker) Observe(d time.Duration, o Outcome) {
	switch o {
	case Skip:
		return
	case Go:
		w.Counts.Go++
	case Sorry:
		w.Counts.Sorry++
	default:
		w.Counts.Errors++
		w.done.Add(1)
		return
	}
	w.Hist.Record(d)
	w.done.Add(1)
}

// Done returns how many requests the worker has finished so far.
func (w *Worker) Done() int64 { return w.done.Load() }

// Work is one load goroutine. It makes requests until stop is closed and
// records each in w. Requests still in flight when stop closes may finish
// and be recorded.
type Work func(stop <-chan struct{}, w *Worker) error

// Options configures Run.
type Options struct {
	// Name labels the summary.
	Name string
	// Goroutines is how many Work goroutines run; at least 1.
	Goroutines int
	// Duration is how long they run.
	Duration time.Duration
	// Progress, if not nil, is called about once a second with the time
	// since the start and the requests finished so far.
	Progress func(elapsed time.Duration, done int64)
}

// Run sets up opts.Goroutines workers with setup (serially, before the
// clock starts; setup(i) returns the work of goroutine i and a cleanup
// called after it ends), runs them for opts.Duration or until ctx is done,
// and summarises. It returns the first error a setup or work returned.
func Run(ctx context.Context, opts Options, setup func(i int) (Work, func(), error)) (Summary, error) {
	if opts.Goroutines < 1 {
		return Summary{}, errors.New("loadstats: goroutines must be at least 1")
	}
	works := make([]Work, 0, opts.Goroutines)
	var cleanups []func()
	defer func() {
		for _, c := range cleanups {
			if c != nil {
				c()
			}
		}
	}()
	for i := 0; i < opts.Goroutines; i++ {
		w, c, err := setup(i)
		cleanups = append(cleanups, c)
		if err != nil {
			return Summary{}, err
		}
		works = append(works, w)
	}
	workers := make([]*Worker, len(works))
	for i := range workers {
		workers[i] = new(Worker)
	}
	total := func() int64 {
		var n int64
		for _, w := range workers {
			n += w.Done()
		}
		return n
	}

	stop := make(chan struct{})
	errs := make([]error, len(works))
	var wg sync.WaitGroup
	start := time.Now()
	for i, work := range works {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = work(stop, workers[i])
		}()
	}
	timer := time.NewTimer(opts.Duration)
	defer timer.Stop()
	var tick <-chan time.Time
	if opts.Progress != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-timer.C:
			break wait
		case <-tick:
			opts.Progress(time.Since(start), total())
		}
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	var h Histogram
	var c Counts
	for _, w := range workers {
		h.Merge(&w.Hist)
		c.Go += w.Counts.Go
		c.Sorry += w.Counts.Sorry
		c.Errors += w.Counts.Errors
	}
	return Summarize(opts.Name, opts.Goroutines, elapsed, &h, c), errors.Join(errs...)
}

// Loop returns a Work that calls op back to back until stop is closed,
// timing each call.
func Loop(op func() (Outcome, error)) Work {
	return func(stop <-chan struct{}, w *Worker) error {
		for {
			select {
			case <-stop:
				return nil
			default:
			}
			t0 := time.Now()
			o, err := op()
			if err != nil && o != Skip {
				o = Error
			}
			w.Observe(time.Since(t0), o)
		}
	}
}

// Classify maps a reply body to an outcome: "go..." is Go, "sorry..." is
// Sorry, "error..." is Error, and anything else (an echo) counts as Go.
func Classify(reply []byte) Outcome {
	switch {
	case len(reply) >= 5 && string(reply[:5]) == "sorry":
		return Sorry
	case len(reply) >= 5 && string(reply[:5]) == "error":
		return Error
	}
	return Go
}
