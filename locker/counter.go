package locker

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// Decision is the answer to one request for tokens.
type Decision struct {
	// OK is true for go and false for sorry.
	OK bool
	// Remaining is the number of tokens left in the window after this
	// decision (only meaningful when OK).
	Remaining int64
	// Reset is the time until the current window ends.
	Reset time.Duration
	// RetryAfter is the time until the request could be granted (only
	// meaningful when !OK).
	RetryAfter time.Duration
	// Window is the index k of the window [k·T, (k+1)·T) since the Unix
	// epoch that the decision was made in.
	Window int64
}

// Defaults for the key DefaultKey when no configuration names it: the
// seed design's one grant per second.
const (
	DefaultLimit  = 1
	DefaultWindow = time.Second
)

// Errors returned by Counter.
var (
	// ErrUnknownKey is returned for a key that is not configured.
	ErrUnknownKey = errors.New("locker: unknown key")
	// ErrBadCount is returned for a token count below 1 or above the
	// key's limit.
	ErrBadCount = errors.New("locker: token count out of range")
)

// Counter holds the configured keys and their counters.
//
// A Counter is safe for concurrent use by multiple goroutines. The zero
// value is not usable; use NewCounter.
type Counter struct {
	mu sync.Mutex
	// keys holds the configured keys and the keys made on demand, so
	// that both cost one lookup.
	keys map[string]*keyState
	// names is the sorted list of key names, for stable reports.
	names []string
	// fed, when not nil, is attached to every key (federation.go).
	fed *fedConfig
	// last is the latest instant, in Unix ns, a take was made at: a limit
	// whose algorithm changes on a reload starts full at it.
	last int64
	// tmpls are the key templates, longest prefix first (template.go).
	tmpls []*keyTemplate
	// live is the number of keys made on demand in keys, liveHigh the
	// most there were since keys was last rebuilt, maxKeys the cap.
	live, liveHigh, maxKeys int
	// sweep is the iteration of keys a cycle of SweepSomeAt is at, nil
	// between cycles (sweep.go).
	sweep *sweepIter
	// retired holds the state of the keys reloads removed while not idle,
	// until a key of the name is back or the state is idle; nil when
	// empty. sweepRetired is the iteration of retired a cycle of
	// SweepSomeAt is at (reload.go).
	retired      map[string]*keyState
	sweepRetired *sweepIter
	// dropFloor is the latest instant, in Unix ns, at which an idle key
	// made on demand was dropped: no take of a key made on demand is made
	// at an older instant, at which the dropped key may still have had
	// tokens in use.
	dropFloor int64
}

// keyState is one configured key, or one key made from a template. It is
// guarded by the Counter's mutex.
//
// A million keys made on demand may live at once, so its size counts:
// what only a key of several limits or a federated key uses is behind one
// pointer, the configuration and the template behind another, and the
// state of the first limit is made in one allocation with the key (see
// newKey): a key of one fixed window is 64 bytes in all.
type keyState struct {
	// src is what the key was made from: its configuration, or its
	// template's; never changed.
	src *keySource
	// alg counts the first limit; its state was made with the key's.
	alg algo
	// ext, nil for the common key (one limit, not federated), holds what
	// a key of several limits or a federated key keeps besides.
	ext *keyExtra
	// maxN is the most tokens one request may ask: at most MaxLimit,
	// which 32 bits hold.
	maxN int32
}

// keySource is what keys are made from: a configured key's
// configuration, or a template's (keyTemplate embeds it), shared by every
// key made from it.
type keySource struct {
	cfg KeyConfig
	// tmpl is the template itself, nil for a configured key.
	tmpl *keyTemplate
}

// keyExtra is what a key keeps that the common key does not. A key has
// at most one of the two: federation state is only kept for a key of one
// fixed window.
type keyExtra struct {
	// multi, nil for a single limit, holds the limits after the first.
	multi *multiLimit
	// fed is the federation state of a single fixed-window limit
	// (federation.go); nil when the counter is not federated or the key
	// runs on a static share.
	fed *fedKey
}

