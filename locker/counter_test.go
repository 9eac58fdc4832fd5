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

// TestCounterExactValues walks keys of several shapes through fixed
// instants and checks every field of every decision.
func TestCounterExactValues(t *testing.T) {
	type step struct {
		at   time.Time
		n    int64
		want locker.Decision
		err  error
	}
	go_ := func(rem int64, reset time.Duration, k int64) locker.Decision {
		return locker.Decision{OK: true, Remaining: rem, Reset: reset, Window: k}
	}
	sorry := func(retry time.Duration, k int64) locker.Decision {
		return locker.Decision{Reset: retry, RetryAfter: retry, Window: k}
	}
	const ms, day = time.Millisecond, 24 * time.Hour
	const kms = 1_800_000_000_000 // a millisecond in 2027
	const kday = 20_833           // a day in 2027
	tests := []struct {
		name  string
		key   locker.KeyConfig
		steps []step
	}{
		{"1ms window", locker.KeyConfig{Name: "fast", Limit: 2, Window: ms}, []step{
			{at(kms, ms, 0), 1, go_(1, ms, kms), nil},
			{at(kms, ms, 500*time.Microsecond), 1, go_(0, 500*time.Microsecond, kms), nil},
			{at(kms, ms, ms-1), 1, sorry(1, kms), nil},
			{at(kms, ms, ms), 2, go_(0, ms, kms+1), nil},
			{at(kms, ms, ms+1), 1, sorry(ms-1, kms+1), nil},
			{at(kms, ms, 2*ms), 3, locker.Decision{}, locker.ErrBadCount},
			{at(kms, ms, 2*ms), 2, go_(0, ms, kms+2), nil}, // the error took nothing
		}},
		{"24h window", locker.KeyConfig{Name: "daily", Limit: 3, Window: day}, []step{
			{at(kday, day, 23*time.Hour), 1, go_(2, time.Hour, kday), nil},
			{at(kday, day, 23*time.Hour+59*time.Minute), 2, go_(0, time.Minute, kday), nil},
			{at(kday, day, day-time.Second), 1, sorry(time.Second, kday), nil},
			{at(kday, day, day), 3, go_(0, day, kday+1), nil},
			{at(kday, day, 2*day-1), 1, sorry(1, kday+1), nil},
		}},
		{"limit 1e9", locker.KeyConfig{Name: "huge", Limit: 1e9, Window: time.Second}, []step{
			{at(5, time.Second, 0), 1e9 - 1, go_(1, time.Second, 5), nil},
			{at(5, time.Second, 1), 2, sorry(time.Second-1, 5), nil}, // whole or nothing
			{at(5, time.Second, 2), 1, go_(0, time.Second-2, 5), nil},
			{at(5, time.Second, 3), 1, sorry(time.Second-3, 5), nil},
			{at(6, time.Second, 0), 1e9, go_(0, time.Second, 6), nil},
			{at(7, time.Second, 0), 1e9 + 1, locker.Decision{}, locker.ErrBadCount},
		}},
		{"N > 1 whole or not at all", locker.KeyConfig{Name: "api", Limit: 5, Window: 800 * ms}, []step{
			{at(10, 800*ms, 0), 3, go_(2, 800*ms, 10), nil},
			{at(10, 800*ms, 100*ms), 3, sorry(700*ms, 10), nil},
			{at(10, 800*ms, 200*ms), 2, go_(0, 600*ms, 10), nil},
			{at(10, 800*ms, 300*ms), 1, sorry(500*ms, 10), nil},
			{at(10, 800*ms, 300*ms), 6, locker.Decision{}, locker.ErrBadCount},
			{at(10, 800*ms, 300*ms), 0, locker.Decision{}, locker.ErrBadCount},
		}},
		{"before 1970", locker.KeyConfig{Name: "old", Limit: 2, Window: 800 * ms}, []step{
			{at(-2, 800*ms, 0), 2, go_(0, 800*ms, -2), nil},
			{at(-2, 800*ms, 800*ms-1), 1, sorry(1, -2), nil},
			{at(-1, 800*ms, 0), 1, go_(1, 800*ms, -1), nil},
			{at(-1, 800*ms, 799*ms), 1, go_(0, ms, -1), nil},
			{time.Unix(0, -1), 1, sorry(1, -1), nil}, // the last ns before the epoch
			{time.Unix(0, 0), 2, go_(0, 800*ms, 0), nil},
		}},
		{"skipping windows", locker.KeyConfig{Name: "api", Limit: 1, Window: time.Second}, []step{
			{at(100, time.Second, 0), 1, go_(0, time.Second, 100), nil},
			{at(1000, time.Second, 999*ms), 1, go_(0, ms, 1000), nil},
			{at(1000, time.Second, 999*ms), 1, sorry(ms, 1000), nil},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCounter(t, tc.key)
			for i, s := range tc.steps {
				got, err := c.TakeAt(s.at, tc.key.Name, s.n)
				if !errors.Is(err, s.err) || got != s.want {
					t.Fatalf("step %d: TakeAt(%d ns, %d)=%+v, %v; want %+v, %v", i, s.at.UnixNano(), s.n, got, err, s.want, s.err)
				}
			}
		})
	}
}

