package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// This file exports what a key's first limit alone does not show: every
// limit of a multi-limit key, the key templates with their live keys, and
// the requests refused because they would make one key on demand too
// many. Every label value is a configured key or template name: a key
// made on demand never becomes one, so clients cannot create series.

// Descriptions of the part and template gauges.
var (
	partLimitDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "part", "limit"),
		"Tokens one limit of a multi-limit key grants per window; part is the limit's place in the key's spec, from 0.",
		[]string{"key", "part", "algorithm"}, nil)
	partWindowDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "part", "window_seconds"),
		"Length of the window of one limit of a multi-limit key.",
		[]string{"key", "part"}, nil)
	partUsedDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "part", "used"),
		"Tokens in use of one limit of a multi-limit key: granted in the window (fixed), in the last window's length (sliding), not yet back (gcra).",
		[]string{"key", "part"}, nil)
	templateLiveDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "template", "live_keys"),
		"Keys made on demand from a key template that are live.",
		[]string{"key"}, nil)
	templateWaitersDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "template", "waiters"),
		"Wait requests held for the keys made from a key template.",
		[]string{"key"}, nil)
)

// newKeysRefused returns lockerd_keys_refused_total.
func newKeysRefused() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: prometheus.BuildFQName(namespace, "", "keys_refused_total"),
		Help: "Requests answered with an error because they would have made one key on demand more than --max-keys, by template.",
	}, []string{"template"})
}

// ObserveKeyRefused counts one request refused because it would have made
// a key from template beyond the cap of live keys (locker.Counter's
// SetMaxKeys). It implements locker.KeyRefusalObserver.
func (m *Metrics) ObserveKeyRefused(template string) {
	m.keysRefused.WithLabelValues(template).Inc()
}

// partCollector exports the part and template gauges of the StatsSource.
type partCollector struct{ m *Metrics }

// Describe implements prometheus.Collector.
func (partCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- partLimitDesc
	ch <- partWindowDesc
	ch <- partUsedDesc
	ch <- templateLiveDesc
	ch <- templateWaitersDesc
}

// Collect implements prometheus.Collector.
func (c partCollector) Collect(ch chan<- prometheus.Metric) {
	src, _ := c.m.sources()
	if src == nil {
		return
	}
	st := src.Stats()
	for _, k := range st.Keys {
		for i, p := range k.Parts {
			part := strconv.Itoa(i)
			alg := string(p.Algorithm)
			if alg == "" {
				alg = "fixed"
			}
			ch <- prometheus.MustNewConstMetric(partLimitDesc, prometheus.GaugeValue, float64(p.Limit), k.Name, part, alg)
			ch <- prometheus.MustNewConstMetric(partWindowDesc, prometheus.GaugeValue, p.Window.Seconds(), k.Name, part)
			ch <- prometheus.MustNewConstMetric(partUsedDesc, prometheus.GaugeValue, float64(p.Used), k.Name, part)
		}
	}
	for _, t := range st.Templates {
		ch <- prometheus.MustNewConstMetric(templateLiveDesc, prometheus.GaugeValue, float64(t.Live), t.Name)
		ch <- prometheus.MustNewConstMetric(templateWaitersDesc, prometheus.GaugeValue, float64(t.Waiters), t.Name)
	}
}
