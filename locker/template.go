package locker

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file holds keys made on demand. A key whose name ends in * is a
// template: a request for any valid key name that starts with the part
// before the * gets its own counter with the template's limits, made on
// first use. A configured key wins over a template, and the longest
// matching template over a shorter one. A key made on demand whose tokens
// are all back, with nothing held for it, is dropped by SweepAt; at most
// SetMaxKeys of them live at once.

// DefaultMaxKeys is the most keys made on demand that live at once unless
// SetMaxKeys says otherwise.
const DefaultMaxKeys = 1_000_000

// ErrTooManyKeys is returned for a request that would make a key on
// demand when the most keys allowed (SetMaxKeys) are live: it is refused,
// never granted.
var ErrTooManyKeys = errors.New("locker: too many live keys made on demand")

// keyTemplate is one template and the count of keys made from it.
type keyTemplate struct {
	keySource // its tmpl is the template itself
	prefix    string
	live      int
	// lostUntil is, in a shared federation, the instant in Unix ns until
	// which no key is made from the template: a peer's report about one
	// of its keys was lost for want of room (see Counter.TrackAt).
	lostUntil int64
	// full stands for the template's keys when no more can be made: it
	// carries the template's configuration to callers, and no counter.
	full keyState
}

// IsTemplate reports whether k is a key template: its name ends in *.
func (k KeyConfig) IsTemplate() bool { return strings.HasSuffix(k.Name, "*") }

// validName returns why k's name is not a valid key name or template
// name: a valid key name, or a valid key name or nothing followed by *.
func (k KeyConfig) validName() error {
	if !k.IsTemplate() {
		return validKeyName(k.Name)
	}
	if len(k.Name) > MaxKeyLen {
		return fmt.Errorf("key template longer than %d characters", MaxKeyLen)
	}
	prefix := k.Name[:len(k.Name)-1]
	for i := 0; i < len(prefix); i++ {
		if !keyChar(prefix[i]) {
			return fmt.Errorf("key template %q: character %q not allowed before the final * (use A-Za-z0-9_.:/-)", k.Name, prefix[i])
		}
	}
	return nil
}

// SetMaxKeys sets the most keys made on demand that may live at once; 0
// means DefaultMaxKeys. Keys already live stay.
func (c *Counter) SetMaxKeys(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n <= 0 {
		n = DefaultMaxKeys
	}
	c.maxKeys = n
}

// MaxKeys returns the most keys made on demand that may live at once.
func (c *Counter) MaxKeys() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxKeys
}

// match returns the longest template key matches, or nil. It requires
// that c.mu is held.
func (c *Counter) match(key string) *keyTemplate {
	for _, t := range c.tmpls {
		if strings.HasPrefix(key, t.prefix) {
			return t
		}
	}
	return nil
}

// find returns the state of key, configured or live, or nil. It requires
// that c.mu is held.
func (c *Counter) find(key string) *keyState { return c.keys[key] }

// lookup returns the state of key, making it from a template for a
// request of n tokens if it is neither configured nor live. It requires
// that c.mu is held.
func (c *Counter) lookup(now time.Time, key string, n int64) (*keyState, error) {
	if ks := c.find(key); ks != nil {
		return ks, nil
	}
	return c.make(now, key, n)
}

// lookupBytes is lookup for a key in bytes that is neither configured
// nor live: making a key allocates, refusing one does not.
func (c *Counter) lookupBytes(now time.Time, key []byte, n int64) (*keyState, error) {
	if len(c.tmpls) == 0 || !c.matchesBytes(key) {
		return nil, ErrUnknownKey
	}
	return c.make(now, string(key), n)
}

// matchesBytes reports whether key is a valid key name that a template
// matches, without allocating. It requires that c.mu is held.
func (c *Counter) matchesBytes(key []byte) bool {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return false
	}
	for _, b := range key {
		if !keyChar(b) {
			return false
		}
	}
	for _, t := range c.tmpls {
		if len(key) >= len(t.prefix) && string(key[:len(t.prefix)]) == t.prefix {
			return true
		}
	}
	return false
}

// make makes key from the longest template it matches, for a request of
// n tokens at now. It returns ErrUnknownKey for a key no template matches
// or that is not a valid key name; and, with a state that only carries
// the template's configuration, ErrBadCount for an n the template refuses
// (no key is made for it) and ErrTooManyKeys when c.maxKeys are live and
// none of those it looked at was idle, or, in a shared federation, while
// a peer's report about a key of the template is lost (see TrackAt). It
// requires that c.mu is held.
//
// Each key made first drops the idle keys among a few live ones (more
// when the cap is reached), so that live keys stay near those in use
// without a sweep: an idle key decides as a new one would (see SweepAt).
func (c *Counter) make(now time.Time, key string, n int64) (*keyState, error) {
	t := c.match(key)
	if t == nil || validKeyName(key) != nil {
		return nil, ErrUnknownKey
	}
	if n < 1 || n > int64(t.full.maxN) {
		return &t.full, ErrBadCount
	}
	if t.lostUntil != 0 && now.UnixNano() < t.lostUntil {
		return &t.full, ErrTooManyKeys
	}
	probe := makeProbe
	if c.live >= c.maxKeys {
		probe = fullProbe
	}
	c.dropIdle(now, probe)
	if c.live >= c.maxKeys {
		return &t.full, ErrTooManyKeys
	}
	ks := c.newKey(&t.keySource)
	c.unretire(key, ks)
	c.attach(key, ks)
	c.keys[key] = ks
	t.live++
	c.live++
	c.liveHigh = max(c.liveHigh, c.live)
	return ks, nil
}

