package locker

import (
	"fmt"
	"strconv"
	"strings"
)

const errLockSpecShape = "want NAME=CAPACITY or PREFIX*=CAPACITY, e.g. licence=4 or job:*=2"

// LockSpec gives a capacity to a lock name, or to every name that starts
// with Prefix when Template is set (written PREFIX*).
type LockSpec struct {
	Name     string
	Template bool
	Capacity int
}

// String formats the spec as ParseLockSpec reads it.
func (s LockSpec) String() string {
	if s.Template {
		return s.Name + "*=" + strconv.Itoa(s.Capacity)
	}
	return s.Name + "=" + strconv.Itoa(s.Capacity)
}

// ParseLockSpec parses NAME=CAPACITY (a semaphore of CAPACITY holders
// named NAME) or PREFIX*=CAPACITY (every lock whose name starts with
// PREFIX). The name or prefix uses key name characters; the capacity is
// 1 to maxLockCapacity.
func ParseLockSpec(spec string) (LockSpec, error) {
	name, capText, ok := strings.Cut(spec, "=")
	if !ok {
		return LockSpec{}, fmt.Errorf("locker: lock spec %q: %s", spec, errLockSpecShape)
	}
	var s LockSpec
	if p, found := strings.CutSuffix(name, "*"); found {
		s.Template = true
		name = p
	}
	if s.Template && name == "" {
		return LockSpec{}, fmt.Errorf("locker: lock spec %q: a template needs a prefix before *", spec)
	}
	if err := validKeyName(name); err != nil {
		return LockSpec{}, fmt.Errorf("locker: lock spec %q: %w", spec, err)
	}
	c, err := strconv.Atoi(capText)
	if err != nil || c < 1 || c > maxLockCapacity {
		return LockSpec{}, fmt.Errorf("locker: lock spec %q: capacity %q is not an integer from 1 to %d", spec, capText, maxLockCapacity)
	}
	s.Name, s.Capacity = name, c
	return s, nil
}
