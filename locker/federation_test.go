package locker

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestShare(t *testing.T) {
	for _, tc := range []struct {
		limit   int64
		members int
		want    []int64
	}{
		{100, 3, []int64{34, 33, 33}},
		{2, 3, []int64{1, 1, 0}},
		{9, 3, []int64{3, 3, 3}},
		{1, 1, []int64{1}},
	} {
		var sum int64
		for r, w := range tc.want {
			if got := Share(tc.limit, tc.members, r); got != w {
				t.Errorf("Share(%d,%d,%d)=%d, want %d", tc.limit, tc.members, r, got, w)
			}
			sum += w
		}
		if sum != tc.limit {
			t.Errorf("shares of %d sum to %d", tc.limit, sum)
		}
	}
}

func mustFedCounter(tb testing.TB, fc FederationConfig) *Counter {
	tb.Helper()
	c, err := NewCounter([]KeyConfig{{Name: "k", Limit: 10, Window: time.Second}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.EnableFederation(fc); err != nil {
		tb.Fatal(err)
	}
	return c
}

func grants(tb testing.TB, c *Counter, now time.Time, n int) int {
	tb.Helper()
	got := 0
	for i := 0; i < n; i++ {
		d, err := c.TakeAt(now, "k", 1)
		if err != nil {
			tb.Fatal(err)
		}
		if d.OK {
			got++
		}
	}
	return got
}

func TestStrictBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := mustFedCounter(t, FederationConfig{Strict: true, Members: 3, Rank: 0, Fence: t0})
	// Fenced: the start window and the next grant nothing.
	if got := grants(t, c, t0, 5); got != 0 {
		t.Fatalf("fenced window granted %d, want 0", got)
	}
	if got := grants(t, c, t0.Add(time.Second), 5); got != 0 {
		t.Fatalf("window after fence granted %d, want 0", got)
	}
	t2 := t0.Add(2 * time.Second)
	k2 := WindowIndex(t2, time.Second)
	// Share of 10 among 3 at rank 0 is 4; give 1 of the next window away,
	// receive 3 for this one.
	if g := c.GiveAt(t2, "k", k2+1, 1); g != 1 {
		t.Fatalf("GiveAt=%d, want 1", g)
	}
	c.SetReceivedAt(t2, "k", k2, 3)
	c.SetReceivedAt(t2, "k", k2, 2) // smaller cumulative total: ignored
	if got := grants(t, c, t2, 20); got != 7 {
		t.Fatalf("window granted %d, want 4+3", got)
	}
	if g := c.GiveAt(t2, "k", k2, 5); g != 0 {
		t.Fatalf("GiveAt of an exhausted window=%d, want 0", g)
	}
	lc := c.LocalAt(t2)
	if len(lc) != 2 || lc[1].Name != "k" || lc[1].Granted != 7 || lc[1].Asked != 20 || lc[1].Budget != 7 {
		t.Fatalf("LocalAt=%+v", lc)
	}
	t3 := t2.Add(time.Second)
	if got := grants(t, c, t3, 20); got != 3 {
		t.Fatalf("window after giving 1 granted %d, want 3", got)
	}
	lc = c.LocalAt(t3)
	if lc[1].PrevGranted != 7 || lc[1].PrevAsked != 20 {
		t.Fatalf("LocalAt prev=%+v", lc[1])
	}
	// A far-future window is ignored.
	if g := c.GiveAt(t3, "k", k2+10, 1); g != 0 {
		t.Fatalf("GiveAt far future=%d, want 0", g)
	}
}

// TestSharedFence: a shared member grants nothing in the window it
// started in, where an earlier run of it may have granted already, and
// grants from the next window on.
func TestSharedFence(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := mustFedCounter(t, FederationConfig{Members: 3, Rank: 1, Fence: t0.Add(300 * time.Millisecond)})
	if got := grants(t, c, t0.Add(900*time.Millisecond), 10); got != 0 {
		t.Fatalf("start window granted %d, want 0", got)
	}
	if got := grants(t, c, t0.Add(time.Second), 10); got != 10 {
		t.Fatalf("next window granted %d, want 10", got)
	}
}

func TestSharedRemote(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := mustFedCounter(t, FederationConfig{Members: 3, Rank: 1, Fence: t0.Add(-time.Hour)})
	k := WindowIndex(t0, time.Second)
	c.SetRemoteAt(t0, "k", k, 6)
	c.SetRemoteAt(t0, "k", k+1, 9) // next window: kept until it starts
	if got := grants(t, c, t0, 10); got != 4 {
		t.Fatalf("granted %d, want 10-6", got)
	}
	if got := grants(t, c, t0.Add(time.Second), 10); got != 1 {
		t.Fatalf("next window granted %d, want 10-9", got)
	}
	if g := c.GiveAt(t0, "k", k, 1); g != 0 {
		t.Fatalf("GiveAt in shared mode=%d, want 0", g)
	}
	// Reconfigure keeps the state of a key whose window is unchanged and
	// federates new keys.
	if err := c.Reconfigure([]KeyConfig{{Name: "k", Limit: 20, Window: time.Second}, {Name: "n", Limit: 1, Window: time.Second}}); err != nil {
		t.Fatal(err)
	}
	if got := len(c.LocalAt(t0.Add(time.Second))); got != 3 {
		t.Fatalf("LocalAt after reconfigure has %d keys, want 3", got)
	}
}

// TestLowerLimitMidWindow lowers a key's limit 300 ms into a window and
// counts what the window grants in all, on one server and on two strict
// members whose counts and transfers reach each other only through the
// Counter's federation API (no exchange happens after the reload: the
// reports of a real federation lag). From the reload on, no window may
// grant more than the new limit: grants made before it stay, and nothing
// is granted beyond the new limit on top of them.
func TestLowerLimitMidWindow(t *testing.T) {
	const w = time.Second
	const k = 1_800_000_000
	start := time.Unix(0, k*int64(w))
	mid := start.Add(300 * time.Millisecond)
	key := func(limit int64) []KeyConfig { return []KeyConfig{{Name: "api", Limit: limit, Window: w}} }
	tests := []struct {
		name    string
		members int
		strict  bool
		before  int64 // tokens each member grants before the reload
		give    int64 // tokens member 1 gives member 0 for the window before the reload
		after   bool  // member 0 gives member 1 a token after the reload
		newLim  int64
		want    int64 // most the window may grant in all
	}{
		{"single server", 1, false, 3, 0, false, 10, 10},
		{"single server below what was granted", 1, false, 30, 0, false, 10, 30},
		{"strict", 2, true, 2, 0, false, 10, 10},
		{"strict with a transfer before", 2, true, 2, 20, false, 10, 10},
		{"strict with transfers before and after", 2, true, 2, 20, true, 10, 10},
		{"strict, a member over its new share", 2, true, 7, 0, false, 10, 14},
		{"shared", 2, false, 2, 0, false, 10, 2 * 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := make([]*Counter, tc.members)
			for i := range cs {
				c, err := NewCounter(key(100))
				if err != nil {
					t.Fatal(err)
				}
				if tc.members > 1 {
					fc := FederationConfig{Strict: tc.strict, Members: tc.members, Rank: i, Fence: start.Add(-time.Hour)}
					if err := c.EnableFederation(fc); err != nil {
						t.Fatal(err)
					}
				}
				cs[i] = c
			}
			var total int64
			take := func(c *Counter, now time.Time, n int) {
				for i := 0; i < n; i++ {
					d, err := c.TakeAt(now, "api", 1)
					if err != nil {
						t.Fatal(err)
					}
					if d.OK {
						if d.Window != k {
							t.Fatalf("granted in window %d, want %d", d.Window, k)
						}
						if d.Remaining < 0 {
							t.Fatalf("go with %d remaining", d.Remaining)
						}
						total++
					}
				}
			}
			for _, c := range cs {
				take(c, start.Add(100*time.Millisecond), int(tc.before))
			}
			if tc.give > 0 {
				if got := cs[1].GiveAt(start, "api", k, tc.give); got != tc.give {
					t.Fatalf("GiveAt=%d, want %d", got, tc.give)
				}
				cs[0].SetReceivedAt(start, "api", k, tc.give)
			}
			for _, c := range cs {
				if err := c.Reconfigure(key(tc.newLim)); err != nil {
					t.Fatal(err)
				}
			}
			// A transfer after the reload, made from the new shares.
			if tc.after {
				if got := cs[0].GiveAt(mid, "api", k, 1); got > 0 {
					cs[1].SetReceivedAt(mid, "api", k, got)
				}
			}
			for _, c := range cs {
				take(c, mid, 200)
			}
			if total > tc.want {
				t.Fatalf("window granted %d after lowering the limit to %d, want at most %d", total, tc.newLim, tc.want)
			}
			// The next window grants the new limit, no more, in all.
			next := start.Add(w)
			total = 0
			for _, c := range cs {
				for i := 0; i < 200; i++ {
					if d, _ := c.TakeAt(next, "api", 1); d.OK {
						total++
					}
				}
			}
			if want := tc.newLim * map[bool]int64{true: 1, false: int64(tc.members)}[tc.strict || tc.members == 1]; total != want {
				t.Fatalf("next window granted %d, want %d", total, want)
			}
		})
	}
}

