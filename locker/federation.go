package locker

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// This file holds what a federation layer (package peer) needs from a
// Counter: the tokens granted here per key and window, the tokens others
// granted, and, in strict mode, a per-window budget that local grants never
// exceed. It reaches each key's counter only through the Algorithm
// interface, running it on this member's capacity. A Counter that is not
// federated pays one nil check per take.

// FederationConfig turns a Counter into one member of a federation.
//
// A reload that changes a key's limit (Counter.Reconfigure) takes effect
// at once, in the window under way too. Tokens granted stay granted. In
// shared mode a member grants at most the new limit less what others
// granted and reserved. In strict mode a member's budget of a window is
// its share of the limit in force, minus the tokens it gave away, plus the
// tokens it received, and at least 0. After the limit is lowered, tokens
// received for the windows under way (up to two windows past the
// latest one the member has seen) no longer count: their giver's budget
// under the new limit cannot go below 0 to pay for them, so counting them
// could sum the budgets above the new limit. Once every member has
// reloaded, the budgets of a window sum to at most the new limit, and the
// window under way ends with at most the new limit plus what members had
// granted beyond their new shares before the reload.
type FederationConfig struct {
	// Strict bounds the tokens this counter grants in each window by its
	// budget: its static Share of the limit, minus tokens given to other
	// members (GiveAt), plus tokens received from them (SetReceivedAt).
	// When false (shared mode), local grants are bounded by the limit
	// minus the remote grants reported by SetRemoteAt and minus the
	// tokens reserved for others by SetReserveAt.
	Strict bool
	// Members is the number of members of the federation, this one
	// included; Rank is this member's position among them, 0-based.
	Members, Rank int
	// Fence is when this member started. It grants nothing in the window
	// that contains Fence: an earlier run of the same member may have
	// granted in it before it stopped, grants that neither this run nor
	// (once this run's counts replace them) the others would count. In
	// strict mode it grants nothing in the next window either: the
	// earlier run may have given its share of that one away. The zero
	// Fence fences nothing.
	Fence time.Time
}

// Share returns the static share of limit owned by the member of the given
// rank among members: limit/members, plus one for the first limit%members
// ranks, so that the shares sum to limit.
func Share(limit int64, members, rank int) int64 {
	if members < 1 || rank < 0 || rank >= members {
		return 0
	}
	s := limit / int64(members)
	if int64(rank) < limit%int64(members) {
		s++
	}
	return s
}

type fedConfig struct {
	FederationConfig
	fence int64 // Fence in Unix ns
	// givers holds, by rank, the other members that can hand this one
	// tokens now (SetGivers); nil until it is first set, when all are
	// taken to.
	givers []bool
	// dirty holds the names of the keys made on demand taken since the
	// last LocalChangedAt, at most maxDirty; overflow is set when more
	// were. stamp numbers the calls of LocalChangedAt.
	dirty    []string
	overflow bool
	stamp    uint32
}

// maxDirty bounds the names LocalChangedAt keeps between two calls;
// beyond it, the next call walks every live key.
const maxDirty = 4096

// fedKey is the federation state of one key. It is guarded by the
// Counter's mutex. Its current window follows the algorithm's: it moves
// only when a take moves it, and only forward.
type fedKey struct {
	cfg    *fedConfig
	window int64 // the key's window in ns
	// current is the window of the last take; granted and asked count
	// the tokens granted here and requested here (granted or not) in
	// it: asked is the demand that strict shares follow.
	current, granted, asked int64
	// need is the largest request refused in window current.
	need int64
	// prevGranted and prevAsked are the same for window current-1.
	prevGranted, prevAsked int64
	// wins holds what is known about windows from floor on: the current
	// one and those peers reported ahead of it; nil until one is known.
	// A take that counts in a window below floor, whose state was
	// dropped, is refused.
	wins  map[int64]*fedWin
	floor int64
	// seen is the latest window a take or a peer's report was made in.
	seen int64
	// noReceived is the last window whose tokens received from others
	// no longer count: they may have been given under a higher limit.
	noReceived int64
	// guard is set for a key made on demand in shared mode: a window
	// whose reserve was never set keeps the others' shares (see
	// capacity).
	guard bool
	// heardUntil is the last window that a peer's reported activity
	// bears on (TrackAt): the one it was in, whose grants count here,
	// and the next, whose allowances follow from it.
	heardUntil int64
	// name is the key's name for a key made on demand, "" for a
	// configured key; dirty is set when it was taken since the last
	// LocalChangedAt, stamp is the number of the last that reported it.
	name  string
	dirty bool
	stamp uint32
}

