// Package runtab turns the runs of the bench programs (loadstats
// summaries, one per round) into the figures of their markdown tables:
// medians over rounds, per-round ratios with their spread, rates and
// latencies. bench/report and bench/lockcmp print with it.
package runtab

import (
	"fmt"
	"slices"
	"sort"

	"github.com/lockerd/lockerd/loadstats"
)

// Median returns the median of v, 0 for none; v is not changed.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// DPS is a run's decisions (or cycles) per second.
func DPS(s loadstats.Summary) float64 { return s.DecisionsPerSecond }

// Pick returns the median over the runs r of f.
func Pick(r []loadstats.Summary, f func(loadstats.Summary) float64) float64 {
	v := make([]float64, len(r))
	for i, s := range r {
		v[i] = f(s)
	}
	return Median(v)
}

// Spread is v as "**median** [min..max]", or "" for none.
func Spread(v []float64) string {
	if len(v) == 0 {
		return ""
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return fmt.Sprintf("**%.2f** [%.2f..%.2f]", Median(s), s[0], s[len(s)-1])
}

// RoundRatios is B/A of decisions per second, round by round, as Spread
// shows it: "" when no round of A has a rate.
func RoundRatios(ra, rb []loadstats.Summary) string {
	var ratios []float64
	for i := 0; i < len(ra) && i < len(rb); i++ {
		if ra[i].DecisionsPerSecond > 0 {
			ratios = append(ratios, rb[i].DecisionsPerSecond/ra[i].DecisionsPerSecond)
		}
	}
	return Spread(ratios)
}

// OfMedians is B/A of the median rates, or "" when A has none.
func OfMedians(ra, rb []loadstats.Summary) string {
	if ma := Pick(ra, DPS); ma > 0 && len(rb) > 0 {
		return fmt.Sprintf("%.2f", Pick(rb, DPS)/ma)
	}
	return ""
}

// Rate is the median rate of r, with the errors of every round if any,
// or "missing" for no run.
func Rate(r []loadstats.Summary) string {
	if len(r) == 0 {
		return "missing"
	}
	var errs int64
	for _, s := range r {
		errs += s.Errors
	}
	out := fmt.Sprintf("%.0f", Pick(r, DPS))
	if errs > 0 {
		out += fmt.Sprintf(" (%d errors)", errs)
	}
	return out
}

// Lat is "p50 / p99" in µs, medians over r, or "" for no run.
func Lat(r []loadstats.Summary) string {
	if len(r) == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f / %.0f",
		Pick(r, func(s loadstats.Summary) float64 { return s.P50us }),
		Pick(r, func(s loadstats.Summary) float64 { return s.P99us }))
}
