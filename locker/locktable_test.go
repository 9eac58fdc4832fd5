package locker

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lockT0 is the table's start in these tests: the Unix epoch, so that a
// fence given at instant m ms is m·1000 (microseconds), or one more than
// the fence before it.
var lockT0 = time.Unix(0, 0)

func lockAt(ms int64) time.Time { return lockT0.Add(time.Duration(ms) * time.Millisecond) }

// lockStep is one input of a table, written on the wire: the request body
// sent at ms (empty for an Advance only), the reply the table's result
// encodes to at ms ("" for a queued acquisition), and the events it
// caused, each rendered at its own instant: "#TICKET REPLY" for a held
// acquisition's answer, "expired NAME FENCE OWNER" for a lease.
type lockStep struct {
	ms     int64
	req    string
	ticket uint64 // for abandon
	want   string
	events string
}

func newTestLockTable(tb testing.TB, cfg LockTableConfig) *lockTable {
	tb.Helper()
	tbl, err := newLockTable(cfg, lockT0)
	if err != nil {
		tb.Fatal(err)
	}
	return tbl
}

func renderLockEvents(evs []lockEvent) string {
	var parts []string
	for _, ev := range evs {
		if ev.Result.Status == LockExpired {
			parts = append(parts, fmt.Sprintf("expired %s %d %s", ev.Name, ev.Result.Fence, ev.Result.Owner))
			continue
		}
		parts = append(parts, fmt.Sprintf("#%d %s", ev.Ticket, appendLockReply(nil, ev.At, ev.Result)))
	}
	return strings.Join(parts, "; ")
}

func runLockSteps(t *testing.T, tbl *lockTable, steps []lockStep) {
	t.Helper()
	for i, st := range steps {
		now := lockAt(st.ms)
		got := "-"
		if st.req == "" {
			tbl.Advance(now)
		} else {
			r, err := parseLockRequest([]byte(st.req))
			if err != nil {
				t.Fatalf("step %d: ParseLockRequest(%q): %v", i, st.req, err)
			}
			r.Ticket = st.ticket
			got = string(appendLockReply(nil, now, tbl.Apply(now, r)))
		}
		if st.req != "" && got != st.want {
			t.Fatalf("step %d at %d ms: %q -> %q, want %q", i, st.ms, st.req, got, st.want)
		}
		if evs := renderLockEvents(tbl.DrainEvents(nil)); evs != st.events {
			t.Fatalf("step %d at %d ms: %q: events %q, want %q", i, st.ms, st.req, evs, st.events)
		}
		checkLockTable(t, tbl)
	}
}

