package peer

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// exchange has every member publish what changed at now and hands it to
// the others.
func exchange(tb testing.TB, now time.Time, ms []*testMember) {
	tb.Helper()
	for _, m := range ms {
		deliver(tb, now, m, ms, m.m.flush(now), nil)
	}
}

// TestSharedReserveAtWindowStart: three shared members busy in a window
// keep, for the next one, what the others are entitled to before anyone
// has granted or asked in it: at the first request of the next window, a
// member grants its share, not the whole limit. (The reserve of the next
// window used to read the peers' counts of that window, empty until it
// starts, so every member granted the limit at each window start.)
func TestSharedReserveAtWindowStart(t *testing.T) {
	for _, limit := range []int64{1, 2, 5, 100} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			key := locker.KeyConfig{Name: testKey.Name, Limit: limit, Window: testKey.Window}
			ms := newTestMembers(t, 3, false, time.Time{}, key)
			now := testEpoch.Add(time.Millisecond)
			for _, m := range ms {
				deliver(t, now, m, ms, m.m.heartbeat(now), nil)
			}
			// Every member is asked for the limit in the first half.
			for step := 0; step < 50; step++ {
				now = now.Add(time.Millisecond)
				for _, m := range ms {
					take(t, m.counter, now, int(limit))
				}
				exchange(t, now, ms)
			}
			// The next window starts; each member is asked before any
			// message of the new window went out.
			next := testEpoch.Add(key.Window)
			var total int64
			for i, m := range ms {
				got := int64(take(t, m.counter, next, int(limit)))
				if share := locker.Share(limit, 3, i); got > share {
					t.Errorf("member %d granted %d at the window start, more than its share %d", i, got, share)
				}
				total += got
			}
			if total > limit {
				t.Errorf("members granted %d together at the window start, above the limit %d", total, limit)
			}
		})
	}
}

// TestHostileNumbers sends crafted messages through the codec with the
// largest numbers it carries: a member still grants its share (a peer's
// grants count for at most the limit, so the remote count stays within
// it), never refuses everything for a window, and nothing overflows.
func TestHostileNumbers(t *testing.T) {
	const huge = 1 << 62
	for _, tc := range []struct {
		name string
		msg  func(k int64) *Message
		// want and wantNext are what member 0 grants out of 100 asks
		// afterwards, and at the start of the next window (its share:
		// until the others' final counts arrive, each keeps its share).
		want, wantNext int
	}{
		{"asked huge", func(k int64) *Message {
			return &Message{Type: TypeCounts, From: "m1", Sent: math.MinInt64, Counts: []Count{
				{Key: testKey.Name, Window: k - 1, Asked: huge}, {Key: testKey.Name, Window: k, Asked: huge}}}
		}, 50, 34},
		{"asked huge, need huge", func(k int64) *Message {
			return &Message{Type: TypeCounts, From: "m1", Sent: math.MaxInt64, Counts: []Count{
				{Key: testKey.Name, Window: k - 1, Asked: huge, Need: huge}, {Key: testKey.Name, Window: k, Asked: huge, Need: huge}}}
		}, 50, 34},
		{"granted huge", func(k int64) *Message {
			return &Message{Type: TypeCounts, From: "m1", Counts: []Count{{Key: testKey.Name, Window: k, Granted: huge, Asked: huge}}}
		}, 0, 34},
		{"a heartbeat claiming a share of the whole limit", func(k int64) *Message {
			return &Message{Type: TypeHeartbeat, From: "m9", Members: 1, Rank: 0, Counts: []Count{
				{Key: testKey.Name, Window: k - 1, Asked: huge}, {Key: testKey.Name, Window: k, Asked: huge}}}
		}, 34, 34},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := newTestMembers(t, 3, false, time.Time{})
			now := testEpoch.Add(time.Nanosecond) // frac is tiny: demand divides by it
			k := locker.WindowIndex(now, testKey.Window)
			for _, m := range ms {
				deliver(t, now, m, ms, m.m.heartbeat(now), nil)
			}
			// Member 0 is busy.
			ms[0].m.self[testKey.Name] = locker.LocalCount{Index: k, PrevAsked: 1000, Asked: 1000}
			deliver(t, now, ms[1], ms[:1], []*Message{tc.msg(k)}, nil)
			ms[0].m.reserve(now, testKey.Name, k)
			ms[0].m.reserve(now, testKey.Name, k+1)
			if r := remote(t, ms[0].counter, now); r < 0 || r > testKey.Limit {
				t.Errorf("remote count %d, want 0..%d", r, testKey.Limit)
			}
			if got := take(t, ms[0].counter, now, 100); got != tc.want {
				t.Errorf("granted %d, want %d", got, tc.want)
			}
			if got := take(t, ms[0].counter, now.Add(testKey.Window), 100); got != tc.wantNext {
				t.Errorf("granted %d at the next window's start, want %d", got, tc.wantNext)
			}
			for _, p := range ms[0].m.stats(now) {
				if off := p.ClockOffset; off > 25*time.Hour || off < -25*time.Hour {
					t.Errorf("clock offset of %s: %s", p.Name, off)
				}
			}
		})
	}
	t.Run("strict transfer huge", func(t *testing.T) {
		ms := newTestMembers(t, 3, true, testEpoch.Add(-time.Hour))
		now := testEpoch.Add(time.Nanosecond)
		k := locker.WindowIndex(now, testKey.Window)
		for _, m := range ms {
			deliver(t, now, m, ms, m.m.heartbeat(now), nil)
		}
		for _, from := range []string{"m1", "m2"} {
			deliver(t, now, ms[1], ms[:1], []*Message{{Type: TypeCounts, From: from,
				Transfers: []Transfer{{To: "m0", Key: testKey.Name, Window: k, Total: huge}}}}, nil)
		}
		// The budget is at most the limit: 100 grants, not an overflow.
		if got := take(t, ms[0].counter, now, 200); got != int(testKey.Limit) {
			t.Errorf("granted %d, want the limit %d", got, testKey.Limit)
		}
	})
}