// cfg returns the key's configuration, or its template's.
func (ks *keyState) cfg() *KeyConfig { return &ks.src.cfg }

// tmpl returns the template the key was made from, nil for a configured
// key.
func (ks *keyState) tmpl() *keyTemplate { return ks.src.tmpl }

// multi returns the state of the limits after the first, nil for a key
// of one limit.
func (ks *keyState) multi() *multiLimit {
	if ks.ext == nil {
		return nil
	}
	return ks.ext.multi
}

// fed returns the key's federation state, or nil.
func (ks *keyState) fed() *fedKey {
	if ks.ext == nil {
		return nil
	}
	return ks.ext.fed
}

// setExt sets the key's multi-limit and federation states; nil for both
// frees ext.
func (ks *keyState) setExt(m *multiLimit, f *fedKey) {
	if m == nil && f == nil {
		ks.ext = nil
		return
	}
	if ks.ext == nil {
		ks.ext = new(keyExtra)
	}
	ks.ext.multi, ks.ext.fed = m, f
}

// setFed sets the key's federation state, nil for none.
func (ks *keyState) setFed(f *fedKey) { ks.setExt(ks.multi(), f) }

// The states of a key and its first limit, made in one allocation.
type (
	fixedKey struct {
		ks  keyState
		alg fixedWindow
	}
	slidingKey struct {
		ks  keyState
		alg slidingWindow
	}
	gcraKey struct {
		ks  keyState
		alg gcraAlg
	}
)

// multiLimit is what a key of several limits keeps besides its first.
type multiLimit struct {
	// more counts the limits after the first.
	more []algo
	// last is the latest instant in Unix ns a take was made at.
	last int64
}

// more returns the limits after the first, nil for a single limit.
func (ks *keyState) more() []algo {
	if m := ks.multi(); m != nil {
		return m.more
	}
	return nil
}

// setFirst makes a the first limit's algorithm. A state of the same
// algorithm as the key's own, carried from another key, is copied into
// it, so that the other key's allocation is not kept alive by it.
func (ks *keyState) setFirst(a algo) {
	switch d := ks.alg.(type) {
	case *fixedWindow:
		if s, ok := a.(*fixedWindow); ok {
			*d = *s
			return
		}
	case *slidingWindow:
		if s, ok := a.(*slidingWindow); ok {
			*d = *s
			return
		}
	case *gcraAlg:
		if s, ok := a.(*gcraAlg); ok {
			*d = *s
			return
		}
	}
	ks.alg = a
}

// setMore makes more the limits after the first; none makes the key one
// of a single limit.
func (ks *keyState) setMore(more []algo) {
	if len(more) == 0 {
		ks.setExt(nil, ks.fed())
		return
	}
	m := ks.multi()
	if m == nil {
		m = &multiLimit{last: math.MinInt64}
		ks.setExt(m, ks.fed())
	}
	m.more = more
}

// take takes n tokens of the key at now, from every limit or from none;
// n is in 1..maxN.
func (ks *keyState) take(now time.Time, n int64) Decision {
	if ks.ext == nil {
		return ks.alg.TakeAt(now, n)
	}
	if f := ks.ext.fed; f != nil {
		return f.take(ks, now, n)
	}
	m := ks.ext.multi
	if m == nil {
		return ks.alg.TakeAt(now, n)
	}
	// Every limit decides at one instant, the latest a take of the key
	// was made at if now is older, refused or not: a refusal's RetryAfter
	// counts from it.
	if t := now.UnixNano(); t > m.last {
		m.last = t
	} else {
		now = time.Unix(0, m.last)
	}
	if d := ks.check(now, n); !d.OK {
		return d
	}
	d := ks.alg.TakeAt(now, n)
	for _, a := range m.more {
		d = tighter(d, a.TakeAt(now, n))
	}
	return d
}

