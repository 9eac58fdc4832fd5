package locker

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// fedTemplate returns a counter with the template t:*=10/1s, federated as
// rank of members with no fence.
func fedTemplate(tb testing.TB, strict bool, members, rank int) *Counter {
	tb.Helper()
	c := mustKeys(tb, "t:*=10/1s")
	if err := c.EnableFederation(FederationConfig{Strict: strict, Members: members, Rank: rank}); err != nil {
		tb.Fatal(err)
	}
	return c
}

// localNames returns the names LocalAt reports at now.
func localNames(c *Counter, now time.Time) []string {
	var out []string
	for _, lc := range c.LocalAt(now) {
		out = append(out, lc.Name)
	}
	return out
}

// TestFedTemplateStrictDropKeepsGiven: a strict member that gave its
// share of the next window of a key made on demand away keeps the key
// until that window ends, so that no sweep can drop it and make it again
// with its share back: in the next window it grants nothing. Once every
// window it gave or asked in has ended, the key is dropped (LocalAt stops
// reporting it) and a key made again starts from its share.
func TestFedTemplateStrictDropKeepsGiven(t *testing.T) {
	c := fedTemplate(t, true, 2, 0) // share 5 of 10
	t0 := time.Unix(1_800_000_000, 0)
	k := WindowIndex(t0, time.Second)
	if made, err := c.TrackAt(t0, "t:a", k); !made || err != nil {
		t.Fatalf("TrackAt of a key a peer needs: made %v, %v", made, err)
	}
	if !slices.Contains(localNames(c, t0), "t:a") {
		t.Fatal("a key made for a peer's report is not reported")
	}
	if g := c.GiveAt(t0.Add(500*time.Millisecond), "t:a", k+1, 5); g != 5 {
		t.Fatalf("GiveAt gave %d of the next window, want the share 5", g)
	}
	for _, at := range []time.Duration{600 * time.Millisecond, 1100 * time.Millisecond, 1900 * time.Millisecond} {
		if n := c.SweepAt(t0.Add(at), nil); n != 0 {
			t.Fatalf("+%v: swept %d keys while tokens of the next window were given away", at, n)
		}
		if got := grantsOf(t, c, "t:a", t0.Add(at+time.Millisecond), 10); at >= time.Second && got != 0 {
			t.Fatalf("+%v: granted %d in a window whose share was given away", at, got)
		}
	}
	// The requests refused in window k+1 are published in k+2: the key
	// stays for it, and goes in k+3.
	if n := c.SweepAt(t0.Add(2100*time.Millisecond), nil); n != 0 {
		t.Fatalf("swept %d keys while the counts of the window before may be unpublished", n)
	}
	at := t0.Add(3100 * time.Millisecond)
	if n := c.SweepAt(at, nil); n != 1 || c.LiveKeys() != 0 {
		t.Fatalf("idle key: swept %d, %d live; want it dropped", n, c.LiveKeys())
	}
	if slices.Contains(localNames(c, at), "t:a") {
		t.Fatal("a dropped key is still reported")
	}
	if got := grantsOf(t, c, "t:a", at, 10); got != 5 {
		t.Fatalf("key made again in a later window granted %d, want its share 5", got)
	}
}

// TestFedTemplateSharedDropKeepsRemote: a shared member that knows
// others granted a key made on demand in this window keeps the key, so a
// sweep cannot make it forget them: it grants only what they left. A
// peer's activity keeps the key through the next window too.
func TestFedTemplateSharedDropKeepsRemote(t *testing.T) {
	c := fedTemplate(t, false, 2, 0) // share 5 of 10
	t0 := time.Unix(1_800_000_000, 0)
	k := WindowIndex(t0, time.Second)
	if made, err := c.TrackAt(t0, "t:a", k); !made || err != nil {
		t.Fatalf("TrackAt: made %v, %v", made, err)
	}
	c.SetRemoteAt(t0, "t:a", k, 8)
	c.SetReserveAt(t0, "t:a", k, 0)
	if n := c.SweepAt(t0.Add(500*time.Millisecond), nil); n != 0 {
		t.Fatalf("swept %d keys while others' grants of the window were known", n)
	}
	if got := grantsOf(t, c, "t:a", t0.Add(500*time.Millisecond), 10); got != 2 {
		t.Fatalf("granted %d with 8 granted elsewhere, want 2", got)
	}
	// Window k+1: nothing granted there, but the peer's activity in k
	// decides the allowances of k+1, and this member's grants of k may
	// be unpublished.
	if n := c.SweepAt(t0.Add(1500*time.Millisecond), nil); n != 0 {
		t.Fatalf("swept %d keys in the window after a peer's activity", n)
	}
	if n := c.SweepAt(t0.Add(2500*time.Millisecond), nil); n != 1 || c.LiveKeys() != 0 {
		t.Fatalf("idle key: swept %d, %d live; want it dropped", n, c.LiveKeys())
	}
}

