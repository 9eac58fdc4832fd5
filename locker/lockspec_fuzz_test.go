package locker_test

import (
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// FuzzParseLockSpec: lockerd's --lock values never crash the parser, and
// every spec it accepts is valid for a LockTable and reads back the same
// from its String form.
func FuzzParseLockSpec(f *testing.F) {
	for _, s := range []string{"licence=4", "job:*=2", "a=1000000", "*=2", "a=0", "a=", "=3", "a*b=2", "a=1=2", "a= 2", "a=+2", "a=0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := locker.ParseLockSpec(spec)
		if err != nil {
			return
		}
		if s.Capacity < 1 || s.Capacity > locker.MaxLockCapacity || s.Name == "" {
			t.Fatalf("ParseLockSpec(%q) = %+v", spec, s)
		}
		back, err := locker.ParseLockSpec(s.String())
		if err != nil || back != s {
			t.Fatalf("ParseLockSpec(%q) = %+v; its String %q reads back as %+v, %v", spec, s, s.String(), back, err)
		}
		if _, err := locker.NewLockTable(locker.LockTableConfig{Locks: []locker.LockSpec{s}}, time.Time{}); err != nil {
			t.Fatalf("ParseLockSpec(%q) = %+v, which NewLockTable refuses: %v", spec, s, err)
		}
	})
}
