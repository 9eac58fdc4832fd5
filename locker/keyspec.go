package locker

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseKeySpec parses a key specification NAME=PART[+PART...], where each
// PART is LIMIT/WINDOW[/ALGORITHM[:BURST]]: api=5/800ms, api=5/1s/sliding,
// api=10/1s/gcra:1 (evenly spaced), github=10/1s+5000/1h (two limits, a
// grant takes from both or neither). WINDOW is a Go duration; ALGORITHM is
// fixed (the default), sliding or gcra; BURST, for gcra only, is the most
// tokens available at once (default LIMIT). A key has at most MaxParts
// limits. The result is validated: it returns an error naming the problem
// for a bad name, a limit that is not a positive integer up to MaxLimit
// (MaxSlidingLimit for sliding), a window outside MinWindow..MaxWindow, an
// unknown algorithm or a burst outside 1..LIMIT.
func ParseKeySpec(spec string) (KeyConfig, error) {
	name, rest, ok := strings.Cut(spec, "=")
	if !ok {
		return KeyConfig{}, fmt.Errorf("locker: key spec %q: want NAME=LIMIT/WINDOW, e.g. api=5/800ms", spec)
	}
	k := KeyConfig{Name: name}
	if err := k.validName(); err != nil {
		return KeyConfig{}, fmt.Errorf("locker: key spec %q: %w", spec, err)
	}
	for i := 0; ; i++ {
		text, more, _ := strings.Cut(rest, "+")
		if i == MaxParts {
			return KeyConfig{}, fmt.Errorf("locker: key spec %q: more than %d limits", spec, MaxParts)
		}
		p, err := parsePart(name, text)
		if err != nil {
			return KeyConfig{}, fmt.Errorf("locker: key spec %q: %w", spec, err)
		}
		if i == 0 {
			k.Limit, k.Window, k.Algorithm, k.Burst = p.Limit, p.Window, p.Algorithm, p.Burst
		} else {
			k.More[i-1] = p
		}
		if more == "" && !strings.HasSuffix(rest, "+") {
			break
		}
		rest = more
	}
	if err := k.validate(); err != nil {
		return KeyConfig{}, fmt.Errorf("locker: key spec %q: %w", spec, err)
	}
	return k, nil
}

// parsePart parses LIMIT/WINDOW[/ALGORITHM[:BURST]] of key name. The fixed
// algorithm is returned as the empty name, so that a spec that names it
// and one that does not give equal configurations.
func parsePart(name, text string) (Part, error) {
	limitText, rest, ok := strings.Cut(text, "/")
	if !ok {
		return Part{}, fmt.Errorf("missing /WINDOW, e.g. %s=%s/1s", name, text)
	}
	limit, err := strconv.ParseInt(limitText, 10, 64)
	if err != nil || limit < 1 || limit > MaxLimit {
		return Part{}, fmt.Errorf("limit %q is not an integer from 1 to %d", limitText, MaxLimit)
	}
	windowText, algText, hasAlg := strings.Cut(rest, "/")
	window, err := time.ParseDuration(windowText)
	if err != nil {
		return Part{}, fmt.Errorf("window %q is not a duration like 800ms or 1h", windowText)
	}
	p := Part{Limit: limit, Window: window}
	if !hasAlg {
		return p, nil
	}
	alg, burstText, hasBurst := strings.Cut(algText, ":")
	switch AlgorithmName(alg) {
	case AlgFixed:
	case AlgSliding, AlgGCRA:
		p.Algorithm = AlgorithmName(alg)
	default:
		return Part{}, fmt.Errorf("algorithm %q: want fixed, sliding or gcra", alg)
	}
	if hasBurst {
		if p.Algorithm != AlgGCRA {
			return Part{}, fmt.Errorf("burst %q: only gcra takes a burst", burstText)
		}
		b, err := strconv.ParseInt(burstText, 10, 64)
		if err != nil || b < 1 || b > limit {
			return Part{}, fmt.Errorf("gcra burst %q is not an integer from 1 to %d (the limit)", burstText, limit)
		}
		p.Burst = b
	}
	return p, nil
}
