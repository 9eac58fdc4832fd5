package peer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

var tenantKey = locker.KeyConfig{Name: "t:*", Limit: 30, Window: 100 * time.Millisecond}

// takeKey takes n tokens of key one at a time and returns the grants.
func takeKey(tb testing.TB, c *locker.Counter, now time.Time, key string, n int) int {
	tb.Helper()
	got := 0
	for i := 0; i < n; i++ {
		d, err := c.TakeAt(now, key, 1)
		if err != nil {
			tb.Fatal(err)
		}
		if d.OK {
			got++
		}
	}
	return got
}

// checkLiveOnly fails unless every key in msgs is the default key or a
// key live on from at now.
func checkLiveOnly(tb testing.TB, now time.Time, from *testMember, msgs []*Message) {
	tb.Helper()
	for _, m := range msgs {
		for _, c := range m.Counts {
			if r, ok := from.counter.ReportAt(now, c.Key); c.Key != locker.DefaultKey && (!ok || !r.Live) {
				tb.Fatalf("%s published %+v of a key not live on it", from.id, c)
			}
		}
	}
}

// TestTemplateKeysFollowDemand runs keys made on demand (t:*=30/100ms,
// ten tenants) on three members with the injected clock, in both modes,
// with load moving from member 0 to member 1 after five windows, with
// and without message loss, and with member 2 silent throughout: no
// tenant's window gets more than the limit (with member 2 silent, more
// than the limit less its share, which it may be granting); the busy
// member gets more than its share of a tenant's window (the others'
// tokens move to it); every message carries only keys live on its sender;
// and once the load stops, every key is dropped everywhere and heartbeats
// carry none.
func TestTemplateKeysFollowDemand(t *testing.T) {
	for _, tc := range []struct {
		name   string
		strict bool
		drop   float64
		silent bool
	}{
		{"shared", false, 0, false},
		{"shared lossy", false, 0.3, false},
		{"shared member 2 silent", false, 0, true},
		{"strict", true, 0, false},
		{"strict lossy", true, 0.3, false},
		{"strict member 2 silent", true, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := newTestMembers(t, 3, tc.strict, testEpoch.Add(-time.Hour), tenantKey)
			up := ms
			if tc.silent {
				up = ms[:2]
			}
			rng := rand.New(rand.NewPCG(5, 6))
			drop := func() bool { return rng.Float64() < tc.drop }
			send := func(now time.Time, m *testMember, msgs []*Message) {
				checkLiveOnly(t, now, m, msgs)
				deliver(t, now, m, up, msgs, drop)
			}
			cap := tenantKey.Limit
			if tc.silent {
				cap -= locker.Share(tenantKey.Limit, 3, 2)
			}
			grants := map[string]map[int64]int{}
			busiest, firstBusiest := 0, 0 // over all windows, over those of member 0
			now := testEpoch
			for step := 0; step < 1000; step++ { // 10 windows of 100 steps
				now = now.Add(time.Millisecond)
				k := locker.WindowIndex(now, tenantKey.Window)
				busy := up[step/500] // member 0, then member 1
				key := fmt.Sprintf("t:%d", step%10)
				if grants[key] == nil {
					grants[key] = map[int64]int{}
				}
				grants[key][k] += takeKey(t, busy.counter, now, key, 4)
				for _, m := range up {
					send(now, m, m.m.flush(now))
				}
				if step%100 == 0 {
					for _, m := range up {
						send(now, m, m.m.heartbeat(now))
					}
				}
			}
			total := 0
			for key, byWin := range grants {
				for k, n := range byWin {
					if n > int(cap) {
						t.Errorf("%s window %d: %d grants, above %d", key, k, n, cap)
					}
					total += n
					busiest = max(busiest, n)
					if k < locker.WindowIndex(testEpoch, tenantKey.Window)+5 {
						firstBusiest = max(firstBusiest, n)
					}
				}
			}
			t.Logf("%d grants, busiest tenant window %d of %d (%d while only member 0 was asked)", total, busiest, cap, firstBusiest)
			// While member 0 alone is asked, the others learn of each
			// tenant only from its reports.
			if share := locker.Share(tenantKey.Limit, 3, 0); firstBusiest <= int(share) {
				t.Errorf("busiest tenant window of member 0: %d, no more than its share %d: tokens did not move", firstBusiest, share)
			}

			// The load stops. After two idle windows every key is idle
			// on every member, whatever the members published meanwhile
			// (reserves are set for every window): a sweep drops them
			// all, and heartbeats then carry none.
			for i := 0; i < 3; i++ {
				now = now.Add(tenantKey.Window)
				for _, m := range up {
					send(now, m, m.m.heartbeat(now))
				}
				for _, m := range up {
					send(now, m, m.m.flush(now))
				}
			}
			for _, m := range up {
				m.counter.SweepAt(now, nil)
				if n := m.counter.LiveKeys(); n != 0 {
					t.Errorf("%s: %d keys live after the load stopped", m.id, n)
				}
				for _, msg := range m.m.heartbeat(now) {
					for _, c := range msg.Counts {
						if c.Key != locker.DefaultKey {
							t.Errorf("%s: heartbeat after the sweep carries %+v", m.id, c)
						}
					}
				}
			}
		})
	}
}