// TestReceivedAfterLowering: once a key's limit is lowered, tokens received
// for the windows under way no longer count in a strict budget (they may
// have been given under the higher limit); tokens received for later
// windows do.
func TestReceivedAfterLowering(t *testing.T) {
	const w = time.Second
	const k = 1_800_000_000
	start := time.Unix(0, k*int64(w))
	c, err := NewCounter([]KeyConfig{{Name: "api", Limit: 100, Window: w}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnableFederation(FederationConfig{Strict: true, Members: 2, Rank: 0, Fence: start.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c.TakeAt(start, "api", 1)
	if err := c.Reconfigure([]KeyConfig{{Name: "api", Limit: 10, Window: w}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		window int64
		want   int64 // budget: share 5, plus 3 received unless ignored
	}{
		{k, 5}, {k + 1, 5}, {k + 2, 5}, {k + 3, 8},
	}
	for _, tc := range tests {
		now := time.Unix(0, tc.window*int64(w))
		c.SetReceivedAt(now, "api", tc.window, 3)
		var got int64 = -1
		for _, lc := range c.LocalAt(now) {
			if lc.Name == "api" {
				got = lc.Budget
			}
		}
		if got != tc.want {
			t.Errorf("window k+%d: budget %d, want %d", tc.window-k, got, tc.want)
		}
	}
}

// TestSharedRefusesUnboundedKeys checks that shared mode refuses, with
// one line naming them, the keys it cannot bound (sliding, gcra,
// multi-limit), at EnableFederation and at a reload, and that the
// refused reload keeps the old configuration.
func TestSharedRefusesUnboundedKeys(t *testing.T) {
	specs := func(s ...string) []KeyConfig {
		var out []KeyConfig
		for _, x := range s {
			k, err := ParseKeySpec(x)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, k)
		}
		return out
	}
	c, err := NewCounter(specs("f=10/1s", "s=5/1s/sliding", "g=10/1s/gcra:1", "m=10/1s+100/1h"))
	if err != nil {
		t.Fatal(err)
	}
	err = c.EnableFederation(FederationConfig{Members: 2, Rank: 0})
	want := "locker: shared federation cannot bound the sliding, gcra or multi-limit keys g, m, s: use strict mode or fixed keys"
	if err == nil || err.Error() != want {
		t.Fatalf("EnableFederation: %v, want %s", err, want)
	}
	if c.fed != nil {
		t.Fatal("refused federation left enabled")
	}
	// Only fixed keys: accepted; then a reload that adds a sliding key
	// is refused and the old keys stay.
	c, err = NewCounter(specs("f=10/1s"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnableFederation(FederationConfig{Members: 2, Rank: 0}); err != nil {
		t.Fatal(err)
	}
	err = c.Reconfigure(specs("f=10/1s", "s=5/1s/sliding"))
	if err == nil || !strings.Contains(err.Error(), "keys s:") {
		t.Fatalf("Reconfigure in shared mode with a sliding key: %v", err)
	}
	if _, ok := c.Key("s"); ok {
		t.Fatal("refused reload added its key")
	}
	// Strict mode takes them all.
	c, err = NewCounter(specs("f=10/1s", "s=5/1s/sliding", "g=10/1s/gcra:1", "m=10/1s+100/1h"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnableFederation(FederationConfig{Strict: true, Members: 2, Rank: 0}); err != nil {
		t.Fatal(err)
	}
	if err := c.Reconfigure(specs("s2=7/1s/sliding")); err != nil {
		t.Fatal(err)
	}
}

// fedMember is one member of a simulated strict federation: a Counter and
// its clock's offset from real time.
type fedMember struct {
	c      *Counter
	offset int64
	last   int64 // latest reading, member clock
}

// TestStrictStaticSharesNeverOver runs keys of sliding, gcra and several
// limits on three strict members with skewed clocks, out-of-order
// readings, a member that restarts (losing its state) and one that is
// frozen for a while, with no messages between them at all, and checks
// in real time, over all grants of all members: no interval of a sliding
// limit's window holds more than its limit, and no interval of length d
// holds more than burst + d·limit/window grants of a gcra limit.
func TestStrictStaticSharesNeverOver(t *testing.T) {
	specs := []string{
		"s=10/1s/sliding",
		"s1=2/500ms/sliding", // shares 1, 1, 0
		"g=10/1s/gcra",
		"g1=12/1s/gcra:3",
		"m=10/1s/sliding+25/3s/gcra:6",
	}
	const members = 3
	for _, spec := range specs {
		for seed := int64(1); seed <= 8; seed++ {
			t.Run(fmt.Sprintf("%s-seed%d", spec, seed), func(t *testing.T) {
				key, err := ParseKeySpec(spec)
				if err != nil {
					t.Fatal(err)
				}
				r := rand.New(rand.NewSource(seed))
				start := int64(1_800_000_000) * 1e9
				newMember := func(rank int, offset, fence int64) *Counter {
					c, err := NewCounter([]KeyConfig{key})
					if err != nil {
						t.Fatal(err)
					}
					if err := c.EnableFederation(FederationConfig{Strict: true, Members: members, Rank: rank, Fence: time.Unix(0, fence+offset)}); err != nil {
						t.Fatal(err)
					}
					return c
				}
				ms := make([]*fedMember, members)
				for i := range ms {
					off := r.Int63n(int64(3*time.Second)) - int64(1500*time.Millisecond)
					ms[i] = &fedMember{c: newMember(i, off, start-int64(time.Hour)), offset: off}
				}
				// Member 0 ran before start and has just granted its share:
				// it restarts at some instant with an empty state.
				w := int64(key.Window)
				for _, p := range key.Parts() {
					w = max(w, int64(p.Window))
				}
				restartAt := start + r.Int63n(2*w)
				frozenFrom, frozenTo := start+r.Int63n(3*w), start+r.Int63n(3*w)+w
				var grantTimes []int64 // real time
				restarted := false
				now := start
				for i := 0; i < 1500; i++ {
					now += r.Int63n(w/20 + 1)
					if r.Intn(10) == 0 { // to just before a window edge of the member clocks
						now += w - now%w - 1
					}
					m := r.Intn(members)
					if m == 0 && !restarted && now >= restartAt {
						// The old run grants all it can just before it
						// stops; the new one knows nothing of it.
						inst := max(now+ms[0].offset, ms[0].last)
						for {
							d, _ := ms[0].c.TakeAt(time.Unix(0, inst), key.Name, 1)
							if !d.OK {
								break
							}
							grantTimes = append(grantTimes, inst-ms[0].offset)
						}
						now++
						ms[0].c, ms[0].last, restarted = newMember(0, ms[0].offset, now), 0, true
					}
					if m == 2 && now >= frozenFrom && now < frozenTo {
						continue
					}
					reading := now + ms[m].offset
					if r.Intn(5) == 0 {
						reading -= r.Int63n(w / 4)
					}
					inst := max(reading, ms[m].last) // the instant the member decides at
					n := int64(1)
					if r.Intn(5) == 0 {
						n = 1 + r.Int63n(key.maxN())
					}
					d, err := ms[m].c.TakeAt(time.Unix(0, reading), key.Name, n)
					var re *ReachError
					if errors.As(err, &re) {
						continue // more than this member's static share: refused at once, unseen
					}
					if err != nil {
						t.Fatal(err)
					}
					ms[m].last = inst
					if d.OK {
						for j := int64(0); j < n; j++ {
							grantTimes = append(grantTimes, inst-ms[m].offset)
						}
					}
				}
				if len(grantTimes) == 0 {
					t.Fatal("nothing granted: the test checks nothing")
				}
				slices.Sort(grantTimes)
				for _, p := range key.Parts() {
					checkBound(t, p, grantTimes)
				}
			})
		}
	}
}

// checkBound checks the grants (sorted real instants) against part p.
func checkBound(t *testing.T, p Part, g []int64) {
	t.Helper()
	w := int64(p.Window)
	for i := range g {
		for j := i; j < len(g); j++ {
			count := int64(j - i + 1)
			switch p.alg() {
			case AlgSliding:
				if g[j]-g[i] < w && count > p.Limit {
					t.Fatalf("%s: %d grants in [%d, %d), over %d", p, count, g[i], g[i]+w, p.Limit)
				}
			case AlgGCRA:
				b := p.Burst
				if b == 0 {
					b = p.Limit
				}
				// count <= b + (g[j]-g[i])·limit/window
				if (count-b)*w > (g[j]-g[i])*p.Limit {
					t.Fatalf("%s: %d grants within %v, over %d + that time's tokens", p, count, time.Duration(g[j]-g[i]), b)
				}
			}
		}
	}
}

// TestStrictStaticKeysStayLocal checks that keys run on a static share
// trade nothing: LocalAt reports only single fixed-window keys, and
// GiveAt and SetReceivedAt do nothing for the others; and that a key
// added by a reload starts full at the fence too.
func TestStrictStaticKeysStayLocal(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c, err := NewCounter([]KeyConfig{{Name: "f", Limit: 10, Window: time.Second},
		{Name: "s", Limit: 10, Window: time.Second, Algorithm: AlgSliding}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnableFederation(FederationConfig{Strict: true, Members: 2, Rank: 1, Fence: t0}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, lc := range c.LocalAt(t0) {
		names = append(names, lc.Name)
	}
	if fmt.Sprint(names) != "[default f]" {
		t.Fatalf("LocalAt keys %v, want [default f]", names)
	}
	k := WindowIndex(t0, time.Second)
	if g := c.GiveAt(t0.Add(time.Second), "s", k+1, 1); g != 0 {
		t.Fatalf("GiveAt of a sliding key gave %d", g)
	}
	c.SetReceivedAt(t0.Add(time.Second), "s", k+1, 5)
	// Share of 10 for rank 1 of 2 is 5; nothing until a window after the
	// fence; then 5 and no more, the received 5 ignored.
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{{0, 0}, {time.Second - 1, 0}, {time.Second, 5}, {time.Second + 500*time.Millisecond, 0}, {2 * time.Second, 5}} {
		if got := grantsOf(t, c, "s", t0.Add(tc.at), 20); got != tc.want {
			t.Fatalf("at +%v: %d granted, want %d", tc.at, got, tc.want)
		}
	}
	// A gcra key added by a reload just after the start: empty bucket at
	// the fence (share 5 of 10 per second, a token every 200ms).
	if err := c.Reconfigure([]KeyConfig{{Name: "g", Limit: 10, Window: time.Second, Algorithm: AlgGCRA}}); err != nil {
		t.Fatal(err)
	}
	if got := grantsOf(t, c, "g", t0.Add(100*time.Millisecond), 20); got != 0 {
		t.Fatalf("gcra key added after the fence granted %d at once, want 0", got)
	}
	if got := grantsOf(t, c, "g", t0.Add(time.Second), 20); got != 5 {
		t.Fatalf("gcra key a second after the fence granted %d, want 5", got)
	}
}

func grantsOf(tb testing.TB, c *Counter, key string, now time.Time, n int) int {
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

// TestReach: a strict member refuses at once, with a *ReachError, a
// request no window can bring it the tokens of: more than its own share
// and the shares of the members that can give it tokens now, or, for a
// key on a static share, more than that share. What it can reach is
// held or refused as usual.
func TestReach(t *testing.T) {
	t0 := time.Unix(1000, 0)
	keys := []KeyConfig{{Name: "k", Limit: 9, Window: time.Second}, {Name: "s", Limit: 9, Window: time.Second, Algorithm: AlgSliding}}
	tests := []struct {
		name   string
		key    string
		givers []int // nil: never set
		n      int64
		reach  int64 // 0: not refused
	}{
		{"givers unknown", "k", nil, 9, 0},
		{"own share", "k", []int{}, 3, 0},
		{"all down", "k", []int{}, 4, 3},
		{"one up", "k", []int{2}, 6, 0},
		{"one up, more", "k", []int{2}, 7, 6},
		{"all up", "k", []int{0, 2}, 9, 0},
		{"static share", "s", []int{0, 2}, 4, 3},
		{"static, within", "s", []int{0, 2}, 3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCounter(keys)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.EnableFederation(FederationConfig{Strict: true, Members: 3, Rank: 1, Fence: t0.Add(-time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if tc.givers != nil {
				c.SetGivers(tc.givers)
			}
			_, err = c.TakeAt(t0, tc.key, tc.n)
			var re *ReachError
			switch {
			case tc.reach == 0 && err != nil:
				t.Fatalf("TakeAt(%d)=%v, want no error", tc.n, err)
			case tc.reach != 0 && (!errors.As(err, &re) || re.Reach != tc.reach || re.N != tc.n):
				t.Fatalf("TakeAt(%d)=%v, want a ReachError with reach %d", tc.n, err, tc.reach)
			}
		})
	}
}
