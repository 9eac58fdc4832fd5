package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Descriptions of the gauges read from a StatsSource or PeerSource.
var (
	limitDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "", "limit"),
		"Tokens a key grants per window.",
		[]string{"key"}, nil)
	windowDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "", "window_seconds"),
		"Length of a key's window.",
		[]string{"key"}, nil)
	grantedDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "", "window_granted"),
		"Tokens granted in a key's current window, including those granted by known peers.",
		[]string{"key"}, nil)
	waitersDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "", "waiters"),
		"Wait requests held for a key.",
		[]string{"key"}, nil)

	peerUpDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "peer", "up"),
		"Whether a federation peer has been heard from recently (1) or not (0).",
		[]string{"peer"}, nil)
	peerMessagesDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "peer", "messages_total"),
		"Messages received from a federation peer.",
		[]string{"peer"}, nil)
	peerOffsetDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "peer", "clock_offset_seconds"),
		"Estimated clock of a federation peer minus the local clock.",
		[]string{"peer"}, nil)
)

// keyCollector exports the gauges of every key that the StatsSource
// reports at scrape time, so keys follow a reload.
type keyCollector struct{ m *Metrics }

// Describe implements prometheus.Collector.
func (keyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- limitDesc
	ch <- windowDesc
	ch <- grantedDesc
	ch <- waitersDesc
}

// Collect implements prometheus.Collector.
func (c keyCollector) Collect(ch chan<- prometheus.Metric) {
	src, _ := c.m.sources()
	if src == nil {
		return
	}
	st := src.Stats()
	// A key added by a reload gets its request counters at zero now,
	// not at its first request.
	c.m.addKeys(st)
	for _, k := range st.Keys {
		ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(k.Limit), k.Name)
		ch <- prometheus.MustNewConstMetric(windowDesc, prometheus.GaugeValue, k.Window.Seconds(), k.Name)
		ch <- prometheus.MustNewConstMetric(grantedDesc, prometheus.GaugeValue, float64(k.Granted), k.Name)
		ch <- prometheus.MustNewConstMetric(waitersDesc, prometheus.GaugeValue, float64(k.Waiters), k.Name)
	}
}

// peerCollector exports the metrics of every peer that the PeerSource
// reports at scrape time.
type peerCollector struct{ m *Metrics }

// Describe implements prometheus.Collector.
func (peerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- peerUpDesc
	ch <- peerMessagesDesc
	ch <- peerOffsetDesc
}

// Collect implements prometheus.Collector.
func (c peerCollector) Collect(ch chan<- prometheus.Metric) {
	_, src := c.m.sources()
	if src == nil {
		return
	}
	for _, p := range src.PeerStats() {
		up := 0.0
		if p.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(peerUpDesc, prometheus.GaugeValue, up, p.Name)
		ch <- prometheus.MustNewConstMetric(peerMessagesDesc, prometheus.CounterValue, float64(p.Messages), p.Name)
		ch <- prometheus.MustNewConstMetric(peerOffsetDesc, prometheus.GaugeValue, p.ClockOffset.Seconds(), p.Name)
	}
}