// fedWin is what a key knows about one window besides its own grants.
type fedWin struct {
	extra    int64 // granted by others (SetRemoteAt)
	reserve  int64 // kept for others (SetReserveAt)
	given    int64 // given away by this member (GiveAt)
	received int64 // received from others (SetReceivedAt)
	// reserveSet is set once SetReserveAt set reserve.
	reserveSet bool
}

// holds reports whether w holds tokens granted by others, given or
// received: what a new key would not know. A reserve is not among them:
// the federation layer sets it again from the counts it keeps, and a new
// key of a shared federation keeps the others' shares until then.
func (w *fedWin) holds() bool { return w.extra != 0 || w.given != 0 || w.received != 0 }

// maxAhead is how many windows past the current one federation state is
// kept for; anything further ahead is ignored, so a peer with a clock far
// in the future cannot make the maps grow.
const maxAhead = 2

// EnableFederation makes c a member of a federation: from now on, and for
// keys added by Reconfigure, it tracks demand and, in strict mode, budgets.
// It may be called once, before c takes anything: tokens granted before it
// are not reported to the other members.
//
// A key of one fixed window trades tokens with other members, configured
// or made from a template (see TrackAt for how a peer's report makes
// one). In strict mode every other key (sliding, gcra, multi-limit, from
// a template or not) runs each of its limits on this member's static
// share of it (see Share), starting full at Fence, so the members together
// never grant more than one counter would, whatever is lost or delayed.
// Shared mode cannot bound such keys: EnableFederation returns an error
// naming them.
func (c *Counter) EnableFederation(fc FederationConfig) error {
	if fc.Members < 1 || fc.Rank < 0 || fc.Rank >= fc.Members {
		return fmt.Errorf("locker: federation rank %d of %d members out of range", fc.Rank, fc.Members)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fed != nil {
		return fmt.Errorf("locker: federation already enabled")
	}
	c.fed = &fedConfig{FederationConfig: fc, fence: fc.Fence.UnixNano()}
	if err := c.checkShared(c.keys, c.tmpls); err != nil {
		c.fed = nil
		return err
	}
	for name, ks := range c.keys {
		if c.static(ks.cfg()) {
			nks := c.newKey(ks.src)
			c.keys[name] = nks
		}
	}
	c.attachFederation(c.keys)
	return nil
}

// checkShared returns an error naming the keys of m and the templates
// that shared mode cannot bound: all but those of one fixed window. It
// requires that c.mu is held.
func (c *Counter) checkShared(m map[string]*keyState, tmpls []*keyTemplate) error {
	if c.fed == nil || c.fed.Strict {
		return nil
	}
	var bad []string
	for name, ks := range m {
		if !ks.cfg().plain() {
			bad = append(bad, name)
		}
	}
	for _, t := range tmpls {
		if !t.cfg.plain() {
			bad = append(bad, t.cfg.Name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("locker: shared federation cannot bound the sliding, gcra or multi-limit keys %s: use strict mode or fixed keys", strings.Join(bad, ", "))
}

// attachFederation gives every key of m of one fixed window that has none
// a federation state. It requires that c.mu is held, or that m is not yet
// shared.
func (c *Counter) attachFederation(m map[string]*keyState) {
	for name, ks := range m {
		c.attach(name, ks)
	}
}

// attach gives ks, the key name, a federation state if c is federated,
// ks is of one fixed window and has none. A key made on demand (or from a template,
// configured) starts, in shared mode, keeping the others' shares of each
// window for them until SetReserveAt says otherwise: the others may have
// granted it before this member made it. It requires that c.mu is held.
func (c *Counter) attach(name string, ks *keyState) {
	if c.fed == nil || !ks.cfg().plain() {
		return
	}
	if f := ks.fed(); f != nil {
		if ks.tmpl() != nil {
			f.name = name // a configured key's state, carried
		}
		return
	}
	f := &fedKey{cfg: c.fed, window: int64(ks.cfg().Window),
		current: noWindow, floor: noWindow, seen: noWindow, noReceived: noWindow,
		heardUntil: noWindow, guard: ks.tmpl() != nil && !c.fed.Strict}
	if ks.tmpl() != nil {
		f.name = name
	}
	ks.setFed(f)
}

// win returns the state of window k, creating it.
func (fk *fedKey) win(k int64) *fedWin {
	w := fk.wins[k]
	if w == nil {
		if fk.wins == nil { // made on first use: most keys made on demand never need it
			fk.wins = make(map[int64]*fedWin)
		}
		w = &fedWin{}
		fk.wins[k] = w
	}
	return w
}

// drop forgets the windows before k.
func (fk *fedKey) drop(k int64) {
	if k <= fk.floor {
		return
	}
	for w := range fk.wins {
		if w < k {
			delete(fk.wins, w)
		}
	}
	fk.floor = k
}

// see records that a take or a peer's report was made in window k.
func (fk *fedKey) see(k int64) { fk.seen = max(fk.seen, k) }

// budget returns the strict budget of window k for limit: this member's
// share, minus the tokens it gave away, plus those it received (unless
// the limit was lowered since they may have been given), and 0 in the
// windows of the fence. In shared mode it is the limit.
func (fk *fedKey) budget(limit, k int64) int64 {
	if !fk.cfg.Strict {
		return limit
	}
	if fk.fenced(k) {
		return 0
	}
	b := Share(limit, fk.cfg.Members, fk.cfg.Rank)
	if w := fk.wins[k]; w != nil {
		if k > fk.noReceived {
			b += w.received
		}
		b -= w.given
	}
	return max(b, 0)
}

// fenced reports whether window k is one this member may not grant in
// because it started in it or, in strict mode, in the window before it.
func (fk *fedKey) fenced(k int64) bool {
	if fk.cfg.fence == 0 {
		return false
	}
	last := windowOf(fk.cfg.fence, fk.window)
	if fk.cfg.Strict {
		last++
	}
	return k <= last
}

// capacity returns the tokens this member may grant in window k in all:
// the limit less what others granted, and at most the strict budget, or
// less the tokens reserved for others in shared mode; nothing in a
// fenced window.
func (fk *fedKey) capacity(limit, k int64) int64 {
	if k < fk.floor || fk.fenced(k) {
		return 0
	}
	var w fedWin
	if p := fk.wins[k]; p != nil {
		w = *p
	}
	c := limit - w.extra
	switch {
	case fk.cfg.Strict:
		c = min(c, fk.budget(limit, k))
	case fk.guard && !w.reserveSet:
		c -= limit - Share(limit, fk.cfg.Members, fk.cfg.Rank)
	default:
		c -= w.reserve
	}
	return max(c, 0)
}

// idle reports whether the key holds no federation state a new key would
// not have, at window k (the one a take now would count in): nothing
// granted or asked here in k or k-1 (the counts of k-1 may not have been
// published yet), nothing granted by others, given or received in k or a
// later window, no activity reported by a peer in k or k-1 (see TrackAt),
// and no received tokens still discounted after a lowered limit.
// Dropping such a key and making it again loses nothing the members act
// on.
func (fk *fedKey) idle(k int64) bool {
	if g, a := fk.countsOf(k); g != 0 || a != 0 {
		return false
	}
	if g, a := fk.countsOf(k - 1); g != 0 || a != 0 {
		return false
	}
	if k <= fk.noReceived || k <= fk.heardUntil {
		return false
	}
	for w, win := range fk.wins {
		if w >= k && win.holds() {
			return false
		}
	}
	return true
}

// lowered is called when the key's limit was lowered. Tokens others gave
// this member under the higher limit no longer count, in the windows for
// which they may have been given: a giver's budget under the new limit
// cannot go below 0 to pay for them. Up to maxAhead windows past the
// latest one seen, then, this member grants at most its new share less
// what it gave away.
func (fk *fedKey) lowered() {
	fk.noReceived = max(fk.current, fk.seen) + maxAhead
}

// take is keyState.take for a federated key: it runs the algorithm on this
// member's capacity in the window the take counts in.
func (fk *fedKey) take(ks *keyState, now time.Time, n int64) Decision {
	k, _ := ks.alg.PeekAt(now)
	if k != fk.current {
		fk.enter(k)
	}
	fk.asked += n
	if fk.name != "" && !fk.dirty {
		fk.dirty = true
		if fc := fk.cfg; len(fc.dirty) < maxDirty {
			fc.dirty = append(fc.dirty, fk.name)
		} else {
			fc.overflow = true
		}
	}
	ks.alg.SetLimit(fk.capacity(ks.cfg().Limit, k))
	d := ks.alg.TakeAt(now, n)
	if d.OK {
		fk.granted += n
	} else {
		fk.need = max(fk.need, n)
	}
	return d
}

// enter moves the key's state to window k, a later one.
func (fk *fedKey) enter(k int64) {
	fk.prevGranted, fk.prevAsked = fk.countsOf(k - 1)
	fk.current, fk.granted, fk.asked, fk.need = k, 0, 0, 0
	fk.see(k)
	fk.drop(k)
}

// countsOf returns the tokens granted and asked here in window k.
func (fk *fedKey) countsOf(k int64) (granted, asked int64) {
	switch k {
	case fk.current:
		return fk.granted, fk.asked
	case fk.current - 1:
		return fk.prevGranted, fk.prevAsked
	}
	return 0, 0
}

// remote returns the tokens others granted in window k, as last reported.
func (fk *fedKey) remote(k int64) int64 {
	if w := fk.wins[k]; w != nil {
		return w.extra
	}
	return 0
}

// fedKeyAt returns the state of key and the window a take at now would
// count in, or nil for a key that is unknown or not federated. It moves
// no window. It requires that c.mu is held.
func (c *Counter) fedKeyAt(now time.Time, key string) (*keyState, *fedKey, int64) {
	ks := c.keys[key]
	if ks == nil || ks.fed() == nil {
		return nil, nil, 0
	}
	k, _ := ks.alg.PeekAt(now)
	return ks, ks.fed(), k
}

// reportAt is fedKeyAt for a peer's report about window k: it returns nil
// unless k is the window a take at now would count in or one of the
// maxAhead after it, and forgets the windows more than one before it.
func (c *Counter) reportAt(now time.Time, key string, k int64) (*keyState, *fedKey) {
	ks, fk, cur := c.fedKeyAt(now, key)
	if fk == nil || k < cur || k > cur+maxAhead {
		return nil, nil
	}
	fk.see(cur)
	fk.drop(cur - 1)
	return ks, fk
}

// LocalCount is what one key of a federated counter has done itself.
type LocalCount struct {
	KeyConfig
	// Index is the current window. Granted and Asked are the tokens
	// granted here and requested here (granted or refused) in it; Budget
	// is the strict budget of it (the limit in shared mode).
	Index, Granted, Asked, Budget int64
	// Need is the largest request refused in window Index.
	Need int64
	// PrevGranted and PrevAsked are the same for window Index-1.
	PrevGranted, PrevAsked int64
	// Remote is the tokens granted by others in window Index as last set
	// by SetRemoteAt.
	Remote int64
	// Reserved and NextReserved report whether a reserve was set
	// (SetReserveAt) for window Index and Index+1. A key made again after
	// it was dropped has none, whatever was set for the key before.
	Reserved, NextReserved bool
}

// LocalAt returns, for every federated key, the tokens granted and asked
// here in the window that a take at now would count in and the one
// before it: the configured keys sorted by name, then the keys made on
// demand that are live, in no order (and no other name: a key made on
// demand is reported from when it is made to when it is dropped). For a
// key made on demand, Name is the key's and the rest of KeyConfig its
// template's. It moves no window. It takes time in proportion to the
// live keys.
func (c *Counter) LocalAt(now time.Time) []LocalCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]LocalCount, 0, len(c.names)+c.live)
	for _, name := range c.names {
		if ks, fk, k := c.fedKeyAt(now, name); fk != nil {
			out = append(out, fk.local(ks, name, k))
		}
	}
	for name, ks := range c.keys {
		if fk := ks.fed(); fk != nil && ks.tmpl() != nil {
			k, _ := ks.alg.PeekAt(now)
			out = append(out, fk.local(ks, name, k))
		}
	}
	return out
}

// LocalChangedAt is LocalAt for the keys whose counts may have changed:
// the configured keys, the keys made on demand taken since the last call
// (all live keys when more than a few thousand were), and those of also
// that are live (the caller's own list, for instance the keys peers
// reported activity of). Each key is reported once. It takes time in
// proportion to those keys, not to all live keys.
func (c *Counter) LocalChangedAt(now time.Time, also []string) []LocalCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fed == nil {
		return nil
	}
	fc := c.fed
	fc.stamp++
	out := make([]LocalCount, 0, len(c.names)+len(fc.dirty)+len(also))
	for _, name := range c.names {
		if ks, fk, k := c.fedKeyAt(now, name); fk != nil && ks.tmpl() == nil {
			out = append(out, fk.local(ks, name, k))
		}
	}
	// report adds the key made on demand name, of state ks, once.
	report := func(name string, ks *keyState) {
		fk := ks.fed()
		if fk == nil || ks.tmpl() == nil || fk.stamp == fc.stamp {
			return
		}
		k, _ := ks.alg.PeekAt(now)
		fk.dirty, fk.stamp = false, fc.stamp
		out = append(out, fk.local(ks, name, k))
	}
	if fc.overflow {
		for name, ks := range c.keys {
			report(name, ks)
		}
	} else {
		for _, name := range fc.dirty {
			if ks := c.keys[name]; ks != nil {
				report(name, ks)
			}
		}
	}
	for _, name := range also {
		if ks := c.keys[name]; ks != nil {
			report(name, ks)
		}
	}
	clear(fc.dirty)
	fc.dirty, fc.overflow = fc.dirty[:0], false
	return out
}

