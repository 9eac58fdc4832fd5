package locker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

func mustSpec(tb testing.TB, spec string) locker.KeyConfig {
	tb.Helper()
	k, err := locker.ParseKeySpec(spec)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// TestAlgorithmKeysExact walks keys of each algorithm through a Counter
// at fixed instants and checks every field of every decision.
func TestAlgorithmKeysExact(t *testing.T) {
	base := time.Unix(1_800_000_000, 0) // a multiple of 1s: window 1800000000
	ms := time.Millisecond
	const k = 1_800_000_000
	type step struct {
		off  time.Duration
		n    int64
		want locker.Decision
	}
	tests := []struct {
		spec  string
		steps []step
	}{
		{"s=3/1s/sliding", []step{
			{0, 1, locker.Decision{OK: true, Remaining: 2, Reset: time.Second, Window: k}},
			{900 * ms, 2, locker.Decision{OK: true, Remaining: 0, Reset: time.Second, Window: k}},
			// across the fixed window's edge: a fixed window would grant
			{1000*ms - 1, 1, locker.Decision{Reset: 900*ms + 1, RetryAfter: 1, Window: k}},
			{1000 * ms, 1, locker.Decision{OK: true, Remaining: 0, Reset: time.Second, Window: k + 1}},
			{1100 * ms, 1, locker.Decision{Reset: 900 * ms, RetryAfter: 800 * ms, Window: k + 1}},
			{1100 * ms, 3, locker.Decision{Reset: 900 * ms, RetryAfter: 900 * ms, Window: k + 1}},
			{2000 * ms, 3, locker.Decision{OK: true, Remaining: 0, Reset: time.Second, Window: k + 2}},
		}},
		{"g=10/1s/gcra", []step{ // a token back every 100ms, burst 10
			{0, 10, locker.Decision{OK: true, Remaining: 0, Reset: time.Second, Window: k}},
			{50 * ms, 1, locker.Decision{Reset: 950 * ms, RetryAfter: 50 * ms, Window: k}},
			{100 * ms, 1, locker.Decision{OK: true, Remaining: 0, Reset: time.Second, Window: k}},
			{350 * ms, 3, locker.Decision{Reset: 750 * ms, RetryAfter: 50 * ms, Window: k}},
			{400 * ms, 3, locker.Decision{OK: true, Remaining: 0, Reset: time.Second, Window: k}},
		}},
		{"p=3/1s/gcra:1", []step{ // evenly spaced, one every 333.33ms
			{0, 1, locker.Decision{OK: true, Remaining: 0, Reset: 333333334, Window: k}},
			{1, 1, locker.Decision{Reset: 333333333, RetryAfter: 333333333, Window: k}},
			{333333334, 1, locker.Decision{OK: true, Remaining: 0, Reset: 333333334, Window: k}},
			// the TAT is 666666667⅓ns: not yet at 666666667
			{666666667, 1, locker.Decision{Reset: 1, RetryAfter: 1, Window: k}},
			{666666668, 1, locker.Decision{OK: true, Remaining: 0, Reset: 333333334, Window: k}},
			{999999999, 1, locker.Decision{Reset: 3, RetryAfter: 3, Window: k}},
			{time.Second + 2, 1, locker.Decision{OK: true, Remaining: 0, Reset: 333333334, Window: k + 1}},
		}},
		{"b=3/1s/gcra", []step{ // three thirds of a second add up to one, exactly
			{0, 3, locker.Decision{OK: true, Remaining: 0, Reset: time.Second, Window: k}},
			{time.Second - 1, 3, locker.Decision{Reset: 1, RetryAfter: 1, Window: k}},
			{time.Second, 3, locker.Decision{OK: true, Remaining: 0, Reset: time.Second, Window: k + 1}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			c := mustCounter(t, mustSpec(t, tc.spec))
			name := mustSpec(t, tc.spec).Name
			for i, s := range tc.steps {
				got, err := c.TakeAt(base.Add(s.off), name, s.n)
				if err != nil || got != s.want {
					t.Fatalf("step %d: TakeAt(+%v, %d)=%+v, %v, want %+v", i, s.off, s.n, got, err, s.want)
				}
			}
		})
	}
}

// TestAlgorithmKeysBadCount refuses N above a gcra key's burst and a
// multi-limit key's smallest limit, as N above the limit of a fixed key.
func TestAlgorithmKeysBadCount(t *testing.T) {
	c := mustCounter(t, mustSpec(t, "g=10/1s/gcra:2"), mustSpec(t, "m=10/1s+3/1h/sliding"), mustSpec(t, "s=4/1s/sliding"))
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		key  string
		n    int64
		want error
	}{{"g", 2, nil}, {"g", 3, locker.ErrBadCount}, {"m", 3, nil}, {"m", 4, locker.ErrBadCount}, {"s", 4, nil}, {"s", 5, locker.ErrBadCount}, {"s", 0, locker.ErrBadCount}} {
		if _, err := c.TakeAt(now, tc.key, tc.n); !errors.Is(err, tc.want) {
			t.Errorf("TakeAt(%s, %d) error %v, want %v", tc.key, tc.n, err, tc.want)
		}
		if _, err := c.CheckAt(now, tc.key, tc.n); !errors.Is(err, tc.want) {
			t.Errorf("CheckAt(%s, %d) error %v, want %v", tc.key, tc.n, err, tc.want)
		}
	}
}

// TestAlgorithmKeysAllocs keeps takes on sliding, gcra and multi-limit
// keys free of allocations once the key has seen its limit.
func TestAlgorithmKeysAllocs(t *testing.T) {
	c := mustCounter(t, mustSpec(t, "s=100/1ms/sliding"), mustSpec(t, "g=100/1ms/gcra"), mustSpec(t, "m=100/1ms/sliding+1000/1s/gcra"))
	ns := time.Unix(1_800_000_000, 0).UnixNano()
	for _, key := range []string{"s", "g", "m"} {
		for i := 0; i < 200; i++ { // grow the ring to the limit
			c.TakeAt(time.Unix(0, ns), key, 1)
		}
		if a := testing.AllocsPerRun(1000, func() {
			ns += 3000
			c.TakeAt(time.Unix(0, ns), key, 1)
		}); a != 0 {
			t.Errorf("TakeAt(%s) allocates %v times", key, a)
		}
	}
}

// TestReconfigureAlgorithms checks what a reload keeps: a sliding or gcra
// limit that keeps its algorithm, window and burst keeps its grants under
// a new limit; one whose algorithm changes starts full at the latest
// instant a take was made at, so nothing granted before is granted again.
func TestReconfigureAlgorithms(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name     string
		from, to string
		take     int64 // before the reload, at now
		after    time.Duration
		wantGo   int // of 20 takes of 1 at now+after
	}{
		{"sliding lowered", "k=10/1s/sliding", "k=6/1s/sliding", 4, 0, 2},
		{"sliding lowered below used", "k=10/1s/sliding", "k=3/1s/sliding", 4, 999 * time.Millisecond, 0},
		{"sliding lowered, grants expired", "k=10/1s/sliding", "k=3/1s/sliding", 4, time.Second, 3},
		{"sliding raised", "k=5/1s/sliding", "k=8/1s/sliding", 5, 0, 3},
		{"gcra raised", "k=10/1s/gcra", "k=20/1s/gcra", 10, 0, 0},
		{"fixed to sliding", "k=10/1s", "k=10/1s/sliding", 1, 500 * time.Millisecond, 0},
		{"fixed to sliding, a window on", "k=10/1s", "k=10/1s/sliding", 1, time.Second, 10},
		{"sliding to gcra", "k=10/1s/sliding", "k=10/1s/gcra", 1, 0, 0},
		{"sliding window changed", "k=10/1s/sliding", "k=10/2s/sliding", 1, time.Second, 0},
		{"part added", "k=10/1s/sliding", "k=10/1s/sliding+20/1h/sliding", 3, 0, 0},
		{"part added, an hour on", "k=10/1s/sliding", "k=10/1s/sliding+20/1h/sliding", 3, time.Hour, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCounter(t, mustSpec(t, tc.from))
			if d, err := c.TakeAt(now, "k", tc.take); err != nil || !d.OK {
				t.Fatalf("take %d: %+v, %v", tc.take, d, err)
			}
			if err := c.Reconfigure([]locker.KeyConfig{mustSpec(t, tc.to)}); err != nil {
				t.Fatal(err)
			}
			got := 0
			for i := 0; i < 20; i++ {
				if d, err := c.TakeAt(now.Add(tc.after), "k", 1); err != nil {
					t.Fatal(err)
				} else if d.OK {
					got++
				}
			}
			if got != tc.wantGo {
				t.Fatalf("%d go after the reload, want %d", got, tc.wantGo)
			}
		})
	}
}

