package peer

import (
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

var (
	testKey    = locker.KeyConfig{Name: "api", Limit: 100, Window: 100 * time.Millisecond}
	testEpoch  = time.Unix(1_700_000_000, 0) // a window boundary for 100ms windows
	discardLog = slog.New(slog.DiscardHandler)
)

// testMember is one member of an in-memory federation: a counter and its
// merge logic, driven by an injected clock.
type testMember struct {
	id      string
	counter *locker.Counter
	m       *merger
}

// newTestMembers returns n members in the given mode whose counters were
// fenced at fence.
func newTestMembers(tb testing.TB, n int, strict bool, fence time.Time, keys ...locker.KeyConfig) []*testMember {
	tb.Helper()
	if len(keys) == 0 {
		keys = []locker.KeyConfig{testKey}
	}
	members := make([]string, n)
	for i := range members {
		members[i] = "tcp://10.0.0." + string(rune('1'+i)) + ":5000"
	}
	out := make([]*testMember, n)
	for i := range out {
		c, err := locker.NewCounter(keys)
		if err != nil {
			tb.Fatal(err)
		}
		if err := c.EnableFederation(locker.FederationConfig{Strict: strict, Members: n, Rank: i, Fence: fence}); err != nil {
			tb.Fatal(err)
		}
		id := "m" + string(rune('0'+i))
		out[i] = &testMember{id: id, counter: c, m: newMerger(id, strict, members, i, DefaultHeartbeat, c, discardLog)}
	}
	return out
}

// deliver hands msgs to every member except the sender, through the codec,
// dropping each copy when drop returns true.
func deliver(tb testing.TB, now time.Time, from *testMember, all []*testMember, msgs []*Message, drop func() bool) {
	tb.Helper()
	for _, msg := range msgs {
		b, err := Encode(nil, msg)
		if err != nil {
			tb.Fatal(err)
		}
		for _, to := range all {
			if to == from || drop != nil && drop() {
				continue
			}
			got, err := Decode(b)
			if err != nil {
				tb.Fatal(err)
			}
			to.m.handle(now, got)
		}
	}
}

func remote(tb testing.TB, c *locker.Counter, now time.Time) int64 {
	tb.Helper()
	for _, lc := range c.LocalAt(now) {
		if lc.Name == testKey.Name {
			return lc.Remote
		}
	}
	tb.Fatal("key missing")
	return 0
}

func take(tb testing.TB, c *locker.Counter, now time.Time, n int) int {
	tb.Helper()
	got := 0
	for i := 0; i < n; i++ {
		d, err := c.TakeAt(now, testKey.Name, 1)
		if err != nil {
			tb.Fatal(err)
		}
		if d.OK {
			got++
		}
	}
	return got
}

func countsMsg(from string, window, granted int64) *Message {
	return &Message{Type: TypeCounts, From: from, Counts: []Count{{Key: testKey.Name, Window: window, Granted: granted, Asked: granted}}}
}

func TestMergeCumulativeMax(t *testing.T) {
	ms := newTestMembers(t, 2, false, time.Time{})
	b := ms[1]
	now := testEpoch.Add(10 * time.Millisecond)
	k := locker.WindowIndex(now, testKey.Window)
	for _, tc := range []struct {
		name string
		msg  *Message
		want int64
	}{
		{"first", countsMsg("m0", k, 5), 5},
		{"duplicate", countsMsg("m0", k, 5), 5},
		{"reordered older", countsMsg("m0", k, 3), 5},
		{"newer", countsMsg("m0", k, 9), 9},
		{"second origin adds", countsMsg("mx", k, 4), 13},
		{"second origin older", countsMsg("mx", k, 1), 13},
		{"next window kept apart", countsMsg("m0", k+1, 50), 13},
		{"past window ignored", countsMsg("m0", k-5, 50), 13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.m.handle(now, tc.msg)
			if got := remote(t, b.counter, now); got != tc.want {
				t.Fatalf("remote=%d, want %d", got, tc.want)
			}
		})
	}
	// The next window starts with what was announced for it.
	if got := remote(t, b.counter, now.Add(testKey.Window)); got != 50 {
		t.Fatalf("remote in the next window=%d, want 50", got)
	}
	// Shared mode: grants stop at limit minus remote.
	if got := take(t, b.counter, now.Add(testKey.Window), 100); got != 50 {
		t.Fatalf("granted %d, want 50", got)
	}
}