// How many live keys make looks at for idle ones: makeProbe each time,
// fullProbe when the cap is reached.
const (
	makeProbe = 2
	fullProbe = 64
)

// dropIdle looks at up to probe keys, from where a map iteration starts
// (at random), and drops those made on demand that are idle at now. It
// requires that c.mu is held.
func (c *Counter) dropIdle(now time.Time, probe int) {
	dropped := false
	for name, ks := range c.keys {
		if probe == 0 {
			break
		}
		probe--
		if ks.tmpl() != nil && ks.idleAt(now) {
			c.drop(name, ks)
			dropped = true
		}
	}
	if dropped {
		c.dropFloor = max(c.dropFloor, now.UnixNano(), c.last)
	}
}

// drop forgets the key made on demand name. It requires that c.mu is
// held.
func (c *Counter) drop(name string, ks *keyState) {
	delete(c.keys, name)
	ks.tmpl().live--
	c.live--
}

// cfgOrNil returns the key's configuration, or nil for no key.
func (ks *keyState) cfgOrNil() *KeyConfig {
	if ks == nil {
		return nil
	}
	return ks.cfg()
}

// idleAt reports whether every token the key's limits granted is back at
// now (or at the latest instant a take was made at, if later), and, in a
// federation, it holds no state the members act on (see fedKey.idle): a
// new key would decide as this one from then on.
func (ks *keyState) idleAt(now time.Time) bool {
	k, used := ks.alg.PeekAt(now)
	if used != 0 || ks.ext != nil && ks.ext.fed != nil && !ks.ext.fed.idle(k) {
		return false
	}
	for _, a := range ks.more() {
		if _, used := a.PeekAt(now); used != 0 {
			return false
		}
	}
	return true
}

// SweepAt drops the keys made on demand that are idle at now (every token
// back) and for which busy, if not nil, reports false (the server reports
// true for a key with held waits), and the retired keys (see Reconfigure)
// idle at now, and returns how many it dropped. A key
// made again later decides no earlier than the latest instant any take was
// made at before the sweep, so dropping it never grants back what it
// granted. It takes time in proportion to the live keys, and holds c's
// lock meanwhile: busy must not call c.
func (c *Counter) SweepAt(now time.Time, busy func(key string) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	dropped := 0
	for name, ks := range c.keys {
		if ks.tmpl() == nil || !ks.idleAt(now) || (busy != nil && busy(name)) {
			continue
		}
		c.drop(name, ks)
		dropped++
	}
	for name, r := range c.retired {
		if c.dropRetired(now, name, r) {
			dropped++
		}
	}
	if dropped > 0 {
		c.dropFloor = max(c.dropFloor, now.UnixNano(), c.last)
	}
	c.shrink()
	return dropped
}

// LiveKeys returns the number of keys made on demand that are live.
func (c *Counter) LiveKeys() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// TemplateUsage is one template and the count of keys made from it that
// are live.
type TemplateUsage struct {
	KeyConfig
	Live int
}

// Templates returns the templates, sorted by name, with their live keys.
func (c *Counter) Templates() []TemplateUsage {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []TemplateUsage
	for _, n := range c.names {
		for _, t := range c.tmpls {
			if t.cfg.Name == n {
				out = append(out, TemplateUsage{KeyConfig: t.cfg, Live: t.live})
			}
		}
	}
	return out
}

// remake moves the live keys of old, the keys before a reload, to the
// configuration just loaded: a key that is now configured has become that
// key, with its state (Reconfigure); a key that still matches a template
// follows that template's limits as a configured key follows its own; a
// key no template matches any more leaves the key map (Reconfigure
// retires it unless idle). It requires that c.mu is held.
func (c *Counter) remake(old map[string]*keyState) {
	c.live = 0
	for name, o := range old {
		if o.tmpl() == nil || c.keys[name] != nil {
			continue
		}
		t := c.match(name)
		if t == nil {
			continue
		}
		ks := c.newKey(&t.keySource)
		c.carry(o, ks)
		c.attach(name, ks) // when carry kept no federation state, or a configured key's
		c.keys[name] = ks
		t.live++
		c.live++
	}
	c.liveHigh = c.live
}