// TestPeerIDsForgotten restarts member 2 of three under 20 new ids while
// the others run: each incarnation is heard, ids silent for long are
// forgotten, and the others' remote counts always add up to what the
// live incarnations granted. (Ids used to be kept for ever, and after
// 2·members+8 a new one was ignored.)
func TestPeerIDsForgotten(t *testing.T) {
	ms := newTestMembers(t, 3, false, time.Time{}, locker.KeyConfig{Name: testKey.Name, Limit: 1000, Window: testKey.Window})
	now := testEpoch
	step := func(d time.Duration) {
		now = now.Add(d)
		for _, m := range ms {
			deliver(t, now, m, ms, m.m.heartbeat(now), nil)
		}
	}
	step(time.Millisecond)
	for restart := 0; restart < 20; restart++ {
		// A new incarnation: a fresh counter and merger under a new id.
		c, err := locker.NewCounter([]locker.KeyConfig{{Name: testKey.Name, Limit: 1000, Window: testKey.Window}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.EnableFederation(locker.FederationConfig{Members: 3, Rank: 2}); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("restarted-%d", restart)
		ms[2] = &testMember{id: id, counter: c, m: newMerger(id, false, ms[0].m.members, 2, DefaultHeartbeat, c, discardLog)}
		step(time.Millisecond)
		if n := take(t, c, now, 3); n != 3 {
			t.Fatalf("restart %d: granted %d of 3", restart, n)
		}
		step(time.Millisecond)
		// Members 0 and 1 count the 3 grants of this incarnation (the
		// earlier ones granted in windows that ended).
		for i := 0; i < 2; i++ {
			if got := remote(t, ms[i].counter, now); got != 3 {
				t.Fatalf("restart %d: member %d counts %d granted by the others, want 3", restart, i, got)
			}
			if n := len(ms[i].m.peers); n > ms[i].m.maxIDs() {
				t.Fatalf("member %d tracks %d ids", i, n)
			}
		}
		// The incarnation runs for a while, then is gone: 30 heartbeats.
		for j := 0; j < 30; j++ {
			step(DefaultHeartbeat)
		}
	}
	for i := 0; i < 2; i++ {
		if n := len(ms[i].m.peers); n > 3 {
			t.Errorf("member %d still tracks %d ids: %v", i, n, ms[i].m.stats(now))
		}
	}
}

// TestConfiguredMemberNotIgnored fills the id table with ids that granted
// one token each in an hour-long window and are down: the heartbeat of a
// configured member under a new id still gets in, its grants count, and
// so do those of the id it replaced.
func TestConfiguredMemberNotIgnored(t *testing.T) {
	hour := locker.KeyConfig{Name: testKey.Name, Limit: 100, Window: time.Hour}
	ms := newTestMembers(t, 3, false, time.Time{}, hour)
	now := testEpoch.Add(time.Millisecond)
	k := locker.WindowIndex(now, hour.Window)
	ghosts := ms[0].m.maxIDs()
	for i := 0; i < ghosts; i++ {
		ms[0].m.handle(now, &Message{Type: TypeCounts, From: fmt.Sprintf("ghost%d", i),
			Counts: []Count{{Key: hour.Name, Window: k, Granted: 1, Asked: 1}}})
	}
	now = now.Add(time.Second) // the ghosts are down
	deliver(t, now, ms[1], ms[:1], ms[1].m.heartbeat(now), nil)
	take(t, ms[1].counter, now, 7)
	deliver(t, now, ms[1], ms[:1], ms[1].m.flush(now), nil)
	if got, want := remote(t, ms[0].counter, now), int64(ghosts+7); got != want {
		t.Fatalf("remote count %d, want %d: the ghosts' and the configured member's 7", got, want)
	}
	if n := len(ms[0].m.peers); n > ms[0].m.maxIDs() {
		t.Fatalf("%d ids tracked, at most %d", n, ms[0].m.maxIDs())
	}
}

// TestStrictNeedGiven: three strict members with a share of 1 each of 3
// per window, all busy; member 0 refuses a request for 2. The others hand
// it their shares of the next window for it, and it is granted then.
func TestStrictNeedGiven(t *testing.T) {
	key := locker.KeyConfig{Name: testKey.Name, Limit: 3, Window: testKey.Window}
	ms := newTestMembers(t, 3, true, testEpoch.Add(-time.Hour), key)
	now := testEpoch.Add(time.Millisecond)
	for _, m := range ms {
		deliver(t, now, m, ms, m.m.heartbeat(now), nil)
	}
	granted := map[int64]int{}
	got2 := false
	for step := 0; step < 500 && !got2; step++ {
		now = now.Add(time.Millisecond)
		k := locker.WindowIndex(now, key.Window)
		for i, m := range ms {
			if i == 0 {
				d, err := m.counter.TakeAt(now, key.Name, 2)
				if err != nil {
					t.Fatal(err)
				}
				if d.OK {
					granted[k] += 2
					got2 = true
					continue
				}
			}
			granted[k] += take(t, m.counter, now, 1)
		}
		exchange(t, now, ms)
	}
	if !got2 {
		t.Fatal("the request for 2 was never granted in 5 windows")
	}
	for k, n := range granted {
		if n > int(key.Limit) {
			t.Errorf("window %d granted %d, above the limit", k, n)
		}
	}
}

// TestSharedBusyTogether: three shared members idle in one window all get
// busy in the next before any message of it went out: together they
// grant at most the limit, each its share. (The tokens no one asked for
// used to be free for whoever asked first, and each member took them
// all.)
func TestSharedBusyTogether(t *testing.T) {
	for _, limit := range []int64{1, 5, 100} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			key := locker.KeyConfig{Name: testKey.Name, Limit: limit, Window: testKey.Window}
			ms := newTestMembers(t, 3, false, time.Time{}, key)
			now := testEpoch.Add(time.Millisecond)
			for step := 0; step < 99; step++ {
				exchange(t, now, ms)
				if step%50 == 0 {
					for _, m := range ms {
						deliver(t, now, m, ms, m.m.heartbeat(now), nil)
					}
				}
				now = now.Add(time.Millisecond)
			}
			next := testEpoch.Add(key.Window)
			var total int64
			for i, m := range ms {
				got := int64(take(t, m.counter, next, int(limit)))
				if share := locker.Share(limit, 3, i); got > share {
					t.Errorf("member %d granted %d, more than its share %d", i, got, share)
				}
				total += got
			}
			if total > limit {
				t.Errorf("granted %d together, above the limit %d", total, limit)
			}
		})
	}
}