// check returns the decision take would return, changing nothing but, for
// a federated key, the capacity its algorithm runs on, which take sets
// again before deciding.
func (ks *keyState) check(now time.Time, n int64) Decision {
	e := ks.ext
	if e == nil {
		return ks.alg.CheckAt(now, n)
	}
	if m := e.multi; m != nil && now.UnixNano() < m.last {
		now = time.Unix(0, m.last)
	}
	if f := e.fed; f != nil {
		k, _ := ks.alg.PeekAt(now)
		ks.alg.SetLimit(f.capacity(ks.cfg().Limit, k))
	}
	d := ks.alg.CheckAt(now, n)
	if m := e.multi; m != nil {
		for _, a := range m.more {
			d = tighter(d, a.CheckAt(now, n))
		}
	}
	return d
}

// tighter combines the decisions of two limits of one key: sorry if
// either refuses, with the later RetryAfter (every limit grants then: a
// limit that grants at some instant grants at every later one if nothing
// is taken); else go with the fewer tokens remaining (the later Reset on
// a tie). The fields of the combined decision are those of the limit
// chosen.
func tighter(a, b Decision) Decision {
	switch {
	case a.OK && b.OK:
		if b.Remaining < a.Remaining || (b.Remaining == a.Remaining && b.Reset > a.Reset) {
			return b
		}
		return a
	case a.OK:
		return b
	case b.OK:
		return a
	case b.RetryAfter > a.RetryAfter:
		return b
	}
	return a
}

// peek returns the window a take at now would count in and the tokens
// used in it, here and, as far as this counter knows, by federated
// peers, for the first limit. It moves nothing.
func (ks *keyState) peek(now time.Time) (window, granted int64) {
	k, g := ks.alg.PeekAt(now)
	if f := ks.fed(); f != nil {
		g += f.remote(k)
	}
	return k, g
}

// algs returns every limit's algorithm, the first one first.
func (ks *keyState) algs() []algo {
	return append([]algo{ks.alg}, ks.more()...)
}

// static reports whether a key of configuration k (or made from template
// k) runs on a static share of its limits in c's federation.
func (c *Counter) static(k *KeyConfig) bool {
	return c.fed != nil && c.fed.Strict && !k.plain()
}

// share returns the part of limit this member runs a static key on: all
// of it outside a federation.
func (c *Counter) share(limit int64, static bool) int64 {
	if !static {
		return limit
	}
	return Share(limit, c.fed.Members, c.fed.Rank)
}

// newKey returns the state of a new key made from src, a configured key
// or a template. A key that runs on a static share in a federation starts
// full at the fence: an earlier run of this member may have granted its
// share just before.
func (c *Counter) newKey(src *keySource) *keyState {
	k := &src.cfg
	static := c.static(k)
	var ks *keyState
	switch k.first().alg() {
	case AlgSliding:
		b := new(slidingKey)
		ks, b.ks.alg = &b.ks, &b.alg
	case AlgGCRA:
		b := new(gcraKey)
		ks, b.ks.alg = &b.ks, &b.alg
	default:
		b := new(fixedKey)
		ks, b.ks.alg = &b.ks, &b.alg
	}
	c.initPart(ks.alg, k.first(), static)
	ks.src, ks.maxN = src, clamp32(k.maxN())
	if k.More[0] != (Part{}) {
		var more []algo
		for _, p := range k.Parts()[1:] {
			more = append(more, c.newPart(p, static))
		}
		ks.setMore(more)
	}
	return ks
}

// newPart returns the algorithm of one limit p of a new key.
func (c *Counter) newPart(p Part, static bool) algo {
	var a algo
	switch p.alg() {
	case AlgSliding:
		a = new(slidingWindow)
	case AlgGCRA:
		a = new(gcraAlg)
	default:
		a = new(fixedWindow)
	}
	c.initPart(a, p, static)
	return a
}

