package locker_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// at returns the instant k·w + off since the epoch.
func at(k int64, w time.Duration, off time.Duration) time.Time {
	return time.Unix(0, k*int64(w)+int64(off))
}

func mustCounter(tb testing.TB, keys ...locker.KeyConfig) *locker.Counter {
	tb.Helper()
	c, err := locker.NewCounter(keys)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestWindowIndex(t *testing.T) {
	w := 800 * time.Millisecond
	tests := []struct {
		t    time.Time
		want int64
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(0, int64(w)-1), 0},
		{time.Unix(0, int64(w)), 1},
		{at(2244384793, w, 0), 2244384793},
		{at(2244384793, w, w-1), 2244384793},
		{time.Unix(0, -1), -1}, // before 1970: floor, not truncation
		{time.Unix(0, -int64(w)), -1},
		{time.Unix(0, -int64(w)-1), -2},
	}
	for _, tc := range tests {
		if got := locker.WindowIndex(tc.t, w); got != tc.want {
			t.Errorf("WindowIndex(%d ns)=%d, want %d", tc.t.UnixNano(), got, tc.want)
		}
	}
}

func TestFixedWindowEdges(t *testing.T) {
	const w = 800 * time.Millisecond
	const k = 2244384793
	type step struct {
		off     time.Duration // from the start of window k
		n       int64
		want    locker.Decision
		comment string
	}
	tests := []struct {
		name  string
		limit int64
		steps []step
	}{
		{"limit reached then next window", 5, []step{
			{0, 1, locker.Decision{OK: true, Remaining: 4, Reset: w, Window: k}, "first instant of the window"},
			{100 * time.Millisecond, 3, locker.Decision{OK: true, Remaining: 1, Reset: 700 * time.Millisecond, Window: k}, "N=3"},
			{200 * time.Millisecond, 2, locker.Decision{Reset: 600 * time.Millisecond, RetryAfter: 600 * time.Millisecond, Window: k}, "2 > 1 left: whole or nothing"},
			{300 * time.Millisecond, 1, locker.Decision{OK: true, Remaining: 0, Reset: 500 * time.Millisecond, Window: k}, "the last one"},
			{w - 1, 1, locker.Decision{Reset: 1, RetryAfter: 1, Window: k}, "last ns of the window"},
			{w, 1, locker.Decision{OK: true, Remaining: 4, Reset: w, Window: k + 1}, "first ns of the next"},
		}},
		{"limit 1", 1, []step{
			{w / 2, 1, locker.Decision{OK: true, Remaining: 0, Reset: w / 2, Window: k}, ""},
			{w/2 + 1, 1, locker.Decision{Reset: w/2 - 1, RetryAfter: w/2 - 1, Window: k}, ""},
			{3 * w, 1, locker.Decision{OK: true, Remaining: 0, Reset: w, Window: k + 3}, "windows skipped"},
		}},
		{"N equal to the limit", 5, []step{
			{0, 5, locker.Decision{OK: true, Remaining: 0, Reset: w, Window: k}, ""},
			{1, 1, locker.Decision{Reset: w - 1, RetryAfter: w - 1, Window: k}, ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCounter(t, locker.KeyConfig{Name: "api", Limit: tc.limit, Window: w})
			for i, s := range tc.steps {
				got, err := c.TakeAt(at(k, w, s.off), "api", s.n)
				if err != nil || got != s.want {
					t.Fatalf("step %d (%s): TakeAt(+%v, %d)=%+v, %v, want %+v", i, s.comment, s.off, s.n, got, err, s.want)
				}
			}
		})
	}
}

func TestCounterErrorsAndKeys(t *testing.T) {
	c := mustCounter(t,
		locker.KeyConfig{Name: "a", Limit: 2, Window: time.Second},
		locker.KeyConfig{Name: "b", Limit: 3, Window: time.Millisecond},
		locker.KeyConfig{Name: "day", Limit: 1e9, Window: 24 * time.Hour},
	)
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		key  string
		n    int64
		err  error
		ok   bool
		left int64
	}{
		{"nope", 1, locker.ErrUnknownKey, false, 0},
		{"a", 3, locker.ErrBadCount, false, 0},
		{"a", 0, locker.ErrBadCount, false, 0},
		{"a", -1, locker.ErrBadCount, false, 0},
		{"a", 2, nil, true, 0},
		{"b", 3, nil, true, 0}, // independent of a
		{"a", 1, nil, false, 0},
		{"day", 1e9, nil, true, 0},
		{"day", 1, nil, false, 0},
		{"default", 1, nil, true, 0}, // always there: 1 per second
		{"default", 1, nil, false, 0},
	}
	for i, tc := range tests {
		d, err := c.TakeAt(now, tc.key, tc.n)
		if !errors.Is(err, tc.err) || err == nil && (d.OK != tc.ok || d.OK && d.Remaining != tc.left) {
			t.Errorf("%d: TakeAt(%q, %d)=%+v, %v; want ok=%v remaining=%d err=%v", i, tc.key, tc.n, d, err, tc.ok, tc.left, tc.err)
		}
	}
	// A 1 ms window opens again 1 ms later; a day-long one does not.
	if d, _ := c.TakeAt(now.Add(time.Millisecond), "b", 3); !d.OK {
		t.Errorf("1ms window did not reopen: %+v", d)
	}
	if d, _ := c.TakeAt(now.Add(time.Hour), "day", 1); d.OK {
		t.Errorf("24h window reopened after an hour: %+v", d)
	}
}

