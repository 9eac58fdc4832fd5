package locker

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Limits on key configuration.
const (
	// MinWindow is the shortest window a key may have.
	MinWindow = time.Millisecond
	// MaxWindow is the longest window a key may have.
	MaxWindow = 24 * time.Hour
	// MaxLimit is the largest number of grants per window a key may have.
	MaxLimit = 1_000_000_000
	// MaxKeyLen is the longest key name, in bytes.
	MaxKeyLen = 128
	// DefaultKey is the key that always exists and that legacy requests use.
	DefaultKey = "default"
)

// KeyConfig describes one rate-limited key: at most Limit tokens are granted
// in each window of length Window.
type KeyConfig struct {
	Name   string
	Limit  int64
	Window time.Duration
}

// String formats the key as NAME=LIMIT/WINDOW, the form ParseKeySpec reads.
func (k KeyConfig) String() string {
	return fmt.Sprintf("%s=%d/%s", k.Name, k.Limit, k.Window)
}

// Validate reports why k is not a usable key configuration, or nil.
func (k KeyConfig) Validate() error {
	if err := k.validate(); err != nil {
		return fmt.Errorf("locker: %w", err)
	}
	return nil
}

// validate is Validate without the package prefix, for errors that nest
// it.
func (k KeyConfig) validate() error {
	if err := validKeyName(k.Name); err != nil {
		return err
	}
	if k.Limit < 1 || k.Limit > MaxLimit {
		return fmt.Errorf("key %q: limit %d out of range 1..%d", k.Name, k.Limit, MaxLimit)
	}
	if k.Window < MinWindow || k.Window > MaxWindow {
		return fmt.Errorf("key %q: window %s out of range %s..%s", k.Name, k.Window, MinWindow, MaxWindow)
	}
	if k.Window%time.Millisecond != 0 {
		return fmt.Errorf("key %q: window %s is not a whole number of milliseconds", k.Name, k.Window)
	}
	return nil
}

// ValidKeyName reports why name is not a valid key name, or nil. A key name
// is 1 to MaxKeyLen characters of A-Z a-z 0-9 and _ . : / -.
func ValidKeyName(name string) error {
	if err := validKeyName(name); err != nil {
		return fmt.Errorf("locker: %w", err)
	}
	return nil
}

// validKeyName is ValidKeyName without the package prefix, for errors
// that nest it.
func validKeyName(name string) error {
	if len(name) == 0 {
		return errors.New("empty key name")
	}
	if len(name) > MaxKeyLen {
		return fmt.Errorf("key name longer than %d characters", MaxKeyLen)
	}
	for i := 0; i < len(name); i++ {
		if !keyChar(name[i]) {
			return fmt.Errorf("key name %q: character %q not allowed (use A-Za-z0-9_.:/-)", name, name[i])
		}
	}
	return nil
}

func keyChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == '_', c == '.', c == ':', c == '/', c == '-':
		return true
	}
	return false
}

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
	mu   sync.Mutex
	keys map[string]*keyState
	// names is the sorted list of key names, for stable reports.
	names []string
	// fed, when not nil, is attached to every key (federation.go).
	fed *fedConfig
}

// keyState is one configured key. It is guarded by the Counter's mutex.
type keyState struct {
	cfg KeyConfig
	alg Algorithm
	// fed is the federation state (federation.go); nil, and free, when
	// the counter is not federated.
	fed *fedKey
}

// take takes n tokens of the key at now; n is in 1..cfg.Limit.
func (ks *keyState) take(now time.Time, n int64) Decision {
	if ks.fed != nil {
		return ks.fed.take(ks, now, n)
	}
	return ks.alg.TakeAt(now, n)
}

// peek returns the window a take at now would count in and the tokens
// granted in it, here and, as far as this counter knows, by federated
// peers. It moves nothing.
func (ks *keyState) peek(now time.Time) (window, granted int64) {
	k, g := ks.alg.PeekAt(now)
	if ks.fed != nil {
		g += ks.fed.remote(k)
	}
	return k, g
}

// newAlgorithm returns the algorithm for k. Every key uses the fixed window
// today; a per-key choice would be made here.
func newAlgorithm(k KeyConfig) Algorithm {
	return NewFixedWindow(k.Limit, k.Window)
}