// TestFedTemplateSharedRemadeKeepsRemote: without a sweep, with the
// probe of make: a key made on demand with others' grants is never
// dropped to make room, and a report for a key not live makes it with
// the others' grants counted.
func TestFedTemplateSharedRemadeKeepsRemote(t *testing.T) {
	c := fedTemplate(t, false, 2, 0)
	c.SetMaxKeys(1)
	t0 := time.Unix(1_800_000_000, 0)
	k := WindowIndex(t0, time.Second)
	c.TrackAt(t0, "t:a", k)
	c.SetRemoteAt(t0, "t:a", k, 10)
	c.SetReserveAt(t0, "t:a", k, 0)
	// The cap is reached: a new key may only be made by dropping t:a,
	// which holds others' grants.
	if _, err := c.TakeAt(t0.Add(time.Millisecond), "t:b", 1); !errors.Is(err, ErrTooManyKeys) {
		t.Fatalf("take of a new key at the cap: %v, want ErrTooManyKeys", err)
	}
	if got := grantsOf(t, c, "t:a", t0.Add(2*time.Millisecond), 10); got != 0 {
		t.Fatalf("granted %d of a key the others used up", got)
	}
}

// TestFedTemplateSharedFreshKeyKeepsShares: a key made by a local
// request in shared mode keeps the others' shares until its reserve is
// set: the others may be granting it already.
func TestFedTemplateSharedFreshKeyKeepsShares(t *testing.T) {
	c := fedTemplate(t, false, 3, 1) // limit 10: shares 4, 3, 3
	t0 := time.Unix(1_800_000_000, 0)
	k := WindowIndex(t0, time.Second)
	if got := grantsOf(t, c, "t:b", t0, 10); got != 3 {
		t.Fatalf("fresh key granted %d before any reserve, want the share 3", got)
	}
	c.SetReserveAt(t0, "t:b", k, 2)
	if got := grantsOf(t, c, "t:b", t0, 10); got != 5 {
		t.Fatalf("granted %d more once 2 are reserved, want 5", got)
	}
}

// TestFedTemplateMaxKeys: a peer's report of a key that cannot be made
// at --max-keys fails closed in shared mode: no key of the template is
// made, by a request either, until the windows the report bears on have
// ended, even once there is room; the key would not count the lost
// grants. Strict mode loses nothing a grant depends on and goes on.
func TestFedTemplateMaxKeys(t *testing.T) {
	for _, strict := range []bool{false, true} {
		c := fedTemplate(t, strict, 2, 0)
		c.SetMaxKeys(1)
		t0 := time.Unix(1_800_000_000, 0)
		k := WindowIndex(t0, time.Second)
		if got := grantsOf(t, c, "t:a", t0, 1); got != 1 {
			t.Fatalf("strict=%v: first key granted %d", strict, got)
		}
		if made, err := c.TrackAt(t0, "t:b", k); made || !errors.Is(err, ErrTooManyKeys) {
			t.Fatalf("strict=%v: TrackAt at the cap: made %v, %v; want ErrTooManyKeys", strict, made, err)
		}
		c.SetMaxKeys(2)
		for _, tc := range []struct {
			at      time.Duration
			refused bool
		}{{500 * time.Millisecond, !strict}, {1500 * time.Millisecond, !strict}, {2 * time.Second, false}} {
			_, err := c.TakeAt(t0.Add(tc.at), "t:b", 1)
			if refused := errors.Is(err, ErrTooManyKeys); refused != tc.refused || err != nil && !refused {
				t.Fatalf("strict=%v, +%v: take of the untracked key: %v, refused want %v", strict, tc.at, err, tc.refused)
			}
		}
	}
}

