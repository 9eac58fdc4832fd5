package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

type options struct {
	d            time.Duration
	rounds       int
	systems      []string
	out          string
	lockerdBin   string
	echoBin      string
	lockerdFlags []string
	graceWait    time.Duration
	takeC        int
	sideC        int
	ttl          time.Duration
	redisBackoff time.Duration
	timeout      time.Duration
	dataDir      string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("lockcmp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var systems, lflags string
	fs.DurationVar(&o.d, "d", 3*time.Second, "duration of each measurement")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; figures are medians over them")
	fs.StringVar(&systems, "systems", strings.Join(allSystems, ","), "systems to measure, comma-separated")
	fs.StringVar(&o.out, "o", "", "also write the table and the raw runs (JSON lines) to FILE")
	fs.StringVar(&o.lockerdBin, "lockerd", "", "lockerd binary (default: go build ./cmd/lockerd of the enclosing repository)")
	fs.StringVar(&o.echoBin, "echo", "", "bench/echo binary (default: go build ./bench/echo of the enclosing repository)")
	fs.StringVar(&lflags, "lockerd-flags", "", "extra flags for lockerd, space-separated")
	fs.DurationVar(&o.graceWait, "grace-wait", 15*time.Second, "longest to wait for lockerd's restart grace period to end")
	fs.IntVar(&o.takeC, "take-c", 16, "goroutines taking from the rate-limited key")
	fs.IntVar(&o.sideC, "side-c", 16, "goroutines of lock (or take) traffic beside them")
	fs.DurationVar(&o.ttl, "ttl", 10*time.Second, "lease TTL (Redis PX, etcd session TTL, ZooKeeper session timeout, lockerd TTL)")
	fs.DurationVar(&o.redisBackoff, "redis-backoff", time.Millisecond, "Redis: mean pause before trying a taken lock again (jittered ±50%)")
	fs.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "where etcd and ZooKeeper keep their data (a temporary directory in it)")
	fs.DurationVar(&o.timeout, "timeout", 0, "bound on the whole run (default: from -d, -rounds and -systems, plus 3m)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(systems, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allSystems, s) {
			return o, fmt.Errorf("unknown system %q (want some of %s)", s, strings.Join(allSystems, ","))
		}
		if !slices.Contains(o.systems, s) {
			o.systems = append(o.systems, s)
		}
	}
	// Keep the round order fixed whatever the flag's order.
	slices.SortFunc(o.systems, func(a, b string) int { return slices.Index(allSystems, a) - slices.Index(allSystems, b) })
	o.lockerdFlags = strings.Fields(lflags)
	switch {
	case len(o.systems) == 0:
		return o, errors.New("no systems")
	case o.d <= 0 || o.rounds < 1 || o.takeC < 1 || o.sideC < 1 || o.redisBackoff <= 0:
		return o, errors.New("-d, -redis-backoff must be positive; -rounds, -take-c, -side-c at least 1")
	case o.ttl < time.Second:
		return o, errors.New("-ttl must be at least 1s (etcd leases are in seconds)")
	}
	if o.timeout <= 0 {
		runs := o.rounds * (len(o.systems)*len(scenarios) + 3 + 1)
		o.timeout = time.Duration(runs)*(o.d+5*time.Second) + 3*time.Minute
	}
	return o, nil
}

func defaultDataDir() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// bench is one run: its servers, clients and results.
