package locker

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseKeySpec parses a key specification NAME=LIMIT/WINDOW, such as
// api=5/800ms or github=5000/1h. WINDOW is a Go duration. The result is
// validated: it returns an error naming the problem for a bad name, a
// limit that is not a positive integer up to MaxLimit, or a window outside
// MinWindow..MaxWindow.
func ParseKeySpec(spec string) (KeyConfig, error) {
	name, rest, ok := strings.Cut(spec, "=")
	if !ok {
		return KeyConfig{}, fmt.Errorf("locker: key spec %q: want NAME=LIMIT/WINDOW, e.g. api=5/800ms", spec)
	}
	if err := ValidKeyName(name); err != nil {
		return KeyConfig{}, fmt.Errorf("locker: key spec %q: %w", spec, unwrapPrefix(err))
	}
	limitText, windowText, ok := strings.Cut(rest, "/")
	if !ok {
		return KeyConfig{}, fmt.Errorf("locker: key spec %q: missing /WINDOW, e.g. %s=%s/1s", spec, name, rest)
	}
	limit, err := strconv.ParseInt(limitText, 10, 64)
	if err != nil || limit < 1 || limit > MaxLimit {
		return KeyConfig{}, fmt.Errorf("locker: key spec %q: limit %q is not an integer from 1 to %d", spec, limitText, MaxLimit)
	}
	window, err := time.ParseDuration(windowText)
	if err != nil {
		return KeyConfig{}, fmt.Errorf("locker: key spec %q: window %q is not a duration like 800ms or 1h", spec, windowText)
	}
	k := KeyConfig{Name: name, Limit: limit, Window: window}
	if err := k.Validate(); err != nil {
		return KeyConfig{}, fmt.Errorf("locker: key spec %q: %w", spec, unwrapPrefix(err))
	}
	return k, nil
}

// unwrapPrefix drops the package prefix of err's text, for nesting.
func unwrapPrefix(err error) error {
	return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "locker: "))
}