func TestLockTableScenarios(t *testing.T) {
	noGrace := LockTableConfig{NoGrace: true}
	tests := []struct {
		name  string
		cfg   LockTableConfig
		steps []lockStep
	}{
		{"mutex", noGrace, []lockStep{
			{ms: 0, req: "acquire a exclusive 1000 0 w1", want: "locked 1 1000"},
			{ms: 10, req: "acquire a exclusive 1000 0 w2", want: "busy 990 1 0 w1"},
			{ms: 10, req: "acquire a shared 1000 0 w2", want: "busy 990 1 0 w1"},
			{ms: 20, req: "release a 1", want: "released 1"},
			{ms: 30, req: "acquire a", want: "locked 30000 30000"},
			{ms: 40, req: "release a 1", want: "lost 1"},
			{ms: 40, req: "renew a 1", want: "lost 1"},
			{ms: 40, req: "release b 30000", want: "lost 30000"}, // a fence of another lock
			{ms: 50, req: "acquire b exclusive 0 0", want: "locked 50000 30000"},
		}},
		{"semaphore of 3", LockTableConfig{NoGrace: true, Locks: []LockSpec{{Name: "sem", Capacity: 3}}}, []lockStep{
			{ms: 0, req: "acquire sem shared 1000 0 p1", want: "locked 1 1000"},
			{ms: 1, req: "acquire sem shared 500 0 p2", want: "locked 1000 500"},
			{ms: 2, req: "acquire sem shared 2000 0 p3", want: "locked 2000 2000"},
			// Full: free when the first lease ends (p2's, at 501).
			{ms: 3, req: "acquire sem shared 1000 0 p4", want: "busy 498 3 0 p1"},
			// A writer waits for every holder (p3's lease, at 2002).
			{ms: 3, req: "acquire sem exclusive 1000 0 w", want: "busy 1999 3 0 p1"},
			{ms: 4, req: "release sem 1000", want: "released 1000"},
			{ms: 5, req: "acquire sem shared 1000 0 p4", want: "locked 5000 1000"},
		}},
		{"writers do not starve", LockTableConfig{NoGrace: true, Locks: []LockSpec{{Name: "rw", Capacity: 5}}}, []lockStep{
			{ms: 0, req: "acquire rw shared 1000 0 r1", want: "locked 1 1000"},
			{ms: 1, req: "acquire rw exclusive 1000 5000 w1", want: ""},
			// Room for four more readers, but a writer came first.
			{ms: 2, req: "acquire rw shared 1000 5000 r2", want: ""},
			{ms: 2, req: "acquire rw shared 1000 0 r3", want: "busy 998 1 2 r1"},
			{ms: 3, req: "release rw 1", want: "released 1", events: "#1 locked 3000 1000"},
			{ms: 4, req: "release rw 3000", want: "released 3000", events: "#2 locked 4000 1000"},
			{ms: 5, req: "acquire rw shared 1000 0 r3", want: "locked 5000 1000"},
		}},
		{"lease expiry hands over at once", noGrace, []lockStep{
			{ms: 0, req: "acquire a exclusive 100 0 dead", want: "locked 1 100"},
			{ms: 10, req: "acquire a exclusive 1000 5000 next", want: ""},
			{ms: 99, events: ""},
			{ms: 250, events: "expired a 1 dead; #1 locked 100000 1000"},
			{ms: 260, req: "renew a 1", want: "lost 1"},
			{ms: 260, req: "renew a 100000", want: "locked 100000 1000"},
		}},
		{"an expired lease is lost even if asked after", noGrace, []lockStep{
			{ms: 0, req: "acquire a exclusive 100 0 h", want: "locked 1 100"},
			{ms: 100, req: "renew a 1", want: "lost 1", events: "expired a 1 h"},
		}},
		{"renew", LockTableConfig{NoGrace: true, MaxTTL: time.Second}, []lockStep{
			{ms: 0, req: "acquire a exclusive 100 0 h", want: "locked 1 100"},
			{ms: 90, req: "renew a 1", want: "locked 1 100"},
			{ms: 180, req: "renew a 1 500", want: "locked 1 500"},
			{ms: 600, req: "renew a 1", want: "locked 1 500"},
			{ms: 700, req: "renew a 1 9000", want: "locked 1 1000"}, // capped at MaxTTL
			{ms: 1699, events: ""},
			{ms: 1700, events: "expired a 1 h"},
		}},
		{"TTL bounds", LockTableConfig{NoGrace: true, MaxTTL: time.Second, DefaultTTL: 200 * time.Millisecond}, []lockStep{
			{ms: 0, req: "acquire a exclusive 5000 0", want: "locked 1 1000"},
			{ms: 0, req: "acquire b exclusive 1 0", want: "locked 2 10"},
			{ms: 0, req: "acquire c exclusive 0 0", want: "locked 3 200"},
		}},
		{"revoke", noGrace, []lockStep{
			{ms: 0, req: "acquire a exclusive 1000 0 h", want: "locked 1 1000"},
			{ms: 0, req: "acquire a exclusive 1000 9000 w", want: ""},
			{ms: 10, req: "revoke a", want: "revoking 1"},
			{ms: 20, req: "renew a 1", want: "revoked 1 980"}, // not extended
			{ms: 30, req: "revoke b", want: "revoking 0"},
			{ms: 40, req: "release a 1", want: "released 1", events: "#1 locked 40000 1000"},
			{ms: 50, req: "renew a 40000", want: "locked 40000 1000"}, // the new holder is not revoked
		}},
		{"revoked lease ends at its end", noGrace, []lockStep{
			{ms: 0, req: "acquire a exclusive 1000 0 h", want: "locked 1 1000"},
			{ms: 10, req: "revoke a", want: "revoking 1"},
			{ms: 990, req: "renew a 1", want: "revoked 1 10"},
			{ms: 1000, events: "expired a 1 h"},
		}},
		{"break", LockTableConfig{NoGrace: true, Locks: []LockSpec{{Name: "s", Capacity: 2}}}, []lockStep{
			{ms: 0, req: "acquire s shared 1000 0 h1", want: "locked 1 1000"},
			{ms: 0, req: "acquire s shared 1000 0 h2", want: "locked 2 1000"},
			{ms: 1, req: "acquire s exclusive 1000 5000 w", want: ""},
			{ms: 2, req: "break s", want: "broken 2 2000", events: "#1 locked 2001 1000"},
			{ms: 3, req: "renew s 1", want: "lost 1"},
			{ms: 3, req: "release s 2", want: "lost 2"},
			{ms: 4, req: "break nothing", want: "broken 0 4000"},
		}},
		{"abandon", noGrace, []lockStep{
			{ms: 0, req: "acquire a exclusive 1000 0 h", want: "locked 1 1000"},
			{ms: 1, req: "acquire a exclusive 1000 5000 w1", want: ""},
			{ms: 2, req: "acquire a exclusive 1000 5000 w2", want: ""},
			{ms: 3, req: "abandon a", ticket: 1, want: "abandoned 1"},
			{ms: 3, req: "abandon a", ticket: 1, want: "abandoned 0"},
			{ms: 3, req: "abandon b", ticket: 2, want: "abandoned 0"}, // another lock's ticket
			{ms: 4, req: "release a 1", want: "released 1", events: "#2 locked 4000 1000"},
		}},
		{"abandoning the head lets readers behind it in", LockTableConfig{NoGrace: true, Locks: []LockSpec{{Name: "rw", Capacity: 3}}}, []lockStep{
			{ms: 0, req: "acquire rw shared 1000 0 r1", want: "locked 1 1000"},
			{ms: 1, req: "acquire rw exclusive 1000 5000 w", want: ""},
			{ms: 2, req: "acquire rw shared 1000 5000 r2", want: ""},
			{ms: 3, req: "abandon rw", ticket: 1, want: "abandoned 1", events: "#2 locked 3000 1000"},
		}},
		{"waiter times out", noGrace, []lockStep{
			{ms: 0, req: "acquire a exclusive 1000 0 h", want: "locked 1 1000"},
			{ms: 0, req: "acquire a exclusive 1000 200 w", want: ""},
			{ms: 199, events: ""},
			{ms: 300, events: "#1 busy 800 1 0 h"},
			{ms: 1000, events: "expired a 1 h"},
		}},
		{"a waiter is granted at its last instant", noGrace, []lockStep{
			{ms: 0, req: "acquire a exclusive 100 0 h", want: "locked 1 100"},
			{ms: 0, req: "acquire a exclusive 1000 100 w", want: ""},
			{ms: 100, events: "expired a 1 h; #1 locked 100000 1000"},
		}},
		{"a timed out head lets readers behind it in", LockTableConfig{NoGrace: true, Locks: []LockSpec{{Name: "rw", Capacity: 3}}}, []lockStep{
			{ms: 0, req: "acquire rw shared 1000 0 r1", want: "locked 1 1000"},
			{ms: 0, req: "acquire rw exclusive 1000 100 w", want: ""},
			{ms: 0, req: "acquire rw shared 1000 500 r2", want: ""},
			{ms: 100, events: "#1 busy 900 1 1 r1; #2 locked 100000 1000"},
		}},
		{"a shared request of a mutex waits", noGrace, []lockStep{
			{ms: 0, req: "acquire a shared 1000 0 r1", want: "locked 1 1000"},
			{ms: 0, req: "acquire a shared 1000 0 r2", want: "busy 1000 1 0 r1"},
		}},
		{"grace period", LockTableConfig{MaxTTL: time.Second}, []lockStep{
			{ms: 0, req: "acquire a exclusive 1000 0 h", want: "busy 1000 0 0 -"},
			{ms: 100, req: "acquire a exclusive 1000 800 h", want: "busy 900 0 0 -"}, // cannot be granted in time
			{ms: 100, req: "acquire b exclusive 1000 900 h1", want: ""},
			{ms: 100, req: "acquire a exclusive 1000 5000 h2", want: ""},
			{ms: 200, req: "acquire a shared 1000 5000 h3", want: ""},
			{ms: 999, events: ""},
			// Served in name order, then queue order.
			{ms: 1000, events: "#2 locked 1000000 1000; #1 locked 1000001 1000"},
			{ms: 2000, events: "expired a 1000000 h2; #3 locked 2000000 1000; expired b 1000001 h1"},
		}},
		{"grace period of its own", LockTableConfig{MaxTTL: time.Second, Grace: 300 * time.Millisecond}, []lockStep{
			{ms: 0, req: "acquire a exclusive 1000 0 h", want: "busy 300 0 0 -"},
			{ms: 300, req: "acquire a exclusive 1000 0 h", want: "locked 300000 1000"},
		}},
		{"bounded queue", LockTableConfig{NoGrace: true, MaxWaiters: 1}, []lockStep{
			{ms: 0, req: "acquire a", want: "locked 1 30000"},
			{ms: 0, req: "acquire a exclusive 1000 5000 w1", want: ""},
			{ms: 0, req: "acquire a exclusive 1000 5000 w2", want: "busy 30000 1 1 -"},
		}},
		{"bounded locks", LockTableConfig{NoGrace: true, MaxLocks: 1}, []lockStep{
			{ms: 0, req: "acquire a", want: "locked 1 30000"},
			{ms: 0, req: "acquire b", want: "error too many live locks"},
			{ms: 1, req: "release a 1", want: "released 1"},
			{ms: 2, req: "acquire b", want: "locked 2000 30000"},
		}},
		{"bounded holders and waiters", LockTableConfig{NoGrace: true, MaxSlots: 2}, []lockStep{
			{ms: 0, req: "acquire a", want: "locked 1 30000"},
			{ms: 0, req: "acquire a exclusive 1000 5000 w1", want: ""},
			{ms: 0, req: "acquire a exclusive 1000 0 w2", want: "busy 30000 1 1 -"},
			{ms: 0, req: "acquire a exclusive 1000 5000 w2", want: "error too many lock holders and waiters"},
			{ms: 0, req: "acquire b", want: "error too many lock holders and waiters"},
			{ms: 1, req: "abandon a", ticket: 1, want: "abandoned 1"},
			{ms: 2, req: "acquire b", want: "locked 2000 30000"},
		}},
		{"max wait is capped", LockTableConfig{NoGrace: true, MaxWait: 100 * time.Millisecond}, []lockStep{
			{ms: 0, req: "acquire a", want: "locked 1 30000"},
			{ms: 0, req: "acquire a exclusive 1000 5000 w", want: ""},
			{ms: 100, events: "#1 busy 29900 1 0 -"},
			{ms: 100, req: "acquire a exclusive 1000", want: ""}, // MAX_MS omitted: the table's max
			{ms: 200, events: "#2 busy 29800 1 0 -"},
		}},
		{"template capacity", LockTableConfig{NoGrace: true, Locks: []LockSpec{{Name: "job:", Template: true, Capacity: 2}, {Name: "job:big:", Template: true, Capacity: 3}}}, []lockStep{
			{ms: 0, req: "acquire job:x shared 1000 0", want: "locked 1 1000"},
			{ms: 0, req: "acquire job:x shared 1000 0", want: "locked 2 1000"},
			{ms: 0, req: "acquire job:x shared 1000 0", want: "busy 1000 2 0 -"},
			{ms: 0, req: "acquire job:big:y shared 1000 0", want: "locked 3 1000"},
			{ms: 0, req: "acquire job:big:y shared 1000 0", want: "locked 4 1000"},
			{ms: 0, req: "acquire job:big:y shared 1000 0", want: "locked 5 1000"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tbl := newTestLockTable(t, tc.cfg)
			runLockSteps(t, tbl, tc.steps)
		})
	}
}

func TestLockTableErrors(t *testing.T) {
	tbl := newTestLockTable(t, LockTableConfig{NoGrace: true})
	tests := []struct {
		name string
		req  lockRequest
		want error
	}{
		{"no verb", lockRequest{Name: []byte("a")}, errBadLockVerb},
		{"listing", lockRequest{Verb: lockList}, errBadLockVerb},
		{"no name", lockRequest{Verb: lockAcquire}, errBadLockName},
		{"bad name", lockRequest{Verb: lockAcquire, Name: []byte("a b")}, errBadKey},
		{"bad mode", lockRequest{Verb: lockAcquire, Name: []byte("a"), Mode: 7}, errBadLockMode},
		{"bad owner", lockRequest{Verb: lockAcquire, Name: []byte("a"), Owner: []byte("a b")}, errBadLockOwner},
		{"long owner", lockRequest{Verb: lockAcquire, Name: []byte("a"), Owner: make([]byte, maxLockOwnerLen+1)}, errBadLockOwner},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tbl.Apply(lockT0, tc.req)
			if got.Status != LockError || got.Err != tc.want {
				t.Fatalf("Apply(%+v) = %v %v, want error %v", tc.req, got.Status, got.Err, tc.want)
			}
			if tbl.Len() != 0 {
				t.Fatalf("Len()=%d after an error, want 0", tbl.Len())
			}
		})
	}
}

func TestNewLockTableRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  LockTableConfig
	}{
		{"max TTL below minimum", LockTableConfig{MaxTTL: time.Millisecond}},
		{"default TTL above max", LockTableConfig{MaxTTL: time.Second, DefaultTTL: 2 * time.Second}},
		{"negative wait", LockTableConfig{MaxWait: -1}},
		{"negative locks", LockTableConfig{MaxLocks: -1}},
		{"negative waiters", LockTableConfig{MaxWaiters: -1}},
		{"negative slots", LockTableConfig{MaxSlots: -1}},
		{"negative grace", LockTableConfig{Grace: -1}},
		{"zero capacity", LockTableConfig{Locks: []LockSpec{{Name: "a"}}}},
		{"bad name", LockTableConfig{Locks: []LockSpec{{Name: "a b", Capacity: 1}}}},
		{"twice", LockTableConfig{Locks: []LockSpec{{Name: "a", Capacity: 1}, {Name: "a", Capacity: 2}}}},
		{"template twice", LockTableConfig{Locks: []LockSpec{{Name: "a", Template: true, Capacity: 1}, {Name: "a", Template: true, Capacity: 2}}}},
		{"fence floor too high", LockTableConfig{FenceFloor: maxLockFence}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newLockTable(tc.cfg, lockT0); err == nil {
				t.Fatalf("NewLockTable(%+v) succeeded", tc.cfg)
			}
		})
	}
}