// initPart sets a, of algorithm p.alg(), to the new state of limit p.
// It allocates nothing: newKey makes a key's first limit with the key.
func (c *Counter) initPart(a algo, p Part, static bool) {
	limit := c.share(p.Limit, static)
	switch a := a.(type) {
	case *slidingWindow:
		*a = *newSlidingWindow(limit, p.Window)
	case *gcraAlg:
		*a = *newGCRA(limit, p.Window, c.share(p.Burst, static))
		if p.Burst != 0 && a.follow { // a share of 0 of a set burst
			a.burst, a.follow = 0, false
		}
	case *fixedWindow:
		*a = *newFixedWindow(limit, p.Window)
	}
	if static && !c.fed.Fence.IsZero() {
		a.FillAt(c.fed.Fence)
	}
}

// NewCounter returns a Counter for keys. The key DefaultKey is added with
// DefaultLimit and DefaultWindow when keys do not name it. It returns an
// error for an invalid or duplicate key. Keys whose name ends in * are
// templates (see KeyConfig.IsTemplate); at most DefaultMaxKeys keys are
// made from them at once, unless SetMaxKeys says otherwise.
func NewCounter(keys []KeyConfig) (*Counter, error) {
	c := &Counter{maxKeys: DefaultMaxKeys}
	m, names, tmpls, err := c.buildKeys(keys)
	if err != nil {
		return nil, err
	}
	c.names, c.tmpls = names, tmpls
	c.setKeys(m)
	return c, nil
}

