package locker

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// KeyConfig describes one rate-limited key: at most Limit tokens in each
// Window, counted by Algorithm. A multi-limit key carries further limits in
// More; a grant then takes from every limit or from none.
//
// KeyConfig values are comparable with ==.
type KeyConfig struct {
	Name   string
	Limit  int64
	Window time.Duration
	// algo counts the tokens: AlgFixed (or empty), AlgSliding or
	// AlgGCRA.
	Algorithm AlgorithmName
	// Burst is, for AlgGCRA only, the most tokens available at once; zero
	// means Limit.
	Burst int64
	// More holds the further limits of a multi-limit key, in order; the
	// unused ones are zero and come last.
	More [MaxParts - 1]Part
}

// AlgorithmName names the algorithm of one limit of a key.
type AlgorithmName string

// The algorithms a key may use (see the Algorithms section of
// PROTOCOL.md).
const (
	// AlgFixed is the fixed window (fixedWindow), the default: the
	// empty name means it too.
	AlgFixed AlgorithmName = "fixed"
	// AlgSliding is the exact sliding window (slidingWindow).
	AlgSliding AlgorithmName = "sliding"
	// AlgGCRA is the generic cell rate algorithm (GCRA).
	AlgGCRA AlgorithmName = "gcra"
)

// MaxParts is the most limits one key may carry.
const MaxParts = 4

// Part is one limit of a key: at most Limit tokens per Window, counted by
// algo, with Burst for AlgGCRA (zero means Limit). The zero Part is
// no limit: it ends KeyConfig.More.
type Part struct {
	Limit     int64
	Window    time.Duration
	Algorithm AlgorithmName
	Burst     int64
}

// String formats the part as LIMIT/WINDOW[/ALGORITHM[:BURST]].
func (p Part) String() string {
	s := fmt.Sprintf("%d/%s", p.Limit, p.Window)
	if a := p.alg(); a != AlgFixed {
		s += "/" + string(a)
	}
	if p.Burst != 0 {
		s += ":" + strconv.FormatInt(p.Burst, 10)
	}
	return s
}

// alg returns the part's algorithm, AlgFixed for the empty name.
func (p Part) alg() AlgorithmName {
	if p.Algorithm == "" {
		return AlgFixed
	}
	return p.Algorithm
}

// maxN returns the most tokens one request may ask of the part.
func (p Part) maxN() int64 {
	if p.alg() == AlgGCRA && p.Burst != 0 {
		return p.Burst
	}
	return p.Limit
}

func (p Part) validate(name string) error {
	if p.Limit < 1 || p.Limit > MaxLimit {
		return fmt.Errorf("key %q: limit %d out of range 1..%d", name, p.Limit, MaxLimit)
	}
	if p.Window < MinWindow || p.Window > MaxWindow {
		return fmt.Errorf("key %q: window %s out of range %s..%s", name, p.Window, MinWindow, MaxWindow)
	}
	if p.Window%time.Millisecond != 0 {
		return fmt.Errorf("key %q: window %s is not a whole number of milliseconds", name, p.Window)
	}
	switch p.alg() {
	case AlgFixed:
	case AlgSliding:
		if p.Limit > MaxSlidingLimit {
			return fmt.Errorf("key %q: sliding limit %d above %d (a sliding key keeps the instant of every token of its limit: use gcra or fixed for more)", name, p.Limit, MaxSlidingLimit)
		}
	case AlgGCRA:
		if p.Burst < 0 || p.Burst > p.Limit {
			return fmt.Errorf("key %q: gcra burst %d out of range 1..%d (the limit)", name, p.Burst, p.Limit)
		}
	default:
		return fmt.Errorf("key %q: unknown algorithm %q (want fixed, sliding or gcra)", name, p.Algorithm)
	}
	if p.Burst != 0 && p.alg() != AlgGCRA {
		return fmt.Errorf("key %q: a burst is only for gcra, not %s", name, p.alg())
	}
	return nil
}

// Parts returns the key's limits: the first one (Limit, Window, Algorithm,
// Burst) and those in More.
func (k KeyConfig) Parts() []Part {
	out := []Part{k.first()}
	for _, p := range k.More {
		if p == (Part{}) {
			break
		}
		out = append(out, p)
	}
	return out
}

func (k KeyConfig) first() Part {
	return Part{Limit: k.Limit, Window: k.Window, Algorithm: k.Algorithm, Burst: k.Burst}
}

// plain reports whether k is a single fixed-window limit: the only kind a
// federation can trade tokens of between members.
func (k KeyConfig) plain() bool {
	return k.More[0] == (Part{}) && k.first().alg() == AlgFixed
}

// maxN returns the most tokens one request may ask of k: the least of its
// parts' limits (or bursts).
func (k KeyConfig) maxN() int64 {
	n := k.first().maxN()
	for _, p := range k.More {
		if p != (Part{}) {
			n = min(n, p.maxN())
		}
	}
	return n
}

// String formats the key as NAME=PART[+PART...], the form ParseKeySpec
// reads: api=5/800ms, api=5/1s/sliding, api=10/1s/gcra:1,
// github=10/1s+5000/1h0m0s.
func (k KeyConfig) String() string {
	var b strings.Builder
	b.WriteString(k.Name)
	b.WriteByte('=')
	for i, p := range k.Parts() {
		if i > 0 {
			b.WriteByte('+')
		}
		b.WriteString(p.String())
	}
	return b.String()
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
	if err := k.validName(); err != nil {
		return err
	}
	if err := k.first().validate(k.Name); err != nil {
		return err
	}
	end := false
	for _, p := range k.More {
		if p == (Part{}) {
			end = true
			continue
		}
		if end {
			return fmt.Errorf("key %q: a zero limit in More before a set one", k.Name)
		}
		if err := p.validate(k.Name); err != nil {
			return err
		}
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