// TestTemplateReportAtMaxKeys: a shared member at --max-keys that cannot
// track a key a peer reports grants none of it until the windows the
// report bears on have ended, even once there is room: it would not count
// the peer's grants. Then it makes the key afresh.
func TestTemplateReportAtMaxKeys(t *testing.T) {
	ms := newTestMembers(t, 2, false, testEpoch.Add(-time.Hour), tenantKey)
	a, b := ms[0], ms[1]
	b.counter.SetMaxKeys(1)
	now := testEpoch.Add(time.Millisecond)
	if got := takeKey(t, b.counter, now, "t:x", 1); got != 1 {
		t.Fatalf("first key granted %d", got)
	}
	a.m.flush(now)
	if got := takeKey(t, a.counter, now, "t:y", 15); got == 0 {
		t.Fatal("member 0 granted nothing")
	}
	deliver(t, now, a, ms, a.m.flush(now), nil)
	if b.m.untracked == 0 {
		t.Fatal("the report of a key at the cap was not counted as untracked")
	}
	b.counter.SetMaxKeys(2)
	for _, at := range []time.Duration{time.Millisecond, tenantKey.Window} {
		if _, err := b.counter.TakeAt(now.Add(at), "t:y", 1); !errors.Is(err, locker.ErrTooManyKeys) {
			t.Fatalf("+%v: take of the untracked key: %v, want ErrTooManyKeys", at, err)
		}
	}
	if _, err := b.counter.TakeAt(now.Add(2*tenantKey.Window), "t:y", 1); err != nil {
		t.Fatalf("two windows later: %v", err)
	}
}

// TestTemplateFreshKeyEverywhere: two shared members asked for the whole
// limit of a new tenant at the same instant, before either heard of it
// from the other, grant at most the limit together: a member that never
// reported a key is taken to need its share.
func TestTemplateFreshKeyEverywhere(t *testing.T) {
	ms := newTestMembers(t, 2, false, testEpoch.Add(-time.Hour), tenantKey)
	now := testEpoch.Add(time.Millisecond)
	for _, m := range ms {
		deliver(t, now, m, ms, m.m.heartbeat(now), nil)
	}
	total := 0
	for _, m := range ms {
		total += takeKey(t, m.counter, now, "t:new", int(tenantKey.Limit))
	}
	if total > int(tenantKey.Limit) {
		t.Fatalf("granted %d of a new key together, above the limit %d", total, tenantKey.Limit)
	}
	// Once they exchanged counts, the rest of the limit is theirs.
	exchange(t, now, ms)
	exchange(t, now, ms)
	for _, m := range ms {
		total += takeKey(t, m.counter, now, "t:new", int(tenantKey.Limit))
	}
	if total != int(tenantKey.Limit) {
		t.Fatalf("granted %d in the window after exchanging counts, want the limit %d", total, tenantKey.Limit)
	}
}
