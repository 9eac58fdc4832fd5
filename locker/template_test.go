package locker

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func mustKeys(tb testing.TB, specs ...string) *Counter {
	tb.Helper()
	var keys []KeyConfig
	for _, s := range specs {
		k, err := ParseKeySpec(s)
		if err != nil {
			tb.Fatal(err)
		}
		keys = append(keys, k)
	}
	c, err := NewCounter(keys)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestTemplatePrecedence checks which configuration a key gets: a
// configured key wins over templates, the longest matching template over
// shorter ones, and a key no template matches, or that is not a valid key
// name, is unknown.
func TestTemplatePrecedence(t *testing.T) {
	c := mustKeys(t, "tenant:vip=1000/1m", "tenant:*=100/1m", "tenant:eu:*=5/1m/sliding", "user.*=7/1s/gcra")
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		key  string
		want string // the configuration's spec, "" for unknown
	}{
		{"tenant:vip", "tenant:vip=1000/1m0s"},
		{"tenant:vip2", "tenant:*=100/1m0s"},
		{"tenant:x", "tenant:*=100/1m0s"},
		{"tenant:", "tenant:*=100/1m0s"},
		{"tenant:eu:1", "tenant:eu:*=5/1m0s/sliding"},
		{"tenant:eu", "tenant:*=100/1m0s"},
		{"user.42", "user.*=7/1s/gcra"},
		{"user", ""},
		{"other", ""},
		{"tenant:a b", ""},
		{"tenant:*", ""},
		{"tenant:" + string(make([]byte, 200)), ""},
	}
	for _, tc := range tests {
		k, ok := c.Key(tc.key)
		if got := map[bool]string{true: k.String()}[ok]; got != tc.want {
			t.Errorf("Key(%q) = %q, want %q", tc.key, got, tc.want)
		}
		d, err := c.TakeAt(now, tc.key, 1)
		if tc.want == "" {
			if !errors.Is(err, ErrUnknownKey) {
				t.Errorf("TakeAt(%q) = %+v, %v, want ErrUnknownKey", tc.key, d, err)
			}
			continue
		}
		if err != nil || !d.OK {
			t.Errorf("TakeAt(%q) = %+v, %v, want go", tc.key, d, err)
		}
	}
	if got := c.LiveKeys(); got != 6 {
		t.Errorf("%d live keys, want 6 (tenant:vip2, tenant:x, tenant:, tenant:eu:1, tenant:eu, user.42)", got)
	}
	var live []string
	for _, u := range c.Templates() {
		live = append(live, fmt.Sprintf("%s:%d", u.Name, u.Live))
	}
	if fmt.Sprint(live) != "[tenant:*:4 tenant:eu:*:1 user.*:1]" {
		t.Errorf("templates %v", live)
	}
}

// TestTemplateManyKeys makes 100,000 keys from a template, each of which
// gets exactly its limit then sorry; none is dropped while its tokens are
// out; all are dropped once they are back, their map is rebuilt, and each
// key made again gets its limit again.
func TestTemplateManyKeys(t *testing.T) {
	const keys, limit = 100_000, 3
	for _, alg := range []string{"", "/sliding", "/gcra"} {
		t.Run("tenant:*="+fmt.Sprint(limit)+"/1m"+alg, func(t *testing.T) {
			c := mustKeys(t, fmt.Sprintf("tenant:*=%d/1m%s", limit, alg))
			now := time.Unix(1_800_000_000, 0)
			name := make([]string, keys)
			for i := range name {
				name[i] = fmt.Sprintf("tenant:%d", i)
			}
			for round := 0; round < 2; round++ {
				for i, key := range name {
					for j := 0; j <= limit; j++ {
						d, err := c.TakeAt(now, key, 1)
						if err != nil || d.OK != (j < limit) {
							t.Fatalf("round %d key %d take %d: %+v, %v", round, i, j, d, err)
						}
					}
				}
				if got := c.LiveKeys(); got != keys {
					t.Fatalf("%d live keys, want %d", got, keys)
				}
				if got := c.SweepAt(now.Add(time.Minute-1), nil); got != 0 {
					t.Fatalf("swept %d keys with tokens out", got)
				}
				now = now.Add(time.Minute)
				if got := c.SweepAt(now, nil); got != keys {
					t.Fatalf("swept %d idle keys, want %d", got, keys)
				}
				if c.LiveKeys() != 0 || c.liveHigh != 0 || c.Templates()[0].Live != 0 {
					t.Fatalf("after the sweep: %d live, high %d, %+v", c.LiveKeys(), c.liveHigh, c.Templates())
				}
			}
		})
	}
}