// TestMergeDropsAndLateJoiner drives three shared members with a lossy
// link; flushes lose messages but each heartbeat restores the exact
// cluster-wide count, including for a member that starts mid-window.
func TestMergeDropsAndLateJoiner(t *testing.T) {
	// A limit the 80 grants stay under while member 2, not yet heard,
	// keeps its share.
	ms := newTestMembers(t, 3, false, time.Time{}, locker.KeyConfig{Name: testKey.Name, Limit: 1000, Window: testKey.Window})
	rng := rand.New(rand.NewPCG(1, 2))
	drop := func() bool { return rng.Float64() < 0.5 }
	now := testEpoch
	live := ms[:2] // ms[2] joins late
	for step := 0; step < 40; step++ {
		now = now.Add(time.Millisecond)
		for _, m := range live {
			take(t, m.counter, now, 1)
			deliver(t, now, m, live, m.m.flush(now), drop)
		}
	}
	live = ms
	for _, m := range live {
		deliver(t, now, m, live, m.m.heartbeat(now), nil)
	}
	for i, m := range ms {
		var others int64
		for j, o := range ms {
			if j != i {
				for _, lc := range o.counter.LocalAt(now) {
					others += lc.Granted
				}
			}
		}
		if got := remote(t, m.counter, now); got != others {
			t.Errorf("member %d: remote=%d after heartbeat, want %d", i, got, others)
		}
	}
	if got, want := remote(t, ms[2].counter, now), int64(80); got != want {
		t.Errorf("late joiner remote=%d, want %d", got, want)
	}
}

func TestMergeStats(t *testing.T) {
	ms := newTestMembers(t, 2, true, time.Time{})
	a, b := ms[0], ms[1]
	now := testEpoch
	// b's clock is 3ms ahead and the link takes 1ms: the estimate is the
	// offset minus the one-way latency.
	hb := b.m.heartbeat(now.Add(3 * time.Millisecond))
	deliver(t, now.Add(time.Millisecond), b, ms, hb, nil)
	st := a.m.stats(now.Add(time.Millisecond))
	if len(st) != 1 || st[0].Name != "m1" || !st[0].Up || st[0].ConfigMismatch || st[0].Messages != 1 {
		t.Fatalf("stats=%+v", st)
	}
	if got, want := st[0].ClockOffset, 2*time.Millisecond; got != want {
		t.Errorf("ClockOffset=%v, want %v", got, want)
	}
	if st := a.m.stats(now.Add(4 * DefaultHeartbeat)); st[0].Up {
		t.Errorf("peer up after 4 silent heartbeats")
	}
	// A member with other keys is reported.
	other := newTestMembers(t, 2, true, time.Time{}, locker.KeyConfig{Name: "api", Limit: 99, Window: testKey.Window})
	deliver(t, now, other[1], []*testMember{a, other[1]}, other[1].m.heartbeat(now), nil)
	if st := a.m.stats(now); !st[0].ConfigMismatch {
		t.Errorf("stats=%+v, want a config mismatch", st)
	}
}

