package locker

import (
	"errors"
	"fmt"
	"math"
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
	if err := ValidKeyName(k.Name); err != nil {
		return err
	}
	if k.Limit < 1 || k.Limit > MaxLimit {
		return fmt.Errorf("locker: key %q: limit %d out of range 1..%d", k.Name, k.Limit, MaxLimit)
	}
	if k.Window < MinWindow || k.Window > MaxWindow {
		return fmt.Errorf("locker: key %q: window %s out of range %s..%s", k.Name, k.Window, MinWindow, MaxWindow)
	}
	if k.Window%time.Millisecond != 0 {
		return fmt.Errorf("locker: key %q: window %s is not a whole number of milliseconds", k.Name, k.Window)
	}
	return nil
}

// ValidKeyName reports why name is not a valid key name, or nil. A key name
// is 1 to MaxKeyLen characters of A-Z a-z 0-9 and _ . : / -.
func ValidKeyName(name string) error {
	if len(name) == 0 {
		return fmt.Errorf("locker: empty key name")
	}
	if len(name) > MaxKeyLen {
		return fmt.Errorf("locker: key name longer than %d characters", MaxKeyLen)
	}
	for i := 0; i < len(name); i++ {
		if !keyChar(name[i]) {
			return fmt.Errorf("locker: key name %q: character %q not allowed (use A-Za-z0-9_.:/-)", name, name[i])
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

// Algorithm decides, for one key, whether n tokens may be taken at time now.
// The fixed window counter is the only implementation today; the interface
// exists so that other algorithms (a sliding log, a lease semaphore) can be
// added per key without touching the server loop or the wire protocol.
//
// Implementations are not safe for concurrent use: the Counter that holds
// them serialises access.
type Algorithm interface {
	// TakeAt grants n tokens at time now, or refuses them. n is in
	// 1..Limit; the caller has checked that. Callers on several
	// goroutines read their clocks before they are serialised, so now
	// may be a little before an earlier call's: an algorithm must not
	// give back what it granted because of that.
	TakeAt(now time.Time, n int64) Decision
	// PeekAt returns how the key stands at now without taking anything:
	// the window index and the tokens granted in it.
	PeekAt(now time.Time) (window, granted int64)
}

// FixedWindow is the fixed-window counter: windows of length Window aligned
// to the Unix epoch, at most Limit tokens granted in each.
//
// The zero value is not usable; use NewFixedWindow. A FixedWindow is not
// safe for concurrent use.
type FixedWindow struct {
	limit   int64
	window  int64 // nanoseconds
	current int64 // window index the count belongs to
	granted int64 // tokens granted in window current
	// extra counts tokens granted elsewhere in window current (by
	// federated peers); it reduces what is left here.
	extra int64
	// fed is the federation state (federation.go); nil, and free, when
	// the counter is not federated.
	fed *fedKey
}

// NewFixedWindow returns a fixed-window counter for limit tokens per window.
func NewFixedWindow(limit int64, window time.Duration) *FixedWindow {
	return &FixedWindow{limit: limit, window: int64(window), current: noWindow}
}

// MaxStale is how far before a counter's current window an instant may
// be and still count in it, as a stale clock reading rather than a clock
// stepped back; see FixedWindow.
const MaxStale = time.Second

// noWindow is the current window of a FixedWindow that has not decided
// anything yet; no instant falls in it.
const noWindow = math.MinInt64

// WindowIndex returns the index k of the epoch-aligned window of length w
// that contains t, so that t is in [k·w, (k+1)·w).
func WindowIndex(t time.Time, w time.Duration) int64 {
	ns := t.UnixNano()
	k := ns / int64(w)
	if ns < 0 && ns%int64(w) != 0 {
		k-- // floor, not truncation, before the epoch
	}
	return k
}

// roll moves the counter to the window containing ns.
// It returns the window index and the nanoseconds left in that window.
//
// An instant a little before the current window (a clock read by another
// goroutine just before this one moved on, as a status or metrics reader
// does) counts in the current window: going back would forget the
// window's grants and hand its tokens out a second time when the clock
// moves on again. "A little" is one window, or MaxStale for short
// windows. An instant further back is a wall clock stepped back: the
// counter starts over where it lands, since staying put would hold the
// key to one window's tokens until the clock caught up (for a 1s key and
// a clock set back an hour, one window's tokens for the whole hour).
func (f *FixedWindow) roll(ns int64) (k, left int64) {
	k = ns / f.window
	if ns < 0 && ns%f.window != 0 {
		k--
	}
	if k < f.current && (f.current-k == 1 || f.current-k <= int64(MaxStale)/f.window) {
		// Reset and RetryAfter are then at most a window: the caller's
		// real now is at least the start of the current window.
		k, ns = f.current, f.current*f.window
	}
	if k != f.current {
		if f.fed != nil {
			f.fed.leave(f, k)
		}
		f.current = k
		f.granted = 0
		f.extra = 0
		if f.fed != nil {
			f.fed.enter(f, k)
		}
	}
	return k, (k+1)*f.window - ns
}

// TakeAt implements Algorithm.
func (f *FixedWindow) TakeAt(now time.Time, n int64) Decision {
	k, left := f.roll(now.UnixNano())
	if f.fed != nil {
		return f.fed.take(f, k, left, n)
	}
	used := f.granted + f.extra
	if used+n <= f.limit {
		f.granted += n
		return Decision{OK: true, Remaining: f.limit - used - n, Reset: time.Duration(left), Window: k}
	}
	return Decision{Reset: time.Duration(left), RetryAfter: time.Duration(left), Window: k}
}

// PeekAt implements Algorithm.
func (f *FixedWindow) PeekAt(now time.Time) (window, granted int64) {
	k, _ := f.roll(now.UnixNano())
	return k, f.granted + f.extra
}

type limitSetter interface{ SetLimit(limit int64) }

// SetLimit changes the limit; tokens already granted in the current window
// stay granted.
func (f *FixedWindow) SetLimit(limit int64) { f.limit = limit }

// SetExtraAt records that extra tokens have been granted elsewhere in
// window k. It has no effect unless k is the window that contains now.
func (f *FixedWindow) SetExtraAt(now time.Time, k, extra int64) {
	cur, _ := f.roll(now.UnixNano())
	if k == cur && extra >= 0 {
		f.extra = extra
	}
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

type keyState struct {
	cfg KeyConfig
	alg Algorithm
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
	ks := c.keys[key]
	if ks == nil {
		return Decision{}, ErrUnknownKey
	}
	if n < 1 || n > ks.cfg.Limit {
		return Decision{}, ErrBadCount
	}
	return ks.alg.TakeAt(now, n), nil
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

// takeBytes looks key up and, if take is set, takes n tokens of it, under
// one lock: the server's path for each request. The map lookup with
// string(key) does not allocate. It returns ErrUnknownKey, or the key's
// configuration with ErrBadCount for n outside 1..limit.
func (c *Counter) takeBytes(now time.Time, key []byte, n int64, take bool) (KeyConfig, Decision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks := c.keys[string(key)]
	if ks == nil {
		return KeyConfig{}, Decision{}, ErrUnknownKey
	}
	if n < 1 || n > ks.cfg.Limit {
		return ks.cfg, Decision{}, ErrBadCount
	}
	if !take {
		return ks.cfg, Decision{}, nil
	}
	return ks.cfg, ks.alg.TakeAt(now, n), nil
}

// KeyStats is a snapshot of one key.
type KeyStats struct {
	KeyConfig
	// WindowIndex is the index of the current window.
	WindowIndex int64
	// Granted is the number of tokens granted in the current window,
	// including those granted by federated peers that this counter knows of.
	Granted int64
}

// SnapshotAt returns every key's state at now, sorted by name.
func (c *Counter) SnapshotAt(now time.Time) []KeyStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]KeyStats, 0, len(c.names))
	for _, n := range c.names {
		ks := c.keys[n]
		k, g := ks.alg.PeekAt(now)
		out = append(out, KeyStats{KeyConfig: ks.cfg, WindowIndex: k, Granted: g})
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
// starts afresh. On error the old configuration stays.
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
		if l, ok := old.alg.(limitSetter); ok {
			l.SetLimit(ks.cfg.Limit)
			ks.alg = old.alg
		}
	}
	c.attachFederation(m)
	c.keys, c.names = m, names
	return nil
}

// SetExtraAt records that extra tokens of key were granted by others (for
// example federated peers) in window k. It has no effect unless k is the
// window that contains now, or for an unknown key.
func (c *Counter) SetExtraAt(now time.Time, key string, k, extra int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ks := c.keys[key]; ks != nil {
		if e, ok := ks.alg.(interface{ SetExtraAt(time.Time, int64, int64) }); ok {
			e.SetExtraAt(now, k, extra)
		}
	}
}