// NewCounter returns a Counter for keys. The key DefaultKey is added with
// DefaultLimit and DefaultWindow when keys do not name it. It returns an
// error for an invalid or duplicate key.
func NewCounter(keys []KeyConfig) (*Counter, error) {
	m, names, err := buildKeys(keys)
	if err != nil {
		return nil, err
	}
	return &Counter{keys: m, names: names}, nil
}

func buildKeys(keys []KeyConfig) (map[string]*keyState, []string, error) {
	m := make(map[string]*keyState, len(keys)+1)
	for _, k := range keys {
		if err := k.Validate(); err != nil {
			return nil, nil, err
		}
		if _, dup := m[k.Name]; dup {
			return nil, nil, fmt.Errorf("locker: key %q configured twice", k.Name)
		}
		m[k.Name] = &keyState{cfg: k, alg: newAlgorithm(k)}
	}
	if _, ok := m[DefaultKey]; !ok {
		k := KeyConfig{Name: DefaultKey, Limit: DefaultLimit, Window: DefaultWindow}
		m[DefaultKey] = &keyState{cfg: k, alg: newAlgorithm(k)}
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return m, names, nil
}

// TakeAt takes n tokens of key at time now. It returns ErrUnknownKey for a
// key that is not configured and ErrBadCount for n outside 1..limit.
func (c *Counter) TakeAt(now time.Time, key string, n int64) (Decision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, d, err := decide(c.keys[key], now, n, true)
	return d, err
}

// Key returns the configuration of key and whether it exists.
func (c *Counter) Key(key string) (KeyConfig, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks := c.keys[key]
	if ks == nil {
		return KeyConfig{}, false
	}
	return ks.cfg, true
}

// takeBytes is TakeAt for a key in bytes, that only looks the key up and
// checks n unless take is set, under one lock: the server's path for each
// request. The map lookup with string(key) does not allocate.
func (c *Counter) takeBytes(now time.Time, key []byte, n int64, take bool) (KeyConfig, Decision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return decide(c.keys[string(key)], now, n, take)
}

// decide checks a request for n tokens of ks (nil for an unknown key) and,
// if take is set, takes them. It returns ErrUnknownKey, or the key's
// configuration with ErrBadCount for n outside 1..limit. It requires that
// the Counter's mutex is held.
func decide(ks *keyState, now time.Time, n int64, take bool) (KeyConfig, Decision, error) {
	if ks == nil {
		return KeyConfig{}, Decision{}, ErrUnknownKey
	}
	if n < 1 || n > ks.cfg.Limit {
		return ks.cfg, Decision{}, ErrBadCount
	}
	if !take {
		return ks.cfg, Decision{}, nil
	}
	return ks.cfg, ks.take(now, n), nil
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
}

// SnapshotAt returns every key's state at now, sorted by name. It moves no
// key's window: an instant before a key's current window reports that
// window (see Algorithm).
func (c *Counter) SnapshotAt(now time.Time) []KeyUsage {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]KeyUsage, 0, len(c.names))
	for _, n := range c.names {
		ks := c.keys[n]
		k, g := ks.peek(now)
		out = append(out, KeyUsage{KeyConfig: ks.cfg, WindowIndex: k, Granted: g})
	}
	return out
}

// Keys returns the configured keys, sorted by name.
func (c *Counter) Keys() []KeyConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]KeyConfig, 0, len(c.names))
	for _, n := range c.names {
		out = append(out, c.keys[n].cfg)
	}
	return out
}

// Reconfigure replaces the key set with keys. Keys that keep their name
// and window keep the counts of the current window, so a reload does not
// hand out a window's tokens twice; a key whose window length changes
// starts afresh. A new limit takes effect at once, in the current window
// too: tokens granted stay granted, and after a lower limit the window
// grants at most max(0, new limit - granted) more. In a federation the
// member's share of the current window changes with it (see
// FederationConfig). On error the old configuration stays.
func (c *Counter) Reconfigure(keys []KeyConfig) error {
	m, names, err := buildKeys(keys)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, ks := range m {
		old := c.keys[name]
		if old == nil || old.cfg.Window != ks.cfg.Window {
			continue
		}
		old.alg.SetLimit(ks.cfg.Limit)
		ks.alg, ks.fed = old.alg, old.fed
		if ks.fed != nil && ks.cfg.Limit < old.cfg.Limit {
			ks.fed.lowered()
		}
	}
	c.attachFederation(m)
	c.keys, c.names = m, names
	return nil
}
