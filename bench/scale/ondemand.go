package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// onDemandKeys measures, for each algorithm of o.liveAlgs, the RSS per
// key made on demand at o.liveKeys live keys (onDemandAlg).
func onDemandKeys(ctx context.Context, o options, t *table) error {
	for _, alg := range o.liveAlgs {
		if err := onDemandAlg(ctx, o, t, alg); err != nil {
			return fmt.Errorf("keys made on demand, %s: %w", alg, err)
		}
	}
	return nil
}

// onDemand is one measurement of onDemandAlg, as a JSON line of -json.
type onDemand struct {
	Algorithm   string  `json:"algorithm"`
	Spec        string  `json:"spec"`
	LiveKeys    int     `json:"live_keys"`
	RSSBefore   int64   `json:"rss_before_bytes"`
	RSSAfter    int64   `json:"rss_after_bytes"`
	BytesPerKey float64 `json:"rss_bytes_per_key"`
	KeysPerSec  float64 `json:"keys_made_per_second"`
}

// onDemandAlg starts lockerd with the template tenant:* of algorithm
// alg, makes o.liveKeys keys of it by taking one token of each
// (tenant:0, tenant:1, ...), and measures the RSS per live key against
// the same lockerd before any key was made.
func onDemandAlg(_ context.Context, o options, t *table, alg string) error {
	n := o.liveKeys
	logf(o, "keys made on demand: %d %s", n, alg)
	// No key may be idle (every token back), and so dropped, before the
	// RSS is read: a fixed window of 24h ends only at midnight UTC, a
	// sliding grant counts for 24h, and a gcra token comes back after
	// 24h/10 (with 1000/1h, after 3.6s: most keys were gone by the end).
	// A sliding key's ring holds as many instants as its takes need, doubling
	// up to its limit: one here.
	spec := "tenant:*=10/24h/" + alg
	p, err := startLockerd(o, "ondemand-"+alg, "--key", spec, "--max-keys", strconv.Itoa(n+1),
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
		return fmt.Errorf("%d live, want %d", live, n)
	}
	rss, err := p.rss()
	if err != nil {
		return err
	}
	m := onDemand{Algorithm: alg, Spec: spec, LiveKeys: n, RSSBefore: base, RSSAfter: rss,
		BytesPerKey: float64(rss-base) / float64(n), KeysPerSec: float64(n) / made.Seconds()}
	target := "-"
	if alg == "fixed" {
		target = "≤ 256 bytes per key (the heap figure of `BenchmarkTemplateDecision1M`)"
	}
	t.row(fmt.Sprintf("keys made on demand, %s, %d live keys", alg, n),
		fmt.Sprintf("%.0f bytes per live key (%s → %s); made at %.0f keys/s", m.BytesPerKey,
			mib(float64(base)), mib(float64(rss)), m.KeysPerSec),
		target,
		fmt.Sprintf("lockerd `--key '%s' --max-keys %d`, one take of each of %d keys tenant:N over a pipelined DEALER socket; VmRSS before and after, with `status` counting the live keys (the RSS includes the allocator's slack, which the heap figure does not)", spec, n+1, n))
	if o.jsonOut != nil {
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(o.jsonOut, "%s\n", b); err != nil {
			return err
		}
	}
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