// TestKeysIndependentExact interleaves takes on keys with different limits
// and windows and checks that each key's counts are its own.
func TestKeysIndependentExact(t *testing.T) {
	c := mustCounter(t,
		locker.KeyConfig{Name: "a", Limit: 3, Window: time.Second},
		locker.KeyConfig{Name: "b", Limit: 3, Window: time.Second},
		locker.KeyConfig{Name: "c", Limit: 2, Window: 300 * time.Millisecond},
	)
	now := at(1_800_000_000, time.Second, 0)
	want := map[string][]int64{ // Remaining after each take, -1 for sorry
		"a": {2, 1, 0, -1},
		"b": {2, 1, 0, -1},
		"c": {1, 0, -1, -1},
	}
	for i := 0; i < 4; i++ {
		for _, key := range []string{"a", "b", "c"} {
			d, err := c.TakeAt(now, key, 1)
			if err != nil {
				t.Fatal(err)
			}
			got := d.Remaining
			if !d.OK {
				got = -1
			}
			if got != want[key][i] {
				t.Fatalf("take %d of %s: %+v, want remaining %d", i, key, d, want[key][i])
			}
		}
	}
	// Only c's window has turned 300 ms later.
	later := now.Add(300 * time.Millisecond)
	for key, ok := range map[string]bool{"a": false, "b": false, "c": true} {
		if d, _ := c.TakeAt(later, key, 1); d.OK != ok {
			t.Errorf("%s 300ms later: %+v, want OK=%v", key, d, ok)
		}
	}
	if _, err := c.TakeAt(now, "d", 1); !errors.Is(err, locker.ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := c.TakeAt(now, "", 1); !errors.Is(err, locker.ErrUnknownKey) {
		t.Fatalf("empty key: %v", err)
	}
}

// TestReconfigureCounts checks what a reload does to the counts of the
// current window, key by key.
func TestReconfigureCounts(t *testing.T) {
	const w = time.Second
	now := at(1_800_000_000, w, 200*time.Millisecond)
	base := []locker.KeyConfig{
		{Name: "same", Limit: 5, Window: w},
		{Name: "raised", Limit: 5, Window: w},
		{Name: "rewindowed", Limit: 5, Window: w},
	}
	c := mustCounter(t, base...)
	for _, k := range base {
		if d, err := c.TakeAt(now, k.Name, 3); err != nil || !d.OK {
			t.Fatalf("take 3 of %s: %+v, %v", k.Name, d, err)
		}
	}
	// Invalid configurations are refused and change nothing.
	bad := [][]locker.KeyConfig{
		{{Name: "same", Limit: 5, Window: w}, {Name: "same", Limit: 5, Window: w}},
		{{Name: "same", Limit: 5, Window: 0}},
		{{Name: "bad key", Limit: 5, Window: w}},
		{{Name: "same", Limit: 1e9 + 1, Window: w}},
		{{Name: "same", Limit: 5, Window: 1500 * time.Microsecond}},
	}
	for _, keys := range bad {
		if err := c.Reconfigure(keys); err == nil {
			t.Fatalf("Reconfigure(%v) accepted", keys)
		}
	}
	if got, want := c.Keys(), append(base[:len(base):len(base)], locker.KeyConfig{Name: locker.DefaultKey, Limit: locker.DefaultLimit, Window: locker.DefaultWindow}); !sameKeys(got, want) {
		t.Fatalf("after refused reloads keys=%v, want %v", got, want)
	}
	for _, ks := range c.SnapshotAt(now) {
		if ks.Name != locker.DefaultKey && ks.Granted != 3 {
			t.Fatalf("after refused reloads %s granted=%d, want 3", ks.Name, ks.Granted)
		}
	}
	if err := c.Reconfigure([]locker.KeyConfig{
		{Name: "same", Limit: 5, Window: w},
		{Name: "raised", Limit: 10, Window: w},
		{Name: "rewindowed", Limit: 5, Window: 2 * w},
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		n    int64
		want locker.Decision
	}{
		{"same", 2, locker.Decision{OK: true, Remaining: 0, Reset: 800 * time.Millisecond, Window: 1_800_000_000}},
		{"same", 1, locker.Decision{Reset: 800 * time.Millisecond, RetryAfter: 800 * time.Millisecond, Window: 1_800_000_000}},
		{"raised", 7, locker.Decision{OK: true, Remaining: 0, Reset: 800 * time.Millisecond, Window: 1_800_000_000}},
		{"rewindowed", 5, locker.Decision{OK: true, Remaining: 0, Reset: 1800 * time.Millisecond, Window: 900_000_000}},
	}
	for _, tc := range tests {
		if d, err := c.TakeAt(now, tc.key, tc.n); err != nil || d != tc.want {
			t.Errorf("after reload, take %d of %s: %+v, %v; want %+v", tc.n, tc.key, d, err, tc.want)
		}
	}
	// The kept counts belong to their window: the next one starts at 0.
	if d, _ := c.TakeAt(now.Add(w), "same", 5); !d.OK {
		t.Errorf("next window after reload: %+v, want go", d)
	}
	// Reloading the same configuration again keeps the counts too.
	snap := c.SnapshotAt(now)
	if err := c.Reconfigure(c.Keys()); err != nil {
		t.Fatal(err)
	}
	if again := c.SnapshotAt(now); fmt.Sprint(again) != fmt.Sprint(snap) {
		t.Fatalf("identical reload changed counts: %v, was %v", again, snap)
	}
}

func sameKeys(a, b []locker.KeyConfig) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[locker.KeyConfig]bool{}
	for _, k := range a {
		m[k] = true
	}
	for _, k := range b {
		if !m[k] {
			return false
		}
	}
	return true
}

// TestCounterAllocsEveryPath extends TestTakeAllocatesNothing to sorry
// decisions, refused counts, window changes and a many-key counter: no
// request, for a known or an unknown key, costs memory.
func TestCounterAllocsEveryPath(t *testing.T) {
	keys := []locker.KeyConfig{{Name: "one", Limit: 1, Window: time.Millisecond}}
	for i := 0; i < 100; i++ {
		keys = append(keys, locker.KeyConfig{Name: fmt.Sprintf("k%d", i), Limit: 5, Window: time.Second})
	}
	c := mustCounter(t, keys...)
	now := time.Unix(1_800_000_000, 0)
	tick := 0
	tests := []struct {
		name string
		f    func()
	}{
		{"sorry", func() { c.TakeAt(now, "one", 1) }},
		{"N above the limit", func() { c.TakeAt(now, "one", 2) }},
		{"N zero", func() { c.TakeAt(now, "one", 0) }},
		{"unknown key", func() { c.TakeAt(now, "nope", 1) }},
		{"unknown long key", func() { c.TakeAt(now, "nope-nope-nope-nope-nope-nope-nope-nope", 1) }},
		{"a new window each time", func() {
			tick++
			c.TakeAt(now.Add(time.Duration(tick)*time.Millisecond), "one", 1)
		}},
		{"Key", func() { c.Key("k42") }},
	}
	for _, tc := range tests {
		if a := testing.AllocsPerRun(1000, tc.f); a != 0 {
			t.Errorf("%s: %v allocations per call", tc.name, a)
		}
	}
}

// TestLowerLimitRemaining lowers a key's limit mid-window on one server:
// the grants made stay, and the window grants at most
// max(0, new limit - granted) more, with Remaining counting down to 0.
func TestLowerLimitRemaining(t *testing.T) {
	const w = time.Second
	now := at(1_800_000_000, w, 300*time.Millisecond)
	tests := []struct {
		name          string
		granted, newL int64
		want          []int64 // Remaining after each go that follows
	}{
		{"room left", 3, 6, []int64{2, 1, 0}},
		{"exactly used", 3, 3, nil},
		{"below what was granted", 8, 3, nil},
		{"raised", 3, 12, []int64{8, 7, 6, 5, 4, 3, 2, 1, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCounter(t, locker.KeyConfig{Name: "api", Limit: 10, Window: w})
			if d, err := c.TakeAt(now, "api", tc.granted); err != nil || !d.OK {
				t.Fatalf("take %d: %+v, %v", tc.granted, d, err)
			}
			if err := c.Reconfigure([]locker.KeyConfig{{Name: "api", Limit: tc.newL, Window: w}}); err != nil {
				t.Fatal(err)
			}
			var got []int64
			for i := 0; i < 20; i++ {
				if d, err := c.TakeAt(now, "api", 1); err != nil {
					t.Fatal(err)
				} else if d.OK {
					got = append(got, d.Remaining)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("remaining after each go: %v, want %v", got, tc.want)
			}
			for _, ks := range c.SnapshotAt(now) {
				if want := max(tc.granted, tc.newL); ks.Name == "api" && ks.Granted != want {
					t.Fatalf("snapshot granted %d, want %d", ks.Granted, want)
				}
			}
		})
	}
}
