// Package metrics exports lockerd's state to Prometheus.
package metrics

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// namespace prefixes every metric name.
const namespace = "lockerd"

// Label values and bounds.
const (
	// UnknownKey is the key label of requests that named no configured
	// key. Keys come from clients, so they never become label values.
	// No key name can contain < or >, so it never collides with a
	// configured key (see locker.ValidKeyName).
	UnknownKey = "<unknown>"
	// MaxKeyLabels caps the key label values of lockerd_requests_total.
	// The server only reports configured keys, so the cap is a guard
	// against misuse: beyond it, requests count under UnknownKey.
	MaxKeyLabels = 10000
)

// DurationBuckets are the upper bounds of lockerd_request_duration_seconds,
// from a microsecond to a second.
var DurationBuckets = []float64{
	1e-6, 2.5e-6, 5e-6,
	1e-5, 2.5e-5, 5e-5,
	1e-4, 2.5e-4, 5e-4,
	1e-3, 2.5e-3, 5e-3,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1,
}

// StatsSource is what the key gauges are read from; *locker.Server
// satisfies it. Stats is called on every scrape, from the scraping
// goroutine.
type StatsSource interface {
	Stats() locker.ServerStats
}

var _ StatsSource = (*locker.Server)(nil)

// PeerStat is a snapshot of one federation peer.
type PeerStat struct {
	// Name is the peer's configured name (its id or endpoint).
	Name string
	// Up reports whether the peer has been heard from recently.
	Up bool
	// Messages is the number of messages received from the peer since
	// start.
	Messages uint64
	// ClockOffset is the peer's clock minus ours, as last estimated.
	ClockOffset time.Duration
}

// PeerSource is what the peer metrics are read from. PeerStats is called
// on every scrape and must be safe for concurrent use. Peer names must
// come from configuration, not from the network, to keep the label set
// bounded.
type PeerSource interface {
	PeerStats() []PeerStat
}

// BuildInfo describes the running binary for lockerd_build_info.
type BuildInfo struct {
	// Version is the release version. If empty, "unknown" is used.
	Version string
	// Revision is the source revision. If empty, "unknown" is used.
	Revision string
	// GoVersion is the Go toolchain. If empty, runtime.Version() is used.
	GoVersion string
}

// Metrics holds lockerd's collectors. It is a locker.Observer for the
// request counters and histogram, and reads the gauges from the sources
// given to SetStats and SetPeers when scraped.
//
// Metrics is safe for concurrent use. The zero value is not usable; use
// New.
type Metrics struct {
	requests *prometheus.CounterVec
	duration prometheus.Histogram

	// keys maps a key name to its pre-resolved counters. It is copied on
	// write, under mu, so ObserveRequest reads it without a lock.
	keys    atomic.Pointer[map[string]*outcomeCounters]
	mu      sync.Mutex
	unknown *outcomeCounters

	src   sync.Mutex
	stats StatsSource
	peers PeerSource

	locks *lockMetrics // locks.go

	keysRefused *prometheus.CounterVec // parts.go
}

// outcomeCounters are the request counters of one key, indexed by
// locker.Outcome.
type outcomeCounters [3]prometheus.Counter

var (
	_ locker.Observer           = (*Metrics)(nil)
	_ locker.KeyRefusalObserver = (*Metrics)(nil)
)