// local returns the LocalCount of key name, of state ks, at window k.
func (fk *fedKey) local(ks *keyState, name string, k int64) LocalCount {
	lc := LocalCount{KeyConfig: *ks.cfg(), Index: k, Budget: fk.budget(ks.cfg().Limit, k), Remote: fk.remote(k)}
	lc.Name = name
	lc.Granted, lc.Asked = fk.countsOf(k)
	if k == fk.current {
		lc.Need = fk.need
	}
	lc.PrevGranted, lc.PrevAsked = fk.countsOf(k - 1)
	if w := fk.wins[k]; w != nil {
		lc.Reserved = w.reserveSet
	}
	if w := fk.wins[k+1]; w != nil {
		lc.NextReserved = w.reserveSet
	}
	return lc
}

// SetRemoteAt records that others granted extra tokens of key in window k:
// the window a take at now would count in, or one of the next ones, for a
// peer whose clock is a little ahead. It does nothing for a key that is
// not federated or another window.
func (c *Counter) SetRemoteAt(now time.Time, key string, k, extra int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, fk := c.reportAt(now, key, k); fk != nil && extra >= 0 {
		fk.win(k).extra = extra
	}
}

// SetReserveAt keeps reserve tokens of key in window k (the current or a
// later one) for other members in shared mode: tokens they have not
// granted yet but are expected to. It does nothing in strict mode.
func (c *Counter) SetReserveAt(now time.Time, key string, k, reserve int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, fk := c.reportAt(now, key, k); fk != nil && !fk.cfg.Strict && reserve >= 0 {
		w := fk.win(k)
		w.reserve, w.reserveSet = reserve, true
	}
}

