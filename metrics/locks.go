package metrics

import (
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/prometheus/client_golang/prometheus"
)

// LockStatsSource is what the lock gauges are read from; *locker.Server
// satisfies it. The StatsSource given to SetStats is used when it also
// implements LockStatsSource.
type LockStatsSource interface {
	LockStats() (labels []locker.ServerLockStats, live int64)
}

var _ LockStatsSource = (*locker.Server)(nil)

// HoldBuckets are the upper bounds of lockerd_lock_hold_seconds, from
// 10 ms to an hour.
var HoldBuckets = []float64{0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}

// Lock gauges, read from a LockStatsSource.
var (
	locksHeldDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "lock", "holders"),
		"Holders of the locks under a label: a configured lock name or template, or \"other\" for names made on demand.",
		[]string{"lock"}, nil)
	lockWaitersDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "lock", "waiters"),
		"Acquisitions queued for the locks under a label.",
		[]string{"lock"}, nil)
	locksLiveDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "locks", "live"),
		"Locks held or waited for.",
		nil, nil)
)

// lockMetrics are the lock counters and histogram.
type lockMetrics struct {
	acquisitions *prometheus.CounterVec
	ends         *prometheus.CounterVec
	hold         *prometheus.HistogramVec
}

func newLockMetrics() *lockMetrics {
	return &lockMetrics{
		acquisitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "lock", "acquisitions_total"),
			Help: "Acquisitions answered, by lock label and outcome (granted, busy, error, abandoned).",
		}, []string{"lock", "outcome"}),
		ends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "lock", "leases_ended_total"),
			Help: "Leases ended, by lock label and how: released, expired (the holder died, hung or lost the server) or broken.",
		}, []string{"lock", "how"}),
		hold: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prometheus.BuildFQName(namespace, "lock", "hold_seconds"),
			Help:    "How long leases were held, from grant to release or expiry, by lock label.",
			Buckets: HoldBuckets,
		}, []string{"lock"}),
	}
}

func (l *lockMetrics) collectors(m *Metrics) []prometheus.Collector {
	return []prometheus.Collector{l.acquisitions, l.ends, l.hold, lockCollector{m}}
}

var _ locker.LockObserver = (*Metrics)(nil)

// ObserveLock counts one lock outcome under its label, which the server
// gives from configuration only (a lock name, a template, or "other").
// It is called from the server loop and does not block.
func (m *Metrics) ObserveLock(label string, outcome locker.LockOutcome, held time.Duration) {
	l := m.locks
	switch outcome {
	case locker.LockOutcomeGranted, locker.LockOutcomeBusy, locker.LockOutcomeError, locker.LockOutcomeAbandoned:
		l.acquisitions.WithLabelValues(label, outcome.String()).Inc()
	case locker.LockOutcomeReleased, locker.LockOutcomeExpired, locker.LockOutcomeBroken:
		l.ends.WithLabelValues(label, outcome.String()).Inc()
		if outcome != locker.LockOutcomeBroken {
			l.hold.WithLabelValues(label).Observe(held.Seconds())
		}
	}
}

// lockCollector exports the lock gauges at scrape time.
type lockCollector struct{ m *Metrics }

// Describe implements prometheus.Collector.
func (lockCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- locksHeldDesc
	ch <- lockWaitersDesc
	ch <- locksLiveDesc
}

// Collect implements prometheus.Collector.
func (c lockCollector) Collect(ch chan<- prometheus.Metric) {
	src, _ := c.m.sources()
	ls, ok := src.(LockStatsSource)
	if !ok {
		return
	}
	labels, live := ls.LockStats()
	if labels == nil {
		return // not running yet
	}
	for _, s := range labels {
		ch <- prometheus.MustNewConstMetric(locksHeldDesc, prometheus.GaugeValue, float64(s.Holders), s.Label)
		ch <- prometheus.MustNewConstMetric(lockWaitersDesc, prometheus.GaugeValue, float64(s.Waiters), s.Label)
	}
	ch <- prometheus.MustNewConstMetric(locksLiveDesc, prometheus.GaugeValue, float64(live))
}