// New returns Metrics registered on reg: the request counters, the
// duration histogram, lockerd_build_info and the collectors of the key
// and peer gauges. It returns an error if any of them is already
// registered on reg.
func New(reg prometheus.Registerer, build BuildInfo) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: nil registerer")
	}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "", "requests_total"),
			Help: "Requests answered, by configured key (" + UnknownKey + " for none) and decision (go, sorry, error).",
		}, []string{"key", "decision"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    prometheus.BuildFQName(namespace, "", "request_duration_seconds"),
			Help:    "Time the server spent deciding a request, not counting the time a wait was held.",
			Buckets: DurationBuckets,
		}),
	}
	empty := map[string]*outcomeCounters{}
	m.keys.Store(&empty)
	m.unknown = m.resolve(UnknownKey)
	m.locks = newLockMetrics()
	m.keysRefused = newKeysRefused()
	for _, c := range append([]prometheus.Collector{
		m.requests, m.duration, newBuildInfo(build),
		keyCollector{m}, peerCollector{m}, m.keysRefused, partCollector{m},
	}, m.locks.collectors(m)...) {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// NewRegistry returns a registry with the Go runtime and process
// collectors, for New and Handler. It is separate from the default
// registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// SetStats sets the source of the key gauges and creates the request
// counters of its keys at zero, so that they are exported before the
// first request. A nil src stops the key gauges.
func (m *Metrics) SetStats(src StatsSource) {
	m.src.Lock()
	m.stats = src
	m.src.Unlock()
	if src != nil {
		m.addKeys(src.Stats())
	}
}

// SetPeers sets the source of the peer metrics. A nil src stops them.
func (m *Metrics) SetPeers(src PeerSource) {
	m.src.Lock()
	defer m.src.Unlock()
	m.peers = src
}

func (m *Metrics) sources() (StatsSource, PeerSource) {
	m.src.Lock()
	defer m.src.Unlock()
	return m.stats, m.peers
}

// ObserveRequest counts one answer under key and outcome and adds
// elapsed to the duration histogram. key must be a configured key or
// template name (the server reports a key made on demand under its
// template), or "" for none, which counts under UnknownKey. An elapsed of zero means
// the decision was not timed (a held wait answered later) and is left
// out of the histogram.
//
// It is called from the server loop: it does not block and, for a key
// already seen, does not allocate.
func (m *Metrics) ObserveRequest(key string, outcome locker.Outcome, elapsed time.Duration) {
	c := m.unknown
	if key != "" {
		if kc, ok := (*m.keys.Load())[key]; ok {
			c = kc
		} else {
			c = m.addKey(key)
		}
	}
	if int(outcome) >= len(c) {
		outcome = locker.OutcomeError
	}
	c[outcome].Inc()
	if elapsed > 0 {
		m.duration.Observe(elapsed.Seconds())
	}
}

// addKeys adds the counters of every key and template of st.
func (m *Metrics) addKeys(st locker.ServerStats) {
	keys := *m.keys.Load()
	for _, k := range st.Keys {
		if _, ok := keys[k.Name]; !ok {
			m.addKey(k.Name)
		}
	}
	for _, t := range st.Templates {
		if _, ok := keys[t.Name]; !ok {
			m.addKey(t.Name)
			m.keysRefused.WithLabelValues(t.Name)
		}
	}
}

// addKey returns the counters of key, creating them if needed, or the
// unknown counters once MaxKeyLabels keys exist.
func (m *Metrics) addKey(key string) *outcomeCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.keys.Load()
	if c, ok := old[key]; ok {
		return c
	}
	if len(old) >= MaxKeyLabels {
		return m.unknown
	}
	c := m.resolve(key)
	keys := make(map[string]*outcomeCounters, len(old)+1)
	for k, v := range old {
		keys[k] = v
	}
	keys[key] = c
	m.keys.Store(&keys)
	return c
}

// resolve returns the counter children of key.
func (m *Metrics) resolve(key string) *outcomeCounters {
	var c outcomeCounters
	for _, o := range []locker.Outcome{locker.OutcomeGo, locker.OutcomeSorry, locker.OutcomeError} {
		c[o] = m.requests.WithLabelValues(key, o.String())
	}
	return &c
}

// newBuildInfo returns the lockerd_build_info gauge, always 1.
func newBuildInfo(b BuildInfo) prometheus.Collector {
	if b.Version == "" {
		b.Version = "unknown"
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	if b.GoVersion == "" {
		b.GoVersion = runtime.Version()
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: prometheus.BuildFQName(namespace, "", "build_info"),
		Help: "A metric with a constant '1' value labeled by the version, revision and Go version lockerd was built from.",
		ConstLabels: prometheus.Labels{
			"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion,
		},
	})
	g.Set(1)
	return g
}