// TestMultiLimitAllOrNone takes from a key of two limits at fixed
// instants: a request that one limit refuses takes nothing from the
// other; a sorry's RetryAfter is the time until both could grant; a go
// reports the limit with the fewest tokens left.
func TestMultiLimitAllOrNone(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	ms := time.Millisecond
	const k = 1_800_000_000
	c := mustCounter(t, mustSpec(t, "m=3/1s+2/100ms/sliding"))
	steps := []struct {
		off  time.Duration
		n    int64
		want locker.Decision
	}{
		// both grant; the 100ms limit has fewer left
		{0, 2, locker.Decision{OK: true, Remaining: 0, Reset: 100 * ms, Window: 10 * k}},
		// the 100ms limit refuses: the 1s one keeps its 1 token
		{10 * ms, 1, locker.Decision{Reset: 90 * ms, RetryAfter: 90 * ms, Window: 10 * k}},
		{20 * ms, 1, locker.Decision{Reset: 80 * ms, RetryAfter: 80 * ms, Window: 10 * k}},
		{100 * ms, 1, locker.Decision{OK: true, Remaining: 0, Reset: 900 * ms, Window: k}},
		// now the 1s limit refuses until its window ends; the 100ms one
		// could grant from 200ms: RetryAfter is the later
		{150 * ms, 1, locker.Decision{Reset: 850 * ms, RetryAfter: 850 * ms, Window: k}},
		{1000*ms - 1, 1, locker.Decision{Reset: 1, RetryAfter: 1, Window: k}},
		// both grant again, and the refusals took nothing from either
		{1000 * ms, 2, locker.Decision{OK: true, Remaining: 0, Reset: 100 * ms, Window: 10*k + 10}},
	}
	for i, s := range steps {
		got, err := c.TakeAt(base.Add(s.off), "m", s.n)
		if err != nil || got != s.want {
			t.Fatalf("step %d: TakeAt(+%v, %d)=%+v, %v, want %+v", i, s.off, s.n, got, err, s.want)
		}
	}
}
