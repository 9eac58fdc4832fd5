// Package loadstats records request latencies in a log-linear histogram and
// summarises a load run: throughput, percentiles and go/sorry/error counts.
// It is shared by lockerctl bench and the programs under bench/.
package loadstats

import (
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"time"
)

// subBits is log2 of the sub-buckets per power of two: 32 sub-buckets keep
// a recorded value within about 3% of the true one.
const subBits = 5

const (
	subCount = 1 << subBits
	// numBuckets covers every non-negative int64 nanosecond count.
	numBuckets = (64 - subBits + 1) * subCount
)

// Histogram counts durations in log-linear buckets: exact below 32 ns, then
// 32 buckets per power of two. It takes 16 KiB whatever it records.
//
// The zero value is an empty histogram. A Histogram is not safe for
// concurrent use: give each goroutine its own and Merge them at the end.
type Histogram struct {
	counts [numBuckets]int64
	n      int64
	max    time.Duration
}

func bucketOf(v int64) int {
	if v < subCount {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	e := 63 - bits.LeadingZeros64(uint64(v)) // v in [2^e, 2^(e+1))
	shift := e - subBits
	return (shift+1)*subCount + int((v>>shift)&(subCount-1))
}

// lowerBound is the smallest value that falls in bucket i.
func lowerBound(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	shift := i/subCount - 1
	return (int64(subCount) | int64(i%subCount)) << shift
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucketOf(int64(d))]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

// Merge adds every duration recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() int64 { return h.n }

// Max returns the largest recorded duration.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the duration below which a fraction q (0..1) of the
// recorded durations lie, as the midpoint of its bucket; 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo := lowerBound(i)
			hi := lowerBound(i + 1)
			mid := time.Duration(lo + (hi-lo)/2)
			if mid > h.max {
				mid = h.max
			}
			return mid
		}
	}
	return h.max
}

// Counts is the outcome of a run.
type Counts struct {
	Go, Sorry, Errors int64
}

// Summary is the result of one load run, in the form lockerctl bench
// --json prints.
type Summary struct {
	Name               string  `json:"name,omitempty"`
	Goroutines         int     `json:"goroutines"`
	DurationSeconds    float64 `json:"duration_seconds"`
	Decisions          int64   `json:"decisions"`
	DecisionsPerSecond float64 `json:"decisions_per_second"`
	P50us              float64 `json:"p50_us"`
	P90us              float64 `json:"p90_us"`
	P99us              float64 `json:"p99_us"`
	P999us             float64 `json:"p999_us"`
	MaxUs              float64 `json:"max_us"`
	Go                 int64   `json:"go"`
	Sorry              int64   `json:"sorry"`
	Errors             int64   `json:"errors"`
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// Summarize builds a Summary from the merged histogram of answered
// requests, the outcome counts and the measured wall time.
func Summarize(name string, goroutines int, elapsed time.Duration, h *Histogram, c Counts) Summary {
	s := Summary{
		Name:            name,
		Goroutines:      goroutines,
		DurationSeconds: elapsed.Seconds(),
		Decisions:       c.Go + c.Sorry,
		P50us:           us(h.Quantile(0.50)),
		P90us:           us(h.Quantile(0.90)),
		P99us:           us(h.Quantile(0.99)),
		P999us:          us(h.Quantile(0.999)),
		MaxUs:           us(h.Max()),
		Go:              c.Go,
		Sorry:           c.Sorry,
		Errors:          c.Errors,
	}
	if elapsed > 0 {
		s.DecisionsPerSecond = float64(s.Decisions) / elapsed.Seconds()
	}
	return s
}

// WriteText prints s for people.
func (s Summary) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "%s%d goroutines, %.1fs: %.0f decisions/s\n"+
		"latency p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n"+
		"go %d  sorry %d  errors %d\n",
		prefix(s.Name), s.Goroutines, s.DurationSeconds, s.DecisionsPerSecond,
		fmtUs(s.P50us), fmtUs(s.P90us), fmtUs(s.P99us), fmtUs(s.P999us), fmtUs(s.MaxUs),
		s.Go, s.Sorry, s.Errors)
	return err
}

// WriteJSON prints s as one JSON object on one line.
func (s Summary) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func prefix(name string) string {
	if name == "" {
		return ""
	}
	return name + ": "
}

func fmtUs(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.1fms", v/1000)
	}
	return fmt.Sprintf("%.0fµs", v)
}