func TestManyKeysIndependent(t *testing.T) {
	var keys []locker.KeyConfig
	for i := 0; i < 1000; i++ {
		keys = append(keys, locker.KeyConfig{Name: fmt.Sprintf("k%d", i), Limit: int64(i%7 + 1), Window: time.Second})
	}
	c := mustCounter(t, keys...)
	now := time.Unix(1_800_000_000, 0)
	for round := 0; round < 10; round++ {
		for _, k := range keys {
			c.TakeAt(now, k.Name, 1)
		}
	}
	for _, ks := range c.SnapshotAt(now) {
		if ks.Name == locker.DefaultKey {
			continue
		}
		if ks.Granted != ks.Limit {
			t.Fatalf("key %s granted %d, want its limit %d", ks.Name, ks.Granted, ks.Limit)
		}
	}
}

func TestNewCounterRejects(t *testing.T) {
	tests := []struct {
		name string
		keys []locker.KeyConfig
	}{
		{"zero limit", []locker.KeyConfig{{Name: "a", Limit: 0, Window: time.Second}}},
		{"limit above 1e9", []locker.KeyConfig{{Name: "a", Limit: 1e9 + 1, Window: time.Second}}},
		{"window below 1ms", []locker.KeyConfig{{Name: "a", Limit: 1, Window: time.Microsecond}}},
		{"window above 24h", []locker.KeyConfig{{Name: "a", Limit: 1, Window: 25 * time.Hour}}},
		{"bad name", []locker.KeyConfig{{Name: "a b", Limit: 1, Window: time.Second}}},
		{"duplicate", []locker.KeyConfig{{Name: "a", Limit: 1, Window: time.Second}, {Name: "a", Limit: 2, Window: time.Second}}},
	}
	for _, tc := range tests {
		if _, err := locker.NewCounter(tc.keys); err == nil {
			t.Errorf("%s: NewCounter accepted %+v", tc.name, tc.keys)
		}
	}
}

func TestReconfigure(t *testing.T) {
	w := time.Second
	now := at(1_800_000_000, w, 100*time.Millisecond)
	c := mustCounter(t, locker.KeyConfig{Name: "api", Limit: 5, Window: w}, locker.KeyConfig{Name: "old", Limit: 1, Window: w})
	c.TakeAt(now, "api", 4)
	// Same window: the 4 granted stay granted under the new limit.
	if err := c.Reconfigure([]locker.KeyConfig{{Name: "api", Limit: 6, Window: w}, {Name: "new", Limit: 1, Window: w}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.TakeAt(now, "api", 2); !d.OK || d.Remaining != 0 {
		t.Fatalf("after raising the limit: %+v, want go with 0 left", d)
	}
	if _, err := c.TakeAt(now, "old", 1); !errors.Is(err, locker.ErrUnknownKey) {
		t.Fatalf("removed key: %v, want ErrUnknownKey", err)
	}
	// Lowering below what was granted: nothing more in this window.
	c.Reconfigure([]locker.KeyConfig{{Name: "api", Limit: 3, Window: w}})
	if d, _ := c.TakeAt(now, "api", 1); d.OK {
		t.Fatalf("after lowering the limit below the count: %+v, want sorry", d)
	}
	// A changed window starts afresh.
	c.Reconfigure([]locker.KeyConfig{{Name: "api", Limit: 3, Window: 2 * w}})
	if d, _ := c.TakeAt(now, "api", 3); !d.OK {
		t.Fatalf("after changing the window: %+v, want go", d)
	}
	// An invalid configuration keeps the old one.
	if err := c.Reconfigure([]locker.KeyConfig{{Name: "api", Limit: 0, Window: w}}); err == nil {
		t.Fatal("Reconfigure accepted limit 0")
	}
	if k, ok := c.Key("api"); !ok || k.Limit != 3 || k.Window != 2*w {
		t.Fatalf("after a failed reconfigure: %+v, %v", k, ok)
	}
}

func TestTakeAllocatesNothing(t *testing.T) {
	c := mustCounter(t, locker.KeyConfig{Name: "api", Limit: 1e9, Window: time.Hour})
	now := time.Unix(1_800_000_000, 0)
	for _, key := range []string{"api", "unknown-key"} {
		if a := testing.AllocsPerRun(1000, func() { c.TakeAt(now, key, 1) }); a != 0 {
			t.Errorf("TakeAt(%q) allocates %v times", key, a)
		}
	}
}