// GiveAt takes up to n tokens of key out of this member's strict budget of
// window k (the current or the next one), so that they can be handed to
// another member, and returns how many it took. Tokens once taken are
// never returned to the budget: a transfer that is lost only wastes them.
// The next window is as far ahead as tokens can be given: that is why a
// restarted member (see FederationConfig.Fence) skips two windows.
func (c *Counter) GiveAt(now time.Time, key string, k, n int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks, fk, cur := c.fedKeyAt(now, key)
	if fk == nil || !fk.cfg.Strict || n <= 0 || k < cur || k > cur+1 {
		return 0
	}
	granted, _ := fk.countsOf(k)
	n = min(n, fk.budget(ks.cfg().Limit, k)-granted)
	if n <= 0 {
		return 0
	}
	fk.see(cur)
	fk.drop(cur - 1)
	fk.win(k).given += n
	return n
}

// SetReceivedAt records that other members have handed this one total
// tokens of key for window k in all (a cumulative figure: a smaller total
// than one already recorded is ignored). Tokens received for a window
// that was under way when the key's limit was lowered do not count (see
// FederationConfig).
func (c *Counter) SetReceivedAt(now time.Time, key string, k, total int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, fk := c.reportAt(now, key, k); fk != nil && fk.cfg.Strict {
		w := fk.win(k)
		w.received = max(w.received, total)
	}
}