// TestTemplateDropNeverGrantsBack drops an idle key and makes it again
// with a late clock reading: the new key decides at the latest instant
// the old one was asked at, not before, so the sliding limit holds over
// both.
func TestTemplateDropNeverGrantsBack(t *testing.T) {
	c := mustKeys(t, "s:*=1/1s/sliding")
	t0 := time.Unix(1_800_000_000, 0)
	ms := time.Millisecond
	if d, _ := c.TakeAt(t0.Add(100*ms), "s:a", 1); !d.OK {
		t.Fatal("first take refused")
	}
	if d, _ := c.TakeAt(t0.Add(1050*ms), "s:a", 1); d.OK || d.RetryAfter != 50*ms {
		t.Fatalf("take at 1050ms: %+v, want sorry in 50ms", d)
	}
	if got := c.SweepAt(t0.Add(1100*ms), nil); got != 1 {
		t.Fatalf("swept %d, want the idle key", got)
	}
	// A reading of 1060ms, older than the sweep: made at 1100ms.
	if d, _ := c.TakeAt(t0.Add(1060*ms), "s:a", 1); !d.OK {
		t.Fatalf("take after the drop: %+v", d)
	}
	if d, _ := c.TakeAt(t0.Add(1100*ms), "s:a", 1); d.OK || d.RetryAfter != time.Second {
		t.Fatalf("next take: %+v, want sorry for 1s (the grant was made at 1100ms)", d)
	}
}

// TestTemplateBusyNotDropped keeps a key that the caller reports busy
// (held waits) even when its tokens are back.
func TestTemplateBusyNotDropped(t *testing.T) {
	c := mustKeys(t, "t:*=1/1s")
	now := time.Unix(1_800_000_000, 0)
	c.TakeAt(now, "t:a", 1)
	c.TakeAt(now, "t:b", 1)
	got := c.SweepAt(now.Add(time.Second), func(key string) bool { return key == "t:a" })
	if got != 1 || c.LiveKeys() != 1 || c.find("t:a") == nil {
		t.Fatalf("swept %d, %d live, t:a kept %v", got, c.LiveKeys(), c.find("t:a") != nil)
	}
}

// TestMaxKeys caps the keys made on demand: a request that would make one
// more is refused with ErrTooManyKeys, never granted, through TakeAt and
// the server's path; configured keys and live keys still answer; once
// idle keys are dropped, keys can be made again.
func TestMaxKeys(t *testing.T) {
	c := mustKeys(t, "t:*=2/1s", "fixed=1/1s")
	c.SetMaxKeys(10)
	now := time.Unix(1_800_000_000, 0)
	for i := 0; i < 10; i++ {
		if d, err := c.TakeAt(now, fmt.Sprintf("t:%d", i), 1); err != nil || !d.OK {
			t.Fatalf("key %d: %+v, %v", i, d, err)
		}
	}
	d, err := c.TakeAt(now, "t:new", 1)
	if !errors.Is(err, ErrTooManyKeys) || d.OK {
		t.Fatalf("key beyond the cap: %+v, %v, want ErrTooManyKeys", d, err)
	}
	cfg, d, err := c.takeBytes(now, []byte("t:new"), 1, true)
	if !errors.Is(err, ErrTooManyKeys) || d.OK || cfg == nil || cfg.Name != "t:*" {
		t.Fatalf("takeBytes beyond the cap: %v, %+v, %v", cfg, d, err)
	}
	if d, err := c.TakeAt(now, "t:3", 1); err != nil || !d.OK {
		t.Fatalf("live key at the cap: %+v, %v", d, err)
	}
	if d, err := c.TakeAt(now, "fixed", 1); err != nil || !d.OK {
		t.Fatalf("configured key at the cap: %+v, %v", d, err)
	}
	if got := c.SweepAt(now.Add(time.Second), nil); got != 10 {
		t.Fatalf("swept %d, want 10", got)
	}
	if d, err := c.TakeAt(now.Add(time.Second), "t:new", 1); err != nil || !d.OK {
		t.Fatalf("after the sweep: %+v, %v", d, err)
	}
	// A count the template refuses makes no key.
	for _, n := range []int64{0, 3, -1} {
		cfg, _, err := c.takeBytes(now, []byte("t:bad"), n, true)
		if !errors.Is(err, ErrBadCount) || cfg == nil || cfg.Limit != 2 {
			t.Fatalf("N=%d: %v, %v, want ErrBadCount with the template", n, cfg, err)
		}
	}
	if c.LiveKeys() != 1 {
		t.Fatalf("%d live keys after refused counts, want 1", c.LiveKeys())
	}
}