// TestSharedLateMessages: the others are up but their messages of the
// last window have not arrived (a loaded machine delays them): a shared
// member does not take their silence for idleness, and grants its share.
func TestSharedLateMessages(t *testing.T) {
	ms := newTestMembers(t, 3, false, time.Time{})
	now := testEpoch.Add(time.Millisecond)
	for _, m := range ms {
		deliver(t, now, m, ms, m.m.heartbeat(now), nil)
	}
	for i := 1; i < 3; i++ {
		take(t, ms[i].counter, now, 100) // busy; nothing of it reaches member 0
	}
	take(t, ms[0].counter, now, 100)
	next := now.Add(testKey.Window) // the peers are still up
	ms[0].m.flush(next)
	if got := take(t, ms[0].counter, next, 100); got > 34 {
		t.Errorf("granted %d, more than its share 34", got)
	}
}

// TestSharedSilentKeepShare: a shared member that has heard no one yet
// grants its share, not the limit; and a member that goes down (frozen,
// cut off, or dead) keeps its share, since it may still be granting.
// (Members not heard or down used to leave their shares free.)
func TestSharedSilentKeepShare(t *testing.T) {
	ms := newTestMembers(t, 3, false, time.Time{})
	now := testEpoch.Add(time.Millisecond)
	ms[0].m.flush(now)
	if got := take(t, ms[0].counter, now, 100); got != 34 {
		t.Fatalf("alone: granted %d, want its share 34", got)
	}
	for _, m := range ms {
		deliver(t, now, m, ms, m.m.heartbeat(now), nil)
	}
	// Member 2 goes silent; 0 and 1 go on for a second.
	live := ms[:2]
	for i := 0; i < 10; i++ {
		now = now.Add(testKey.Window)
		for _, m := range live {
			deliver(t, now, m, live, m.m.heartbeat(now), nil)
		}
	}
	var total int
	for _, m := range live {
		m.m.flush(now)
		total += take(t, m.counter, now, 100)
		exchange(t, now, live)
	}
	if total > 67 {
		t.Errorf("members 0 and 1 granted %d, more than their shares, 67", total)
	}
}