func TestParseLockSpec(t *testing.T) {
	tests := []struct {
		spec string
		want LockSpec
		ok   bool
	}{
		{"licence=4", LockSpec{Name: "licence", Capacity: 4}, true},
		{"job:*=2", LockSpec{Name: "job:", Template: true, Capacity: 2}, true},
		{"a=1000000", LockSpec{Name: "a", Capacity: 1000000}, true},
		{"a=1000001", LockSpec{}, false},
		{"a=0", LockSpec{}, false},
		{"a=x", LockSpec{}, false},
		{"a", LockSpec{}, false},
		{"*=2", LockSpec{}, false},
		{"a*b=2", LockSpec{}, false},
		{"=2", LockSpec{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParseLockSpec(tc.spec)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseLockSpec(%q) = %+v, %v; want %+v, ok %v", tc.spec, got, err, tc.want, tc.ok)
			}
			if tc.ok && got.String() != tc.spec {
				t.Fatalf("String()=%q, want %q", got.String(), tc.spec)
			}
		})
	}
}

// TestLockTableFencesAcrossRestart: a table started after another, on a
// clock that went on, gives fences above all of the first one's, even
// one that gave fences faster than its clock for a while; and a persisted
// floor holds when the clock went back.
func TestLockTableFencesAcrossRestart(t *testing.T) {
	first := newTestLockTable(t, LockTableConfig{NoGrace: true})
	now := lockAt(1000)
	var last uint64
	for i := range 5000 { // 5000 grants in one microsecond: fences run ahead
		name := []byte("l" + strconv.Itoa(i))
		r := first.Apply(now, lockRequest{Verb: lockAcquire, Name: name, MaxWait: 0})
		if r.Status != LockGranted || r.Fence <= last {
			t.Fatalf("grant %d: %+v after fence %d", i, r, last)
		}
		last = r.Fence
	}
	// Restarted at 1002 ms (the start of newTestLockTable is lockT0:
	// advance it) with the default grace period: the first grant comes
	// after it.
	second, err := newLockTable(LockTableConfig{MaxTTL: time.Second}, lockAt(1002))
	if err != nil {
		t.Fatal(err)
	}
	r := second.Apply(lockAt(1002), lockRequest{Verb: lockAcquire, Name: []byte("l0"), MaxWait: 5 * time.Second})
	if r.Status != LockQueued {
		t.Fatalf("acquire in grace: %+v, want queued", r)
	}
	second.Advance(lockAt(5000))
	evs := second.DrainEvents(nil)
	if len(evs) == 0 || evs[0].Result.Status != LockGranted || evs[0].Result.Fence <= last {
		t.Fatalf("after restart: %+v, want a grant above fence %d", evs, last)
	}

	// The clock went back a day; the floor persisted from the first run
	// still holds.
	third, err := newLockTable(LockTableConfig{NoGrace: true, FenceFloor: first.Stats().LastFence}, lockT0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r = third.Apply(lockT0.Add(-24*time.Hour), lockRequest{Verb: lockAcquire, Name: []byte("l0"), MaxWait: 0})
	if r.Status != LockGranted || r.Fence <= last {
		t.Fatalf("with floor %d: %+v", last, r)
	}
}

func TestLockTableNextDeadline(t *testing.T) {
	tbl := newTestLockTable(t, LockTableConfig{MaxTTL: time.Second})
	if got, ok := tbl.NextDeadline(); !ok || !got.Equal(lockAt(1000)) {
		t.Fatalf("in grace: NextDeadline()=%v %v, want the grace end", got, ok)
	}
	tbl.Advance(lockAt(1000))
	if got, ok := tbl.NextDeadline(); ok {
		t.Fatalf("empty: NextDeadline()=%v, want none", got)
	}
	apply := func(ms int64, body string) lockResult {
		t.Helper()
		r, err := parseLockRequest([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return tbl.Apply(lockAt(ms), r)
	}
	g := apply(1000, "acquire a exclusive 500 0")
	apply(1000, "acquire a exclusive 500 200")
	if got, _ := tbl.NextDeadline(); !got.Equal(lockAt(1200)) {
		t.Fatalf("NextDeadline()=%v, want the waiter's deadline %v", got, lockAt(1200))
	}
	tbl.Advance(lockAt(1200))
	if got, _ := tbl.NextDeadline(); !got.Equal(lockAt(1500)) {
		t.Fatalf("NextDeadline()=%v, want the lease end %v", got, lockAt(1500))
	}
	apply(1300, "renew a "+strconv.FormatUint(g.Fence, 10)+" 900")
	if got, _ := tbl.NextDeadline(); !got.Equal(lockAt(2200)) {
		t.Fatalf("after renewal: NextDeadline()=%v, want %v", got, lockAt(2200))
	}
	// Time does not go back.
	tbl.Advance(lockAt(0))
	if r := apply(0, "renew a "+strconv.FormatUint(g.Fence, 10)); r.Status != LockGranted || !r.Until.Equal(lockAt(2200)) {
		t.Fatalf("renew at an earlier instant: %+v, want a lease to %v", r, lockAt(2200))
	}
}

func TestLockTableListing(t *testing.T) {
	tbl := newTestLockTable(t, LockTableConfig{NoGrace: true, Locks: []LockSpec{{Name: "s", Capacity: 2}}})
	for _, body := range []string{"acquire s shared 1000 0 r1", "acquire s shared 2000 0 r2", "acquire s exclusive 1000 5000 w", "acquire a exclusive 1000 0 h"} {
		r, err := parseLockRequest([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		tbl.Apply(lockAt(10), r)
	}
	tbl.Apply(lockAt(10), lockRequest{Verb: lockRevoke, Name: []byte("a")})
	got := string(appendLockList(nil, lockAt(110), tbl.Locks(nil)))
	want := `{"locks":[` +
		`{"name":"a","capacity":1,"mode":"exclusive","holders":[{"owner":"h","fence":10002,"mode":"exclusive","since_ms":10,"held_ms":100,"lease_ms":900,"revoked":true}],"waiters":[]},` +
		`{"name":"s","capacity":2,"mode":"shared","holders":[` +
		`{"owner":"r1","fence":10000,"mode":"shared","since_ms":10,"held_ms":100,"lease_ms":900,"revoked":false},` +
		`{"owner":"r2","fence":10001,"mode":"shared","since_ms":10,"held_ms":100,"lease_ms":1900,"revoked":false}],` +
		`"waiters":[{"owner":"w","mode":"exclusive","waited_ms":100,"left_ms":4900}]}]}`
	if got != want {
		t.Fatalf("listing:\n got %s\nwant %s", got, want)
	}
	if li, ok := tbl.Lock("s"); !ok || len(li.Holders) != 2 || len(li.Waiters) != 1 {
		t.Fatalf("Lock(s) = %+v, %v", li, ok)
	}
	if _, ok := tbl.Lock("nope"); ok {
		t.Fatal("Lock(nope) reported a live lock")
	}
	if got := string(appendLockList(nil, lockAt(0), nil)); got != `{"locks":[]}` {
		t.Fatalf("empty listing %s", got)
	}
}

// TestLockTableManyNames: 100k distinct names acquired and released leave
// the table empty, its maps and timers new.
func TestLockTableManyNames(t *testing.T) {
	tbl := newTestLockTable(t, LockTableConfig{NoGrace: true, MaxLocks: 200_000, MaxSlots: 200_000})
	const n = 100_000
	fences := make([]uint64, n)
	var name []byte
	for i := range n {
		name = strconv.AppendInt(append(name[:0], "job-"...), int64(i), 10)
		r := tbl.Apply(lockAt(1), lockRequest{Verb: lockAcquire, Name: name, MaxWait: 0, Owner: []byte("me")})
		if r.Status != LockGranted {
			t.Fatalf("acquire %s: %+v", name, r)
		}
		fences[i] = r.Fence
	}
	if st := tbl.Stats(); st.Locks != n || st.Holders != n {
		t.Fatalf("Stats()=%+v after %d grants", st, n)
	}
	for i := range n {
		name = strconv.AppendInt(append(name[:0], "job-"...), int64(i), 10)
		if r := tbl.Apply(lockAt(2), lockRequest{Verb: lockRelease, Name: name, Fence: fences[i]}); r.Status != LockReleased {
			t.Fatalf("release %s: %+v", name, r)
		}
	}
	if tbl.Len() != 0 || len(tbl.held) != 0 || len(tbl.waiting) != 0 || tbl.timers != nil {
		t.Fatalf("after release: %d locks, %d held, %d waiting, timers %v", tbl.Len(), len(tbl.held), len(tbl.waiting), tbl.timers != nil)
	}
	if _, ok := tbl.NextDeadline(); ok {
		t.Fatal("NextDeadline reports work on an empty table")
	}
}

// checkLockTable checks the table's invariants: no exclusive holder
// beside another holder, shared holders within the capacity, no entry for
// a free lock with no waiters, and the maps and timers agreeing with the
// locks.
func checkLockTable(tb testing.TB, t *lockTable) {
	tb.Helper()
	held, waiting := 0, 0
	for name, e := range t.locks {
		if e.name != name {
			tb.Fatalf("lock %q filed as %q", e.name, name)
		}
		if e.held.n == 0 && e.waiters.n == 0 {
			tb.Fatalf("lock %q is free with no waiters but kept", name)
		}
		if e.held.n > e.capacity {
			tb.Fatalf("lock %q: %d holders, capacity %d", name, e.held.n, e.capacity)
		}
		n := 0
		for s := e.held.head; s != nil; s = s.next {
			n++
			if s.waiting || t.held[s.fence] != s || s.hidx < 0 || t.timers[s.hidx] != s {
				tb.Fatalf("lock %q: holder %d not filed", name, s.fence)
			}
			if s.mode == LockExclusive && e.held.n != 1 {
				tb.Fatalf("lock %q: exclusive holder %d among %d", name, s.fence, e.held.n)
			}
			if (s.mode == LockExclusive) != e.exclusive {
				tb.Fatalf("lock %q: holder mode %v, lock exclusive %v", name, s.mode, e.exclusive)
			}
		}
		if n != e.held.n {
			tb.Fatalf("lock %q: %d holders listed, %d counted", name, n, e.held.n)
		}
		n = 0
		for s := e.waiters.head; s != nil; s = s.next {
			n++
			if !s.waiting || t.waiting[s.ticket] != s || s.hidx < 0 || t.timers[s.hidx] != s {
				tb.Fatalf("lock %q: waiter %d not filed", name, s.ticket)
			}
		}
		if n != e.waiters.n {
			tb.Fatalf("lock %q: %d waiters listed, %d counted", name, n, e.waiters.n)
		}
		if !t.inGrace && e.waiters.head != nil && e.fits(e.waiters.head.mode) {
			tb.Fatalf("lock %q: its first waiter fits but waits", name)
		}
		held += e.held.n
		waiting += e.waiters.n
	}
	if held != len(t.held) || waiting != len(t.waiting) || held+waiting != len(t.timers) {
		tb.Fatalf("%d holders and %d waiters in locks; maps %d and %d; %d timers", held, waiting, len(t.held), len(t.waiting), len(t.timers))
	}
	for i, s := range t.timers {
		if s.hidx != i {
			tb.Fatalf("timer %d knows index %d", i, s.hidx)
		}
		if i > 0 && slotLess(s, t.timers[(i-1)/2]) {
			tb.Fatalf("timer %d before its parent", i)
		}
		if s.at.Before(t.now) {
			tb.Fatalf("timer at %v is before the table's now %v", s.at, t.now)
		}
	}
}

// lockModel is what a client-side observer of a table knows from its
// results and events alone; TestLockTableRandomized checks every answer
// against it.
type lockModel struct {
	tb        testing.TB
	caps      map[string]int
	holders   map[uint64]string    // fence -> lock
	leaseEnd  map[uint64]time.Time // fence -> lease end
	revoked   map[uint64]bool
	queue     map[string][]uint64  // lock -> tickets in arrival order
	deadline  map[uint64]time.Time // ticket -> deadline
	lastFence uint64
	stale     []uint64 // fences and tickets no longer live, to try
}

func (m *lockModel) fence(f uint64, what string) {
	if f <= m.lastFence {
		m.tb.Fatalf("%s: fence %d not above %d", what, f, m.lastFence)
	}
	m.lastFence = f
}

func (m *lockModel) hold(name string, f uint64, until time.Time) {
	m.holders[f] = name
	m.leaseEnd[f] = until
}

func (m *lockModel) drop(f uint64) {
	delete(m.holders, f)
	delete(m.leaseEnd, f)
	delete(m.revoked, f)
	m.stale = append(m.stale, f)
}

func (m *lockModel) unqueue(name string, ticket uint64) bool {
	q := m.queue[name]
	for i, tk := range q {
		if tk == ticket {
			m.queue[name] = append(q[:i:i], q[i+1:]...)
			delete(m.deadline, ticket)
			m.stale = append(m.stale, ticket)
			return true
		}
	}
	return false
}

func (m *lockModel) events(evs []lockEvent) {
	for _, ev := range evs {
		switch ev.Result.Status {
		case LockGranted:
			q := m.queue[ev.Name]
			if len(q) == 0 || q[0] != ev.Ticket {
				m.tb.Fatalf("lock %s granted to ticket %d, queue %v: not first come, first served", ev.Name, ev.Ticket, q)
			}
			if ev.At.After(m.deadline[ev.Ticket]) {
				m.tb.Fatalf("ticket %d granted at %v, past its deadline %v", ev.Ticket, ev.At, m.deadline[ev.Ticket])
			}
			m.unqueue(ev.Name, ev.Ticket)
			m.fence(ev.Result.Fence, "grant to a waiter")
			m.hold(ev.Name, ev.Result.Fence, ev.Result.Until)
		case LockBusy:
			if !ev.At.Equal(m.deadline[ev.Ticket]) {
				m.tb.Fatalf("ticket %d refused at %v, deadline %v", ev.Ticket, ev.At, m.deadline[ev.Ticket])
			}
			if !m.unqueue(ev.Name, ev.Ticket) {
				m.tb.Fatalf("ticket %d refused but not queued on %s", ev.Ticket, ev.Name)
			}
		case LockExpired:
			f := ev.Result.Fence
			if m.holders[f] != ev.Name || !ev.At.Equal(m.leaseEnd[f]) {
				m.tb.Fatalf("lease %d of %s expired at %v; model: %q until %v", f, ev.Name, ev.At, m.holders[f], m.leaseEnd[f])
			}
			m.drop(f)
		default:
			m.tb.Fatalf("event %+v", ev)
		}
	}
}

// check compares the model with the table's listing and checks mutual
// exclusion on the listing.
func (m *lockModel) check(tbl *lockTable, now time.Time) {
	for name, cp := range m.caps {
		li, live := tbl.Lock(name)
		want := 0
		for _, n := range m.holders {
			if n == name {
				want++
			}
		}
		if len(li.Holders) != want || len(li.Waiters) != len(m.queue[name]) {
			m.tb.Fatalf("lock %s: %d holders and %d waiters, model %d and %d", name, len(li.Holders), len(li.Waiters), want, len(m.queue[name]))
		}
		if live != (want > 0 || len(m.queue[name]) > 0) {
			m.tb.Fatalf("lock %s live=%v with %d holders and %d waiters", name, live, want, len(m.queue[name]))
		}
		for _, h := range li.Holders {
			if m.holders[h.Fence] != name {
				m.tb.Fatalf("lock %s: holder %d unknown to the model", name, h.Fence)
			}
			if h.Mode == LockExclusive && len(li.Holders) > 1 {
				m.tb.Fatalf("lock %s: exclusive holder %d among %d", name, h.Fence, len(li.Holders))
			}
			if !h.LeaseEnd.After(now) {
				m.tb.Fatalf("lock %s: holder %d past its lease end %v at %v", name, h.Fence, h.LeaseEnd, now)
			}
		}
		if len(li.Holders) > cp {
			m.tb.Fatalf("lock %s: %d holders, capacity %d", name, len(li.Holders), cp)
		}
	}
	for tk, dl := range m.deadline {
		if !dl.After(now) {
			m.tb.Fatalf("ticket %d still waits at %v, past its deadline %v", tk, now, dl)
		}
	}
}

// TestLockTableRandomized runs random sequences of acquire, renew,
// release, abandon, revoke, break and time passing over a mutex, a
// semaphore and a read/write lock, and checks after every step the
// table's invariants and every answer against what the answers before
// it imply: mutual exclusion, capacities, fences strictly increasing,
// grants in arrival order, no grant past a deadline, no entry for a free
// lock.
func TestLockTableRandomized(t *testing.T) {
	seeds, steps := 12, 3000
	if testing.Short() {
		seeds, steps = 3, 1000
	}
	names := []string{"mutex", "sem", "rw"}
	for seed := range seeds {
		t.Run(strconv.Itoa(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 12))
			cfg := LockTableConfig{
				MaxTTL: 400 * time.Millisecond, DefaultTTL: 100 * time.Millisecond,
				MaxWait: 300 * time.Millisecond, MaxWaiters: 4,
				Locks:   []LockSpec{{Name: "sem", Capacity: 3}, {Name: "rw", Capacity: 2}},
				NoGrace: seed%2 == 0, Grace: 150 * time.Millisecond,
			}
			tbl := newTestLockTable(t, cfg)
			m := &lockModel{tb: t, caps: map[string]int{"mutex": 1, "sem": 3, "rw": 2},
				holders: map[uint64]string{}, leaseEnd: map[uint64]time.Time{}, revoked: map[uint64]bool{},
				queue: map[string][]uint64{}, deadline: map[uint64]time.Time{}}
			now := lockT0
			graceEnd := lockT0.Add(cfg.Grace)
			anyOf := func(set map[uint64]string) uint64 {
				if len(set) > 0 && rng.IntN(4) > 0 {
					i := rng.IntN(len(set))
					for f := range set {
						if i == 0 {
							return f
						}
						i--
					}
				}
				if len(m.stale) > 0 {
					return m.stale[rng.IntN(len(m.stale))]
				}
				return 1
			}
			for range steps {
				now = now.Add(time.Duration(rng.IntN(30)) * time.Millisecond)
				tbl.Advance(now)
				m.events(tbl.DrainEvents(nil))
				name := names[rng.IntN(len(names))]
				r := lockRequest{Name: []byte(name)}
				switch op := rng.IntN(20); {
				case op < 8:
					r.Verb, r.Mode = lockAcquire, LockMode(rng.IntN(2))
					r.TTL = time.Duration(10+rng.IntN(300)) * time.Millisecond
					r.MaxWait = time.Duration(rng.IntN(3)*rng.IntN(200)) * time.Millisecond
					r.Owner = []byte("o" + strconv.Itoa(rng.IntN(9)))
				case op < 11:
					r.Verb, r.Fence = lockRenew, anyOf(m.holders)
					r.TTL = time.Duration(rng.IntN(2)*rng.IntN(300)) * time.Millisecond
				case op < 15:
					r.Verb, r.Fence = lockRelease, anyOf(m.holders)
				case op < 17:
					tickets := map[uint64]string{}
					for n, q := range m.queue {
						for _, tk := range q {
							tickets[tk] = n
						}
					}
					r.Verb, r.Ticket = lockAbandon, anyOf(tickets)
				case op < 18:
					r.Verb = lockRevoke
				case op < 19:
					r.Verb = lockBreak
				default:
					continue
				}
				res := tbl.Apply(now, r)
				held := 0
				for _, n := range m.holders {
					if n == name {
						held++
					}
				}
				switch res.Status {
				case LockGranted:
					if r.Verb == lockAcquire {
						if len(m.queue[name]) > 0 {
							t.Fatalf("%s granted at once past %d waiters", name, len(m.queue[name]))
						}
						if !cfg.NoGrace && now.Before(graceEnd) {
							t.Fatalf("%s granted at %v, in the grace period", name, now)
						}
						m.fence(res.Fence, "grant")
					} else if m.holders[res.Fence] != name || m.revoked[res.Fence] || res.Fence != r.Fence {
						t.Fatalf("renewal of %d on %s: %+v; model holder %q revoked %v", r.Fence, name, res, m.holders[res.Fence], m.revoked[res.Fence])
					}
					if !res.Until.After(now) || res.Until.After(now.Add(cfg.MaxTTL)) {
						t.Fatalf("lease to %v at %v", res.Until, now)
					}
					m.hold(name, res.Fence, res.Until)
				case LockQueued:
					m.queue[name] = append(m.queue[name], res.Ticket)
					m.deadline[res.Ticket] = now.Add(min(r.MaxWait, cfg.MaxWait))
				case LockBusy:
					if res.Holders != held || res.Waiters != len(m.queue[name]) {
						t.Fatalf("busy %+v; model %d holders, %d waiters", res, held, len(m.queue[name]))
					}
				case LockRevoked:
					if m.holders[r.Fence] != name || !m.revoked[r.Fence] || !res.Until.Equal(m.leaseEnd[r.Fence]) {
						t.Fatalf("revoked %+v; model %q revoked %v until %v", res, m.holders[r.Fence], m.revoked[r.Fence], m.leaseEnd[r.Fence])
					}
				case LockLost:
					if m.holders[r.Fence] == name {
						t.Fatalf("%s: lease %d lost, but the model holds it", name, r.Fence)
					}
				case LockReleased:
					if m.holders[r.Fence] != name {
						t.Fatalf("%s: released %d, unknown to the model", name, r.Fence)
					}
					m.drop(r.Fence)
				case LockAbandoned:
					if got := m.unqueue(name, r.Ticket); got != (res.Count == 1) {
						t.Fatalf("%s: abandoned %d of ticket %d; model had it: %v", name, res.Count, r.Ticket, got)
					}
				case LockRevoking:
					if res.Count != held {
						t.Fatalf("%s: revoking %d, model %d holders", name, res.Count, held)
					}
					for f, n := range m.holders {
						if n == name {
							m.revoked[f] = true
						}
					}
				case LockBroken:
					if res.Count != held {
						t.Fatalf("%s: broken %d, model %d holders", name, res.Count, held)
					}
					for f, n := range m.holders {
						if n == name {
							m.drop(f)
						}
					}
					m.fence(res.Fence, "break")
				default:
					t.Fatalf("%+v: %+v", r, res)
				}
				m.events(tbl.DrainEvents(nil))
				checkLockTable(t, tbl)
				m.check(tbl, now)
			}
		})
	}
}

// lockInput is one input of a table: a request at an instant, or only the
// instant (Verb LockNone) for Advance.
type lockInput struct {
	now time.Time
	req lockRequest
}

// TestLockTableDeterministic: two tables given the same requests at the
// same instants give the same answers and events, in the same order, as
// replicas of a consensus log must; Go's map order, which differs from
// one map to the next, must not show through.
func TestLockTableDeterministic(t *testing.T) {
	cfg := LockTableConfig{MaxTTL: 300 * time.Millisecond, MaxWait: 500 * time.Millisecond,
		Locks: []LockSpec{{Name: "s", Template: true, Capacity: 3}}}
	for seed := range uint64(4) {
		t.Run(strconv.Itoa(int(seed)), func(t *testing.T) { checkLockReplicas(t, cfg, seed) })
	}
}

// lockTranscript applies in to tbl and renders what came out: the result
// and the events.
func lockTranscript(tbl *lockTable, in lockInput) string {
	var b strings.Builder
	if in.req.Verb == lockNone {
		tbl.Advance(in.now)
	} else {
		r := tbl.Apply(in.now, in.req)
		fmt.Fprintf(&b, "%s:%d:%s|", r.Status, r.Ticket, appendLockReply(nil, in.now, r))
	}
	b.WriteString(renderLockEvents(tbl.DrainEvents(nil)))
	return b.String()
}

// checkLockReplicas runs a random log of inputs through one table, then
// through three more, and compares their transcripts.
func checkLockReplicas(t *testing.T, cfg LockTableConfig, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	first := newTestLockTable(t, cfg)
	var log []lockInput
	var want []string
	var fences, tickets []uint64
	now := lockT0
	for range 3000 {
		now = now.Add(time.Duration(rng.IntN(20)) * time.Millisecond)
		in := lockInput{now: now}
		name := []byte([]string{"m0", "m1", "m2", "m3", "m4", "m5", "s0", "s1"}[rng.IntN(8)])
		pick := func(from []uint64) uint64 {
			if len(from) == 0 {
				return 1
			}
			return from[rng.IntN(len(from))]
		}
		switch op := rng.IntN(10); {
		case op < 5:
			in.req = lockRequest{Verb: lockAcquire, Name: name, Mode: LockMode(rng.IntN(2)),
				TTL: time.Duration(10+rng.IntN(200)) * time.Millisecond, MaxWait: time.Duration(rng.IntN(400)) * time.Millisecond}
		case op < 7:
			in.req = lockRequest{Verb: lockRelease, Name: name, Fence: pick(fences)}
		case op < 8:
			in.req = lockRequest{Verb: lockRenew, Name: name, Fence: pick(fences)}
		case op < 9:
			in.req = lockRequest{Verb: lockAbandon, Name: name, Ticket: pick(tickets)}
		}
		out := lockTranscript(first, in)
		if r, ok := first.Lock(string(name)); ok {
			for _, h := range r.Holders {
				fences = append(fences, h.Fence)
			}
		}
		if len(tickets) == 0 || tickets[len(tickets)-1] != first.ticket {
			tickets = append(tickets, first.ticket)
		}
		log = append(log, in)
		want = append(want, out)
	}
	for replica := range 3 {
		tbl := newTestLockTable(t, cfg)
		for i, in := range log {
			if got := lockTranscript(tbl, in); got != want[i] {
				t.Fatalf("replica %d, input %d (%+v): %q, want %q", replica, i, in, got, want[i])
			}
		}
	}
}

// BenchmarkLockTableAcquireRelease measures an uncontended acquire and
// release of one of 64 locks, as the server loop would apply them.
func BenchmarkLockTableAcquireRelease(b *testing.B) {
	tbl := newTestLockTable(b, LockTableConfig{NoGrace: true})
	names := make([][]byte, 64)
	for i := range names {
		names[i] = []byte("lock-" + strconv.Itoa(i))
	}
	now := lockAt(1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		name := names[i%len(names)]
		r := tbl.Apply(now, lockRequest{Verb: lockAcquire, Name: name, MaxWait: 0, Owner: []byte("bench:1")})
		if r.Status != LockGranted {
			b.Fatal(r)
		}
		tbl.Apply(now, lockRequest{Verb: lockRelease, Name: name, Fence: r.Fence})
	}
}

// BenchmarkLockTableHandover measures a release that hands a mutex to
// the next of 16 queued acquisitions, which then queues again.
func BenchmarkLockTableHandover(b *testing.B) {
	tbl := newTestLockTable(b, LockTableConfig{NoGrace: true})
	name := []byte("contended")
	acq := lockRequest{Verb: lockAcquire, Name: name, MaxWait: time.Hour, TTL: time.Minute}
	now := lockAt(1)
	fence := tbl.Apply(now, acq).Fence
	for range 16 {
		tbl.Apply(now, acq)
	}
	var evs []lockEvent
	b.ReportAllocs()
	for b.Loop() {
		tbl.Apply(now, lockRequest{Verb: lockRelease, Name: name, Fence: fence})
		evs = tbl.DrainEvents(evs[:0])
		if len(evs) != 1 || evs[0].Result.Status != LockGranted {
			b.Fatal(evs)
		}
		fence = evs[0].Result.Fence
		tbl.Apply(now, acq)
	}
}

// BenchmarkLockTableHeld measures the memory of a held lock: b.N distinct
// names acquired and kept (B/op is the cost of one, maps included).
func BenchmarkLockTableHeld(b *testing.B) {
	tbl := newTestLockTable(b, LockTableConfig{NoGrace: true, MaxLocks: 1 << 30, MaxSlots: 1 << 30})
	var name []byte
	now := lockAt(1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		name = strconv.AppendInt(append(name[:0], "job-"...), int64(i), 10)
		if r := tbl.Apply(now, lockRequest{Verb: lockAcquire, Name: name, MaxWait: 0, Owner: []byte("web-17.example:123456")}); r.Status != LockGranted {
			b.Fatal(r)
		}
	}
}
