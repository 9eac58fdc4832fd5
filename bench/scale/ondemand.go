package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// onDemandKeys starts lockerd with the template tenant:*, makes
// o.liveKeys keys of it by taking one token of each (tenant:0,
// tenant:1, ...), and measures the RSS per live key against the same
// lockerd before any key was made.
func onDemandKeys(ctx context.Context, o options, t *table) error {
	n := o.liveKeys
	logf(o, "keys made on demand: %d", n)
	// A window long enough that no key is idle, and so dropped, before
	// the RSS is read.
	p, err := startLockerd(o, "ondemand", "--key", "tenant:*=1000/1h", "--max-keys", strconv.Itoa(n+1),
		"--metrics-addr", "")
	if err != nil {
		return err
	}
	defer p.stop()
	if err := pipelined(p.ep, 1, 1, func(int) string { return "take tenant:warmup 1" }); err != nil {
		return err
	}
	base, err := p.rss()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := pipelined(p.ep, n, 256, func(i int) string { return "take tenant:" + strconv.Itoa(i) + " 1" }); err != nil {
		return err
	}
	made := time.Since(t0)
	live, err := liveOf(p.ep, "tenant:*")
	if err != nil {
		return err
	}
	if live < int64(n) {
		return fmt.Errorf("keys made on demand: %d live, want %d", live, n)
	}
	rss, err := p.rss()
	if err != nil {
		return err
	}
	t.row(fmt.Sprintf("keys made on demand, %d live keys", n),
		fmt.Sprintf("%.0f bytes per live key (%s → %s); made at %.0f keys/s", float64(rss-base)/float64(n),
			mib(float64(base)), mib(float64(rss)), float64(n)/made.Seconds()),
		"≤ 256 bytes per key (the heap figure of `BenchmarkTemplateKeys`)",
		fmt.Sprintf("lockerd `--key 'tenant:*=1000/1h' --max-keys %d`, one take of each of %d keys tenant:N over a pipelined DEALER socket; VmRSS before and after, with `status` counting the live keys (the RSS includes the allocator's slack, which the heap figure does not)", n+1, n))
	return nil
}

// liveOf returns the live keys of template tmpl, from the status document.
func liveOf(ep, tmpl string) (int64, error) {
	st, err := request(ep, "status", 30*time.Second)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Templates []struct {
			Name string `json:"name"`
			Live int64  `json:"live"`
		} `json:"templates"`
	}
	if err := json.Unmarshal([]byte(st), &doc); err != nil {
		return 0, fmt.Errorf("status: %w", err)
	}
	for _, tp := range doc.Templates {
		if tp.Name == tmpl {
			return tp.Live, nil
		}
	}
	return 0, fmt.Errorf("status has no template %s", tmpl)
}