// TestNeedOnlyAboveShare: a member publishes a need only in strict mode
// and only for a refused request larger than its share, so its messages
// stay in version 1, which members of older releases read, otherwise.
func TestNeedOnlyAboveShare(t *testing.T) {
	key := locker.KeyConfig{Name: testKey.Name, Limit: 3, Window: testKey.Window}
	for _, strict := range []bool{false, true} {
		ms := newTestMembers(t, 3, strict, testEpoch.Add(-time.Hour), key)
		now := testEpoch.Add(time.Millisecond)
		// The members hear each other: a strict member refuses at once a
		// request no member up could bring it the tokens of.
		for _, m := range ms[1:] {
			deliver(t, now, m, ms, m.m.heartbeat(now), nil)
		}
		version := func() byte {
			var v byte
			for _, m := range ms[0].m.heartbeat(now) {
				b, err := Encode(nil, m)
				if err != nil {
					t.Fatal(err)
				}
				v = max(v, b[0])
			}
			return v
		}
		take(t, ms[0].counter, now, 5) // refusals of 1
		if v := version(); v != Version {
			t.Errorf("strict=%v: refusals of 1 sent in version %d, want %d", strict, v, Version)
		}
		if _, err := ms[0].counter.TakeAt(now, key.Name, 2); err != nil {
			t.Fatal(err)
		}
		want := byte(Version)
		if strict {
			want = VersionNeed
		}
		if v := version(); v != want {
			t.Errorf("strict=%v: a refused request for 2 sent in version %d, want %d", strict, v, want)
		}
	}
}
