package loadstats

import (
	"context"
	"math"
	"testing"
	"time"
)

func TestBucketsRoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, 31, 32, 33, 63, 64, 100, 1000, 12345, 1e6, 1e9, 1 << 40, math.MaxInt64} {
		i := bucketOf(v)
		lo, hi := lowerBound(i), lowerBound(i+1)
		if v < lo || (hi > lo && v >= hi) {
			t.Errorf("bucketOf(%d)=%d with range [%d,%d)", v, i, lo, hi)
		}
		if i >= numBuckets {
			t.Errorf("bucketOf(%d)=%d, beyond %d buckets", v, i, numBuckets)
		}
	}
}

func TestQuantile(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 500 * time.Microsecond},
		{0.9, 900 * time.Microsecond},
		{0.99, 990 * time.Microsecond},
		{1, 1000 * time.Microsecond},
	}
	for _, tc := range tests {
		got := h.Quantile(tc.q)
		if diff := math.Abs(float64(got-tc.want)) / float64(tc.want); diff > 0.04 {
			t.Errorf("Quantile(%v)=%v, want %v within 4%%", tc.q, got, tc.want)
		}
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&h)
	if m.Count() != 2000 || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Errorf("merged: count %d p50 %v, want 2000 and %v", m.Count(), m.Quantile(0.5), h.Quantile(0.5))
	}
}

func TestRun(t *testing.T) {
	n := 0
	s, err := Run(context.Background(), Options{Goroutines: 3, Duration: 50 * time.Millisecond},
		func(i int) (Work, func(), error) {
			return Loop(func() (Outcome, error) {
				time.Sleep(time.Millisecond)
				return Outcome(i % 2), nil
			}), func() { n++ }, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("cleanups ran %d times, want 3", n)
	}
	if s.Go == 0 || s.Sorry == 0 || s.Errors != 0 || s.Decisions != s.Go+s.Sorry {
		t.Errorf("counts %+v, want go and sorry, no errors", s)
	}
	if s.P50us < 900 {
		t.Errorf("p50 %vµs, want at least the 1ms sleep", s.P50us)
	}
}

func TestClassify(t *testing.T) {
	for body, want := range map[string]Outcome{"go 1 2 3": Go, "go": Go, "sorry 4 5": Sorry, "error x": Error, "take k 1": Go} {
		if got := Classify([]byte(body)); got != want {
			t.Errorf("Classify(%q)=%d, want %d", body, got, want)
		}
	}
}