// TrackAt tells the counter that a peer reported activity of key in
// window k (tokens granted or asked there, or handed to this member; k is
// the window a take at now would count in, the one before or one of the
// next): a key of one fixed window made from a template that is not live
// here is made, so that this member counts what the others grant of it
// and reports its own counts (zeros too: the others may then use its
// share), and the key is not dropped before window k+1 ends (the
// allowances of k+1 follow from the counts of k). It reports whether it
// made the key.
//
// When the key cannot be made because c.MaxKeys are live, TrackAt returns
// ErrTooManyKeys and, in shared mode, no key of its template is made
// before window k+1 ends, by a request or a later report: such a key
// would not count the grants of the report lost. In strict mode nothing
// a local grant depends on is lost.
func (c *Counter) TrackAt(now time.Time, key string, k int64) (made bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fed == nil {
		return false, nil
	}
	ks := c.keys[key]
	if ks == nil {
		t := c.match(key)
		if t == nil || !t.cfg.plain() {
			return false, nil
		}
		w := int64(t.cfg.Window)
		if cur := windowOf(now.UnixNano(), w); k < cur-1 || k > cur+maxAhead {
			return false, nil
		}
		if ks, err = c.make(now, key, 1); err != nil {
			if errors.Is(err, ErrTooManyKeys) && !c.fed.Strict {
				t.lostUntil = max(t.lostUntil, (k+2)*w)
			}
			return false, err
		}
		made = true
	}
	if fk := ks.fed(); fk != nil {
		if cur, _ := ks.alg.PeekAt(now); k >= cur-1 && k <= cur+maxAhead {
			fk.heardUntil = max(fk.heardUntil, k+1)
		}
	}
	return made, nil
}