// TestStrictSharesFollowDemand drives three strict members with various
// loads over a lossy link: no window ever goes over the limit cluster
// wide, and when one member has all the load the others hand it their
// spare shares for the next window.
func TestStrictSharesFollowDemand(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dropRate float64
		load     func(rng *rand.Rand, step, member int) int
		minTotal int // over 10 windows
	}{
		{"one member", 0, func(_ *rand.Rand, _, m int) int { return map[int]int{0: 5}[m] }, 950},
		{"one member lossy", 0.3, func(_ *rand.Rand, _, m int) int { return map[int]int{0: 5}[m] }, 900},
		{"even", 0, func(_ *rand.Rand, _, _ int) int { return 2 }, 950},
		{"random lossy", 0.3, func(rng *rand.Rand, _, _ int) int { return rng.IntN(4) }, 700},
		{"shifting", 0.1, func(_ *rand.Rand, step, m int) int {
			if (step/300)%3 == m {
				return 4
			}
			return 0
		}, 850},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := newTestMembers(t, 3, true, testEpoch.Add(-time.Hour))
			rng := rand.New(rand.NewPCG(3, 4))
			drop := func() bool { return rng.Float64() < tc.dropRate }
			now := testEpoch
			perWindow := map[int64]int{}
			for step := 0; step < 1000; step++ { // 10 windows of 100 steps
				now = now.Add(time.Millisecond)
				k := locker.WindowIndex(now, testKey.Window)
				for i, m := range ms {
					perWindow[k] += take(t, m.counter, now, tc.load(rng, step, i))
				}
				for _, m := range ms {
					deliver(t, now, m, ms, m.m.flush(now), drop)
				}
				if step%100 == 0 {
					for _, m := range ms {
						deliver(t, now, m, ms, m.m.heartbeat(now), drop)
					}
				}
			}
			total := 0
			for k, n := range perWindow {
				if n > int(testKey.Limit) {
					t.Errorf("window %d granted %d, above the limit", k, n)
				}
				total += n
			}
			if total < tc.minTotal {
				t.Errorf("granted %d over 10 windows, want at least %d", total, tc.minTotal)
			}
			t.Logf("%d grants in 10 windows of limit %d", total, testKey.Limit)
		})
	}
}

// TestStrictFence: a member that starts grants nothing in its first window
// and the next, then its share.
func TestStrictFence(t *testing.T) {
	start := testEpoch.Add(30 * time.Millisecond)
	ms := newTestMembers(t, 3, true, start)
	if got := take(t, ms[1].counter, start, 10); got != 0 {
		t.Fatalf("granted %d in the start window, want 0", got)
	}
	if got := take(t, ms[1].counter, start.Add(testKey.Window), 10); got != 0 {
		t.Fatalf("granted %d in the next window, want 0", got)
	}
	if got := take(t, ms[1].counter, start.Add(2*testKey.Window), 100); got != 33 {
		t.Fatalf("granted %d in the window after, want share 33", got)
	}
}

// TestSharedReserve: in shared mode a member that asked for tokens in the
// last window is entitled to them, up to its share plus the shares idle
// members do not need; what no one asked for is split by share.
func TestSharedReserve(t *testing.T) {
	ms := newTestMembers(t, 3, false, time.Time{})
	now := testEpoch.Add(time.Millisecond)
	k := locker.WindowIndex(now, testKey.Window)
	for _, m := range ms {
		deliver(t, now, m, ms, m.m.heartbeat(now), nil)
	}
	// m1 asked for 80 in the last window and granted 10 in this one;
	// m2 was idle.
	ms[0].m.handle(now, &Message{Type: TypeCounts, From: "m1", Counts: []Count{
		{Key: testKey.Name, Window: k - 1, Granted: 33, Asked: 80},
		{Key: testKey.Name, Window: k, Granted: 10, Asked: 10},
	}})
	ms[0].m.flush(now)
	// m1 is entitled to the 80 it asked for: its share 33 and 47 of the
	// 67 that m0 and m2 did not ask for. The 20 no one asked for are split
	// by share, the others' parts rounded up: 7 for m1, 7 for m2, 6 for
	// m0. 100 - 10 granted by m1 - 77 still kept for it - 7 for m2 leaves
	// 6. (They used to be free for whoever asked first, which let members
	// that became busy together each take all of them.)
	if got := take(t, ms[0].counter, now, 100); got != 6 {
		t.Fatalf("granted %d, want 6", got)
	}
	// m1 asking for less than its share reserves only that.
	ms[0].m.handle(now, &Message{Type: TypeCounts, From: "m1", Counts: []Count{
		{Key: testKey.Name, Window: k + 1, Granted: 0, Asked: 0},
	}})
	later := now.Add(testKey.Window)
	for _, m := range ms[1:] { // messages sent in the new window
		deliver(t, later, m, ms[:1], m.m.heartbeat(later), nil)
	}
	ms[0].m.handle(later, &Message{Type: TypeCounts, From: "m1", Sent: later.UnixNano(), Counts: []Count{
		{Key: testKey.Name, Window: k, Granted: 20, Asked: 20},
	}})
	ms[0].m.flush(later)
	if got := take(t, ms[0].counter, later, 100); got != 80 {
		t.Fatalf("next window granted %d, want 100-20", got)
	}
}