// TestTemplateReload changes, removes and adds templates and keys under
// live keys: a live key follows its template's new limit with its tokens
// still counted; one whose algorithm changes starts full; one that is now
// a configured key keeps its state; one no template matches is unknown.
func TestTemplateReload(t *testing.T) {
	c := mustKeys(t, "t:*=3/1m", "u:*=3/1m/sliding", "v:*=2/1m")
	now := time.Unix(1_800_000_000, 0)
	for _, k := range []string{"t:a", "u:a", "v:a", "v:b"} {
		if d, err := c.TakeAt(now, k, 2); err != nil || !d.OK {
			t.Fatalf("take 2 of %s: %+v, %v", k, d, err)
		}
	}
	err := c.Reconfigure([]KeyConfig{
		mustSpec(t, "t:*=5/1m"),         // raised: 3 more
		mustSpec(t, "u:*=3/1m/gcra"),    // algorithm changed: full
		mustSpec(t, "v:a=4/1m"),         // now configured: 2 more
		mustSpec(t, "w:*=9/1m/sliding"), // new
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		want int // go of 10 takes of 1
		err  error
	}{{"t:a", 3, nil}, {"u:a", 0, nil}, {"v:a", 2, nil}, {"v:b", 0, ErrUnknownKey}, {"w:a", 9, nil}, {"t:b", 5, nil}} {
		got := 0
		for i := 0; i < 10; i++ {
			d, err := c.TakeAt(now, tc.key, 1)
			if !errors.Is(err, tc.err) {
				t.Fatalf("%s: error %v, want %v", tc.key, err, tc.err)
			}
			if d.OK {
				got++
			}
		}
		if got != tc.want {
			t.Errorf("%s: %d go after the reload, want %d", tc.key, got, tc.want)
		}
	}
	var live []string
	for _, u := range c.Templates() {
		live = append(live, fmt.Sprintf("%s:%d", u.Name, u.Live))
	}
	if fmt.Sprint(live) != "[t:*:2 u:*:1 w:*:1]" {
		t.Errorf("templates after the reload: %v", live)
	}
}

func mustSpec(tb testing.TB, spec string) KeyConfig {
	tb.Helper()
	k, err := ParseKeySpec(spec)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// TestTemplateFederation runs keys made on demand on a static share in
// strict mode, starting full at the fence, and refuses templates in
// shared mode.
func TestTemplateFederation(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := mustKeys(t, "t:*=10/1s", "s:*=10/1s/sliding")
	err := c.EnableFederation(FederationConfig{Members: 2})
	if err == nil || !strings.Contains(err.Error(), "keys s:*:") || strings.Contains(err.Error(), "t:*") {
		t.Fatalf("shared mode with a fixed and a sliding template: %v, want the sliding one refused alone", err)
	}
	if err := mustKeys(t, "t:*=10/1s").EnableFederation(FederationConfig{Members: 2}); err != nil {
		t.Fatalf("shared mode refused a fixed template: %v", err)
	}
	c = mustKeys(t, "t:*=10/1s")
	if err := c.EnableFederation(FederationConfig{Strict: true, Members: 2, Rank: 0, Fence: t0}); err != nil {
		t.Fatal(err)
	}
	// A key made on demand trades tokens as a configured fixed key does:
	// fenced in the start window and the next, then its share.
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{{0, 0}, {time.Second, 0}, {2 * time.Second, 5}, {3 * time.Second, 5}} {
		got := 0
		for i := 0; i < 20; i++ {
			if d, err := c.TakeAt(t0.Add(tc.at), "t:a", 1); err != nil {
				t.Fatal(err)
			} else if d.OK {
				got++
			}
		}
		if got != tc.want {
			t.Fatalf("at +%v: %d go, want %d (share 5, fenced in the start window and the next)", tc.at, got, tc.want)
		}
	}
	if lc := c.LocalAt(t0.Add(3 * time.Second)); len(lc) != 2 || lc[0].Name != DefaultKey || lc[1].Name != "t:a" || lc[1].Granted != 5 {
		t.Fatalf("LocalAt %+v: want default, then t:a with 5 granted", lc)
	}
}

// TestTemplateTakeAllocs keeps a take on a live key made on demand free
// of allocations, through TakeAt and the server's path.
func TestTemplateTakeAllocs(t *testing.T) {
	c := mustKeys(t, "t:*=1000000/1h", "s:*=100/1ms/sliding")
	now := time.Unix(1_800_000_000, 0)
	c.TakeAt(now, "t:a", 1)
	key := []byte("t:a")
	if a := testing.AllocsPerRun(1000, func() { c.TakeAt(now, "t:a", 1) }); a != 0 {
		t.Errorf("TakeAt allocates %v times", a)
	}
	if a := testing.AllocsPerRun(1000, func() { c.takeBytes(now, key, 1, true) }); a != 0 {
		t.Errorf("takeBytes allocates %v times", a)
	}
	if a := testing.AllocsPerRun(1000, func() { c.takeBytes(now, []byte("nope"), 1, true) }); a != 0 {
		t.Errorf("takeBytes of an unknown key allocates %v times", a)
	}
}

// FuzzTemplateLookup sends arbitrary key names and counts to a counter
// with templates, through the server's path: it never panics, makes a key
// only for a valid name a template matches and a count it accepts, never
// goes past the cap, and answers go only within the limit.
func FuzzTemplateLookup(f *testing.F) {
	for _, s := range []string{"t:a", "t:", "t:*", "u.x.y", "conf", "t:\x00", "", "t:a b", "*"} {
		f.Add([]byte(s), int64(1))
	}
	f.Add([]byte("t:a"), int64(0))
	f.Add([]byte("u.1"), int64(3))
	f.Fuzz(func(t *testing.T, key []byte, n int64) {
		c := mustKeys(t, "t:*=2/1s", "u.*=3/1s/sliding+5/1m/gcra:2", "conf=1/1s")
		c.SetMaxKeys(1)
		now := time.Unix(1_800_000_000, 0)
		gos := 0
		for i := 0; i < 4; i++ {
			cfg, d, err := c.takeBytes(now, key, n, true)
			if err == nil && cfg == nil {
				t.Fatalf("no configuration without an error")
			}
			if d.OK {
				gos++
			}
		}
		made := c.LiveKeys()
		if made > 1 {
			t.Fatalf("%d live keys past a cap of 1", made)
		}
		if made == 1 && (ValidKeyName(string(key)) != nil || c.match(string(key)) == nil || c.keys[string(key)].tmpl() == nil) {
			t.Fatalf("made a key for %q", key)
		}
		if limit := map[string]int{"t:": 2, "u.": 2, "conf": 1}; gos > 0 {
			max := 0
			for p, l := range limit {
				if len(key) >= len(p) && string(key[:len(p)]) == p {
					max = l
				}
			}
			if int64(gos)*n > int64(max) {
				t.Fatalf("%d go of %d tokens for %q", gos, n, key)
			}
		}
	})
}

// TestMakeDropsIdleKeys checks that making keys drops idle ones without a
// sweep: a few each time, and enough at the cap that new keys can be
// made while half the live ones are idle.
func TestMakeDropsIdleKeys(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	fill := func(c *Counter, at time.Time, from, to int) (refused int) {
		for i := from; i < to; i++ {
			d, err := c.TakeAt(at, fmt.Sprintf("t:%d", i), 1)
			if errors.Is(err, ErrTooManyKeys) {
				refused++
				continue
			}
			if err != nil || !d.OK {
				t.Fatalf("key %d: %+v, %v", i, d, err)
			}
		}
		return refused
	}
	c := mustKeys(t, "t:*=1/1s")
	fill(c, now, 0, 1000)
	fill(c, now.Add(time.Second), 1000, 2000)
	if got := c.LiveKeys(); got > 1900 {
		t.Fatalf("%d live keys after making 1000 while 1000 were idle: too few dropped", got)
	}
	c = mustKeys(t, "t:*=1/1s")
	c.SetMaxKeys(1000)
	fill(c, now, 0, 1000)
	if refused := fill(c, now.Add(time.Second), 1000, 1500); refused != 0 {
		t.Fatalf("%d refused at the cap while at least half the keys were idle", refused)
	}
	if got := c.LiveKeys(); got > 1000 {
		t.Fatalf("%d live keys, cap 1000", got)
	}
}