// TestFedTemplateReload: a reload that raises a template's limit keeps
// its live keys' federation state (tokens given stay given); one that
// removes the template drops them, and they are no longer reported; a
// shared federation refuses a reload to a sliding template.
func TestFedTemplateReload(t *testing.T) {
	c := fedTemplate(t, true, 2, 0)
	t0 := time.Unix(1_800_000_000, 0)
	k := WindowIndex(t0, time.Second)
	c.TrackAt(t0, "t:a", k)
	if g := c.GiveAt(t0, "t:a", k+1, 5); g != 5 {
		t.Fatalf("gave %d", g)
	}
	if err := c.Reconfigure([]KeyConfig{{Name: "t:*", Limit: 20, Window: time.Second}}); err != nil {
		t.Fatal(err)
	}
	// Share 10 of 20, 5 given away.
	if got := grantsOf(t, c, "t:a", t0.Add(time.Second), 20); got != 5 {
		t.Fatalf("after raising the limit: granted %d, want 10-5", got)
	}
	if err := c.Reconfigure([]KeyConfig{{Name: "u:*", Limit: 20, Window: time.Second}}); err != nil {
		t.Fatal(err)
	}
	if c.LiveKeys() != 0 || slices.Contains(localNames(c, t0.Add(time.Second)), "t:a") {
		t.Fatalf("key of a removed template still live (%d) or reported", c.LiveKeys())
	}

	s := fedTemplate(t, false, 2, 0)
	err := s.Reconfigure([]KeyConfig{{Name: "t:*", Limit: 10, Window: time.Second, Algorithm: AlgSliding}})
	if err == nil || err.Error() != "locker: shared federation cannot bound the sliding, gcra or multi-limit keys t:*: use strict mode or fixed keys" {
		t.Fatalf("shared reload to a sliding template: %v", err)
	}
}

// TestLocalChangedAt: the flush's view reports the configured keys, the
// keys made on demand taken since the last call and those asked for, each
// once, and none that was dropped; past maxDirty keys taken between two
// calls, every live key.
func TestLocalChangedAt(t *testing.T) {
	c := fedTemplate(t, true, 2, 0)
	t0 := time.Unix(1_800_000_000, 0)
	names := func(lcs []LocalCount) []string {
		var out []string
		for _, lc := range lcs {
			out = append(out, lc.Name)
		}
		slices.Sort(out)
		return out
	}
	for _, key := range []string{"t:a", "t:b", "t:a", "t:c"} {
		grantsOf(t, c, key, t0, 1)
	}
	for _, tc := range []struct {
		also []string
		want string
	}{
		{nil, "[default t:a t:b t:c]"},
		{nil, "[default]"},
		{[]string{"t:b", "t:b", "t:nope"}, "[default t:b]"},
	} {
		if got := fmt.Sprint(names(c.LocalChangedAt(t0, tc.also))); got != tc.want {
			t.Fatalf("LocalChangedAt(%v) = %s, want %s", tc.also, got, tc.want)
		}
	}
	grantsOf(t, c, "t:a", t0, 1)
	if n := c.SweepAt(t0.Add(10*time.Second), nil); n != 3 {
		t.Fatalf("swept %d, want 3", n)
	}
	if got := fmt.Sprint(names(c.LocalChangedAt(t0.Add(10*time.Second), nil))); got != "[default]" {
		t.Fatalf("after the sweep: %s, want [default]", got)
	}
	for i := 0; i <= maxDirty; i++ {
		grantsOf(t, c, fmt.Sprintf("t:%d", i), t0.Add(10*time.Second), 1)
	}
	if got := len(c.LocalChangedAt(t0.Add(10*time.Second), nil)); got != maxDirty+2 {
		t.Fatalf("past maxDirty: %d keys, want every live key and default, %d", got, maxDirty+2)
	}
}