// buildKeys returns the states of keys, new, for c's federation, their
// sorted names (templates included) and the templates, longest prefix
// first. It requires that c.mu is held, or that c is not yet shared.
func (c *Counter) buildKeys(keys []KeyConfig) (map[string]*keyState, []string, []*keyTemplate, error) {
	m := make(map[string]*keyState, len(keys)+1)
	var tmpls []*keyTemplate
	seen := make(map[string]bool, len(keys)+1)
	for _, k := range keys {
		if err := k.Validate(); err != nil {
			return nil, nil, nil, err
		}
		if seen[k.Name] {
			return nil, nil, nil, fmt.Errorf("locker: key %q configured twice", k.Name)
		}
		seen[k.Name] = true
		if k.IsTemplate() {
			t := &keyTemplate{keySource: keySource{cfg: k}, prefix: k.Name[:len(k.Name)-1]}
			t.tmpl = t
			t.full.src, t.full.maxN = &t.keySource, clamp32(k.maxN())
			tmpls = append(tmpls, t)
			continue
		}
		m[k.Name] = c.newKey(&keySource{cfg: k})
	}
	if !seen[DefaultKey] {
		seen[DefaultKey] = true
		m[DefaultKey] = c.newKey(&keySource{cfg: KeyConfig{Name: DefaultKey, Limit: DefaultLimit, Window: DefaultWindow}})
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	sort.SliceStable(tmpls, func(i, j int) bool { return len(tmpls[i].prefix) > len(tmpls[j].prefix) })
	return m, names, tmpls, nil
}

// TakeAt takes n tokens of key at time now. It returns ErrUnknownKey for a
// key that is not configured and ErrBadCount for n outside 1..limit (for
// a gcra limit, 1..burst; for a multi-limit key, the least of its
// limits).
func (c *Counter) TakeAt(now time.Time, key string, n int64) (Decision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks, err := c.lookup(now, key, n)
	if err != nil {
		return Decision{}, err
	}
	return c.decide(ks, now, n, true)
}

// CheckAt returns the decision TakeAt(now, key, n) would return, without
// taking anything, with the same errors.
func (c *Counter) CheckAt(now time.Time, key string, n int64) (Decision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks := c.find(key)
	if ks == nil {
		if t := c.match(key); t != nil && validKeyName(key) == nil {
			ks = c.newKey(&t.keySource) // as it would be made, not kept
		}
	}
	if _, err := c.decide(ks, now, n, false); err != nil {
		return Decision{}, err
	}
	return ks.check(now, n), nil
}

// retryAt returns how long until n tokens of key could be granted, 0 if
// they could be now, and false for a key that is not configured or an n
// it refuses: the server's waiters wake then.
func (c *Counter) retryAt(now time.Time, key string, n int64) (time.Duration, bool) {
	d, err := c.CheckAt(now, key, n)
	if err != nil {
		return 0, false
	}
	return d.RetryAfter, true
}

// Key returns the configuration of key (for a key a template matches, the
// template's) and whether it exists.
func (c *Counter) Key(key string) (KeyConfig, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks := c.find(key)
	if ks == nil {
		if t := c.match(key); t != nil && validKeyName(key) == nil {
			return t.cfg, true
		}
		return KeyConfig{}, false
	}
	return *ks.cfg(), true
}

// takeBytes is TakeAt for a key in bytes, that only looks the key up and
// checks n unless take is set, under one lock: the server's path for each
// request. The map lookup with string(key) does not allocate. The
// configuration it returns (nil for an unknown key) is never changed: a
// reload replaces it.
func (c *Counter) takeBytes(now time.Time, key []byte, n int64, take bool) (*KeyConfig, Decision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks := c.keys[string(key)]
	if ks == nil {
		var err error
		if ks, err = c.lookupBytes(now, key, n); err != nil {
			return ks.cfgOrNil(), Decision{}, err
		}
	}
	d, err := c.decide(ks, now, n, take)
	return ks.cfgOrNil(), d, err
}

// decide checks a request for n tokens of ks (nil for an unknown key) and,
// if take is set, takes them. It returns ErrUnknownKey, or ErrBadCount
// for n outside 1..maxN. It requires that c.mu is held.
func (c *Counter) decide(ks *keyState, now time.Time, n int64, take bool) (Decision, error) {
	if ks == nil {
		return Decision{}, ErrUnknownKey
	}
	if n < 1 || n > int64(ks.maxN) {
		return Decision{}, ErrBadCount
	}
	if err := c.reach(ks, n); err != nil {
		return Decision{}, err
	}
	if !take {
		return Decision{}, nil
	}
	c.last = max(c.last, now.UnixNano())
	if now.UnixNano() < c.dropFloor && ks.tmpl() != nil {
		now = time.Unix(0, c.dropFloor)
	}
	return ks.take(now, n), nil
}

// KeyUsage is how much of one key's current window is used: its
// configuration, the window and the tokens granted in it.
type KeyUsage struct {
	KeyConfig
	// WindowIndex is the index of the window a take at the snapshot's
	// instant would count in.
	WindowIndex int64
	// Granted is the number of tokens granted in the current window,
	// including those granted by federated peers that this counter knows of.
	Granted int64
	// Parts, for a key of several limits only, is the usage of each, the
	// first one (WindowIndex and Granted above) first.
	Parts []PartUsage
}

// SnapshotAt returns every configured key's state at now, sorted by name
// (templates and the keys made from them are not included). It moves no
// key's window: an instant before a key's current window reports that
// window (see Algorithm).
func (c *Counter) SnapshotAt(now time.Time) []KeyUsage {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]KeyUsage, 0, len(c.names))
	for _, n := range c.names {
		ks := c.keys[n]
		if ks == nil { // a template
			continue
		}
		k, g := ks.peek(now)
		u := KeyUsage{KeyConfig: *ks.cfg(), WindowIndex: k, Granted: g}
		if ks.ext != nil && ks.ext.multi != nil {
			u.Parts = ks.partsAt(now)
		}
		out = append(out, u)
	}
	return out
}

// Keys returns the configured keys and templates, sorted by name.
func (c *Counter) Keys() []KeyConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]KeyConfig, 0, len(c.names))
	for _, n := range c.names {
		if ks := c.keys[n]; ks != nil {
			out = append(out, *ks.cfg())
			continue
		}
		for _, t := range c.tmpls {
			if t.cfg.Name == n {
				out = append(out, t.cfg)
			}
		}
	}
	return out
}
