package main

import (
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/spf13/pflag"
)

// lockOptions are the flags of the lock table.
type lockOptions struct {
	specs      []string
	ttl        time.Duration
	maxTTL     time.Duration
	maxWait    time.Duration
	grace      time.Duration
	maxLocks   int
	maxWaiters int
	maxSlots   int

	// Derived by check.
	cfg locker.LockTableConfig
}

// addLockFlags defines the lock flags on fs.
func addLockFlags(fs *pflag.FlagSet, o *lockOptions) {
	fs.StringArrayVar(&o.specs, "lock", nil, "a lock's capacity as NAME=K, or PREFIX*=K for every name that starts with PREFIX (repeatable; others are mutexes)")
	fs.DurationVar(&o.ttl, "lock-ttl", locker.DefaultLockTTL, "lease of an acquisition that asks for none")
	fs.DurationVar(&o.maxTTL, "lock-max-ttl", locker.DefaultMaxLockTTL, "longest lease a client may ask for")
	fs.DurationVar(&o.maxWait, "lock-max-wait", locker.DefaultMaxLockWait, "longest an acquisition is held waiting")
	fs.DurationVar(&o.grace, "lock-grace", -1, "after a start, how long no lock is granted, so that no lease from before a restart can still be held; 0 only on a first start")
	fs.Lookup("lock-grace").DefValue = "--lock-max-ttl"
	fs.IntVar(&o.maxLocks, "max-locks", locker.DefaultMaxLocks, "live locks (held or waited for); beyond, acquisitions get an error")
	fs.IntVar(&o.maxWaiters, "max-lock-waiters", locker.DefaultMaxLockWaiters, "acquisitions queued per lock; beyond, busy at once")
	fs.IntVar(&o.maxSlots, "max-lock-slots", locker.DefaultMaxLockSlots, "holders and queued acquisitions of all locks together; beyond, an error")
}

// check validates the lock flags and derives the table's configuration.
// A default --lock-ttl above a lower --lock-max-ttl follows it down.
func (o *lockOptions) check(fs *pflag.FlagSet) error {
	if !fs.Changed("lock-ttl") && o.ttl > o.maxTTL {
		o.ttl = o.maxTTL
	}
	specs, err := o.parseSpecs()
	if err != nil {
		return err
	}
	if err := o.checkBounds(); err != nil {
		return err
	}
	cfg := locker.LockTableConfig{Locks: specs, DefaultTTL: o.ttl, MaxTTL: o.maxTTL, MaxWait: o.maxWait,
		MaxLocks: o.maxLocks, MaxWaiters: o.maxWaiters, MaxSlots: o.maxSlots}
	switch o.grace {
	case -1: // the default: the maximum TTL
	case 0:
		cfg.NoGrace = true
	default:
		cfg.Grace = o.grace
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("--lock: %w", err)
	}
	o.cfg = cfg
	return nil
}

// parseSpecs parses the --lock flags.
func (o *lockOptions) parseSpecs() ([]locker.LockSpec, error) {
	var specs []locker.LockSpec
	for _, s := range o.specs {
		spec, err := locker.ParseLockSpec(s)
		if err != nil {
			return nil, fmt.Errorf("--lock: %w", err)
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// checkBounds validates the lease, wait, grace and size bounds.
func (o *lockOptions) checkBounds() error {
	switch {
	case o.maxTTL < locker.MinLockTTL:
		return fmt.Errorf("--lock-max-ttl %s: want at least %s", o.maxTTL, locker.MinLockTTL)
	case o.ttl < locker.MinLockTTL || o.ttl > o.maxTTL:
		return fmt.Errorf("--lock-ttl %s: want %s to --lock-max-ttl (%s)", o.ttl, locker.MinLockTTL, o.maxTTL)
	case o.maxWait <= 0:
		return fmt.Errorf("--lock-max-wait %s: want a positive duration", o.maxWait)
	case o.grace < 0 && o.grace != -1:
		return fmt.Errorf("--lock-grace %s is negative", o.grace)
	case o.maxLocks < 1:
		return fmt.Errorf("--max-locks %d: want at least 1", o.maxLocks)
	case o.maxWaiters < 1:
		return fmt.Errorf("--max-lock-waiters %d: want at least 1", o.maxWaiters)
	case o.maxSlots < 1:
		return fmt.Errorf("--max-lock-slots %d: want at least 1", o.maxSlots)
	}
	return nil
}

// warnLockReload logs that lock settings changed by a reload wait for a
// restart: the lock table keeps the capacities and bounds it started
// with, so that no holder is cut off by a smaller capacity.
func warnLockReload(old, cur lockOptions, log *slog.Logger) {
	if !reflect.DeepEqual(old.cfg, cur.cfg) {
		log.Warn("reload does not change locks; restart lockerd to apply the --lock and lock bound settings")
	}
}
