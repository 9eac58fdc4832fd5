package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// TestLockFlags: the lock flags, from the command line, the environment
// and a config file, and their refusals.
func TestLockFlags(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "lockerd.conf")
	if err := os.WriteFile(conf, []byte("lock = licence=4\nlock = job:*=2\nlock-max-ttl = 1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want locker.LockTableConfig
		err  string
	}{
		{name: "defaults", want: locker.LockTableConfig{DefaultTTL: locker.DefaultLockTTL, MaxTTL: locker.DefaultMaxLockTTL,
			MaxWait: locker.DefaultMaxLockWait, MaxLocks: locker.DefaultMaxLocks, MaxWaiters: locker.DefaultMaxLockWaiters, MaxSlots: locker.DefaultMaxLockSlots}},
		{name: "flags", args: []string{"--lock", "licence=4", "--lock", "job:*=2", "--lock-ttl", "5s", "--lock-max-ttl", "1m", "--lock-max-wait", "10s",
			"--lock-grace", "2m", "--max-locks", "10", "--max-lock-waiters", "3", "--max-lock-slots", "20"},
			want: locker.LockTableConfig{Locks: []locker.LockSpec{{Name: "licence", Capacity: 4}, {Name: "job:", Template: true, Capacity: 2}},
				DefaultTTL: 5 * time.Second, MaxTTL: time.Minute, MaxWait: 10 * time.Second, Grace: 2 * time.Minute, MaxLocks: 10, MaxWaiters: 3, MaxSlots: 20}},
		{name: "no grace on a first start", args: []string{"--lock-grace=0", "--lock-max-ttl", "10s"},
			want: locker.LockTableConfig{DefaultTTL: 10 * time.Second, MaxTTL: 10 * time.Second, NoGrace: true,
				MaxWait: locker.DefaultMaxLockWait, MaxLocks: locker.DefaultMaxLocks, MaxWaiters: locker.DefaultMaxLockWaiters, MaxSlots: locker.DefaultMaxLockSlots}},
		{name: "environment", env: map[string]string{"LOCKER_LOCK": "a=2,b*=3", "LOCKER_LOCK_MAX_TTL": "1m"},
			want: locker.LockTableConfig{Locks: []locker.LockSpec{{Name: "a", Capacity: 2}, {Name: "b", Template: true, Capacity: 3}},
				DefaultTTL: locker.DefaultLockTTL, MaxTTL: time.Minute,
				MaxWait: locker.DefaultMaxLockWait, MaxLocks: locker.DefaultMaxLocks, MaxWaiters: locker.DefaultMaxLockWaiters, MaxSlots: locker.DefaultMaxLockSlots}},
		{name: "config file", args: []string{"--config", conf},
			want: locker.LockTableConfig{Locks: []locker.LockSpec{{Name: "licence", Capacity: 4}, {Name: "job:", Template: true, Capacity: 2}},
				DefaultTTL: locker.DefaultLockTTL, MaxTTL: time.Minute,
				MaxWait: locker.DefaultMaxLockWait, MaxLocks: locker.DefaultMaxLocks, MaxWaiters: locker.DefaultMaxLockWaiters, MaxSlots: locker.DefaultMaxLockSlots}},
		{name: "bad spec", args: []string{"--lock", "licence"}, err: "--lock: locker: lock spec \"licence\""},
		{name: "zero capacity", args: []string{"--lock", "licence=0"}, err: "capacity \"0\""},
		{name: "twice", args: []string{"--lock", "a=1", "--lock", "a=2"}, err: "given twice"},
		{name: "ttl above max", args: []string{"--lock-ttl", "2m", "--lock-max-ttl", "1m"}, err: "--lock-ttl 2m0s"},
		{name: "max ttl too low", args: []string{"--lock-max-ttl", "1ms"}, err: "--lock-max-ttl 1ms"},
		{name: "negative grace", args: []string{"--lock-grace", "-5s"}, err: "--lock-grace -5s"},
		{name: "zero max wait", args: []string{"--lock-max-wait", "0"}, err: "--lock-max-wait"},
		{name: "zero max locks", args: []string{"--max-locks", "0"}, err: "--max-locks 0"},
		{name: "zero slots", args: []string{"--max-lock-slots", "0"}, err: "--max-lock-slots 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, e := range os.Environ() {
				if k, _, _ := strings.Cut(e, "="); strings.HasPrefix(k, envPrefix) {
					t.Setenv(k, "")
					os.Unsetenv(k)
				}
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			o, err := parseOptions(tc.args, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseOptions(%q): %v, want an error with %q", tc.args, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(o.locks.cfg, tc.want) {
				t.Fatalf("lock config\n %+v\nwant\n %+v", o.locks.cfg, tc.want)
			}
		})
	}
}

// TestFederatedLockerdRefusesLocks: a lockerd started with --publish
// answers lock requests with an error: locks are not shared between
// federated servers, so granting one would let two hold it.
func TestFederatedLockerdRefusesLocks(t *testing.T) {
	bind, pub := freeEndpoint(t), freeEndpoint(t)
	startLockerd(t, bind, "--bind", bind, "--publish", pub, "--peer", pub, "--metrics-addr=", "--lock-grace=0")
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{bind}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.TryLock(context.Background(), "nightly", locker.LockOptions{})
	var se *locker.ServerError
	if !errors.As(err, &se) || se.Msg != "locks are served by a single lockerd, not a federation" {
		t.Fatalf("TryLock on a federated lockerd: %v", err)
	}
}
