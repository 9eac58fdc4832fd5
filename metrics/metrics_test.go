package metrics_test

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRequestsTotal(t *testing.T) {
	type obs struct {
		key     string
		outcome locker.Outcome
	}
	tests := []struct {
		name string
		keys []string // from SetStats
		obs  []obs
		want string
	}{
		{
			name: "no source",
			want: `
lockerd_requests_total{decision="error",key="<unknown>"} 0
lockerd_requests_total{decision="go",key="<unknown>"} 0
lockerd_requests_total{decision="sorry",key="<unknown>"} 0
`,
		},
		{
			name: "configured keys start at zero",
			keys: []string{"api", "default"},
			obs:  []obs{{"api", locker.OutcomeGo}, {"api", locker.OutcomeGo}, {"api", locker.OutcomeSorry}},
			want: `
lockerd_requests_total{decision="error",key="<unknown>"} 0
lockerd_requests_total{decision="go",key="<unknown>"} 0
lockerd_requests_total{decision="sorry",key="<unknown>"} 0
lockerd_requests_total{decision="error",key="api"} 0
lockerd_requests_total{decision="go",key="api"} 2
lockerd_requests_total{decision="sorry",key="api"} 1
lockerd_requests_total{decision="error",key="default"} 0
lockerd_requests_total{decision="go",key="default"} 0
lockerd_requests_total{decision="sorry",key="default"} 0
`,
		},
		{
			name: "no key counts as unknown",
			obs:  []obs{{"", locker.OutcomeError}, {"", locker.OutcomeError}},
			want: `
lockerd_requests_total{decision="error",key="<unknown>"} 2
lockerd_requests_total{decision="go",key="<unknown>"} 0
lockerd_requests_total{decision="sorry",key="<unknown>"} 0
`,
		},
		{
			name: "key seen before any stats",
			obs:  []obs{{"late", locker.OutcomeSorry}},
			want: `
lockerd_requests_total{decision="error",key="<unknown>"} 0
lockerd_requests_total{decision="go",key="<unknown>"} 0
lockerd_requests_total{decision="sorry",key="<unknown>"} 0
lockerd_requests_total{decision="error",key="late"} 0
lockerd_requests_total{decision="go",key="late"} 0
lockerd_requests_total{decision="sorry",key="late"} 1
`,
		},
		{
			// A key may be named _unknown: requests naming no key are
			// not counted as its errors.
			name: "a key named like the old unknown label",
			keys: []string{"_unknown"},
			obs:  []obs{{"", locker.OutcomeError}, {"_unknown", locker.OutcomeGo}},
			want: `
lockerd_requests_total{decision="error",key="<unknown>"} 1
lockerd_requests_total{decision="go",key="<unknown>"} 0
lockerd_requests_total{decision="sorry",key="<unknown>"} 0
lockerd_requests_total{decision="error",key="_unknown"} 0
lockerd_requests_total{decision="go",key="_unknown"} 1
lockerd_requests_total{decision="sorry",key="_unknown"} 0
`,
		},
		{
			name: "out of range outcome counts as error",
			keys: []string{"api"},
			obs:  []obs{{"api", locker.Outcome(200)}},
			want: `
lockerd_requests_total{decision="error",key="<unknown>"} 0
lockerd_requests_total{decision="go",key="<unknown>"} 0
lockerd_requests_total{decision="sorry",key="<unknown>"} 0
lockerd_requests_total{decision="error",key="api"} 1
lockerd_requests_total{decision="go",key="api"} 0
lockerd_requests_total{decision="sorry",key="api"} 0
`,
		},
	}
	const header = `
# HELP lockerd_requests_total Requests answered, by configured key (<unknown> for none) and decision (go, sorry, error).
# TYPE lockerd_requests_total counter
`
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := mustMetrics(t, testBuild)
			if tc.keys != nil {
				var src fakeStats
				var ks []locker.ServerKeyStats
				for _, k := range tc.keys {
					ks = append(ks, keyStat(k, 1, time.Second, 0, 0))
				}
				src.set(ks...)
				m.SetStats(&src)
			}
			for _, o := range tc.obs {
				m.ObserveRequest(o.key, o.outcome, time.Microsecond)
			}
			if err := testutil.GatherAndCompare(reg, strings.NewReader(header+tc.want), "lockerd_requests_total"); err != nil {
				t.Error(err)
			}
			if got, want := histogramCount(t, reg, "lockerd_request_duration_seconds"), uint64(len(tc.obs)); got != want {
				t.Errorf("histogram count=%d, want %d", got, want)
			}
		})
	}
}

// TestUnknownKeyIsNoKeyName checks that the label of requests naming no
// key can never be the name of a configured key.
func TestUnknownKeyIsNoKeyName(t *testing.T) {
	if err := locker.ValidKeyName(metrics.UnknownKey); err == nil {
		t.Fatalf("ValidKeyName(%q)=nil: a configured key could share the unknown label", metrics.UnknownKey)
	}
}

func TestDurationHistogram(t *testing.T) {
	m, reg := mustMetrics(t, testBuild)
	m.ObserveRequest("", locker.OutcomeError, 3*time.Microsecond)
	m.ObserveRequest("", locker.OutcomeError, 2*time.Millisecond)
	m.ObserveRequest("", locker.OutcomeGo, 0) // not timed: not in the histogram
	m.ObserveRequest("", locker.OutcomeGo, 2*time.Second)
	want := `
# HELP lockerd_request_duration_seconds Time the server spent deciding a request, not counting the time a wait was held.
# TYPE lockerd_request_duration_seconds histogram
lockerd_request_duration_seconds_bucket{le="1e-06"} 0
lockerd_request_duration_seconds_bucket{le="2.5e-06"} 0
lockerd_request_duration_seconds_bucket{le="5e-06"} 1
lockerd_request_duration_seconds_bucket{le="1e-05"} 1
lockerd_request_duration_seconds_bucket{le="2.5e-05"} 1
lockerd_request_duration_seconds_bucket{le="5e-05"} 1
lockerd_request_duration_seconds_bucket{le="0.0001"} 1
lockerd_request_duration_seconds_bucket{le="0.00025"} 1
lockerd_request_duration_seconds_bucket{le="0.0005"} 1
lockerd_request_duration_seconds_bucket{le="0.001"} 1
lockerd_request_duration_seconds_bucket{le="0.0025"} 2
lockerd_request_duration_seconds_bucket{le="0.005"} 2
lockerd_request_duration_seconds_bucket{le="0.01"} 2
lockerd_request_duration_seconds_bucket{le="0.025"} 2
lockerd_request_duration_seconds_bucket{le="0.05"} 2
lockerd_request_duration_seconds_bucket{le="0.1"} 2
lockerd_request_duration_seconds_bucket{le="0.25"} 2
lockerd_request_duration_seconds_bucket{le="0.5"} 2
lockerd_request_duration_seconds_bucket{le="1"} 2
lockerd_request_duration_seconds_bucket{le="+Inf"} 3
lockerd_request_duration_seconds_sum 2.002003
lockerd_request_duration_seconds_count 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lockerd_request_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestKeyGauges(t *testing.T) {
	m, reg := mustMetrics(t, testBuild)
	var src fakeStats
	src.set(
		keyStat("api", 100, time.Minute, 95, 2),
		keyStat("default", 1, time.Second, 0, 0),
	)
	m.SetStats(&src)
	names := []string{"lockerd_limit", "lockerd_window_seconds", "lockerd_window_granted", "lockerd_waiters"}
	want := `
# HELP lockerd_limit Tokens a key grants per window.
# TYPE lockerd_limit gauge
lockerd_limit{key="api"} 100
lockerd_limit{key="default"} 1
# HELP lockerd_waiters Wait requests held for a key.
# TYPE lockerd_waiters gauge
lockerd_waiters{key="api"} 2
lockerd_waiters{key="default"} 0
# HELP lockerd_window_granted Tokens granted in a key's current window, including those granted by known peers.
# TYPE lockerd_window_granted gauge
lockerd_window_granted{key="api"} 95
lockerd_window_granted{key="default"} 0
# HELP lockerd_window_seconds Length of a key's window.
# TYPE lockerd_window_seconds gauge
lockerd_window_seconds{key="api"} 60
lockerd_window_seconds{key="default"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// A reload removes api and adds batch: the gauges follow, and batch
	// gets request counters at zero.
	src.set(
		keyStat("batch", 5, 500*time.Millisecond, 1, 0),
		keyStat("default", 1, time.Second, 1, 0),
	)
	want = `
# HELP lockerd_limit Tokens a key grants per window.
# TYPE lockerd_limit gauge
lockerd_limit{key="batch"} 5
lockerd_limit{key="default"} 1
# HELP lockerd_waiters Wait requests held for a key.
# TYPE lockerd_waiters gauge
lockerd_waiters{key="batch"} 0
lockerd_waiters{key="default"} 0
# HELP lockerd_window_granted Tokens granted in a key's current window, including those granted by known peers.
# TYPE lockerd_window_granted gauge
lockerd_window_granted{key="batch"} 1
lockerd_window_granted{key="default"} 1
# HELP lockerd_window_seconds Length of a key's window.
# TYPE lockerd_window_seconds gauge
lockerd_window_seconds{key="batch"} 0.5
lockerd_window_seconds{key="default"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if got, ok := counterValue(t, reg, "batch", "go"); !ok || got != 0 {
		t.Errorf("requests{key=batch,decision=go}=%v (exported %v), want 0", got, ok)
	}

	m.SetStats(nil)
	if n, err := testutil.GatherAndCount(reg, names...); err != nil || n != 0 {
		t.Errorf("after SetStats(nil): %d series, err %v; want 0", n, err)
	}
}

// counterValue returns the value of lockerd_requests_total{key,decision}
// in reg and whether that series is exported.
func counterValue(tb testing.TB, reg prometheus.Gatherer, key, decision string) (float64, bool) {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lockerd_requests_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range mt.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["key"] == key && l["decision"] == decision {
				return mt.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

func TestPeerMetrics(t *testing.T) {
	m, reg := mustMetrics(t, testBuild)
	names := []string{"lockerd_peer_up", "lockerd_peer_messages_total", "lockerd_peer_clock_offset_seconds"}
	if n, err := testutil.GatherAndCount(reg, names...); err != nil || n != 0 {
		t.Fatalf("without peers: %d series, err %v; want 0", n, err)
	}
	m.SetPeers(fakePeers{
		{Name: "node-b", Up: true, Messages: 42, ClockOffset: 1500 * time.Microsecond},
		{Name: "node-c", Up: false, Messages: 0, ClockOffset: -2 * time.Second},
	})
	want := `
# HELP lockerd_peer_clock_offset_seconds Estimated clock of a federation peer minus the local clock.
# TYPE lockerd_peer_clock_offset_seconds gauge
lockerd_peer_clock_offset_seconds{peer="node-b"} 0.0015
lockerd_peer_clock_offset_seconds{peer="node-c"} -2
# HELP lockerd_peer_messages_total Messages received from a federation peer.
# TYPE lockerd_peer_messages_total counter
lockerd_peer_messages_total{peer="node-b"} 42
lockerd_peer_messages_total{peer="node-c"} 0
# HELP lockerd_peer_up Whether a federation peer has been heard from recently (1) or not (0).
# TYPE lockerd_peer_up gauge
lockerd_peer_up{peer="node-b"} 1
lockerd_peer_up{peer="node-c"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestBuildInfo(t *testing.T) {
	tests := []struct {
		name  string
		build metrics.BuildInfo
		want  string
	}{
		{"stamped", testBuild, `lockerd_build_info{goversion="go1.99",revision="abc123",version="1.2.3"} 1`},
		{"defaults", metrics.BuildInfo{}, `lockerd_build_info{goversion="` + runtime.Version() + `",revision="unknown",version="unknown"} 1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, reg := mustMetrics(t, tc.build)
			want := `
# HELP lockerd_build_info A metric with a constant '1' value labeled by the version, revision and Go version lockerd was built from.
# TYPE lockerd_build_info gauge
` + tc.want + "\n"
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lockerd_build_info"); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := metrics.New(nil, testBuild); err == nil {
		t.Error("New(nil)=nil error, want one")
	}
	reg := prometheus.NewRegistry()
	if _, err := metrics.New(reg, testBuild); err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := metrics.New(reg, testBuild); err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Errorf("second New on one registry: err=%v, want a metrics: error", err)
	}
}

func TestKeyLabelCap(t *testing.T) {
	m, reg := mustMetrics(t, testBuild)
	for i := 0; i < metrics.MaxKeyLabels+10; i++ {
		m.ObserveRequest("k"+strconv.Itoa(i), locker.OutcomeGo, 0)
	}
	n, err := testutil.GatherAndCount(reg, "lockerd_requests_total")
	if err != nil {
		t.Fatal(err)
	}
	// Three decisions per key, plus the three of <unknown>.
	if want := 3 * (metrics.MaxKeyLabels + 1); n != want {
		t.Errorf("series=%d, want %d", n, want)
	}
}

func TestObserveRequestAllocs(t *testing.T) {
	m, _ := mustMetrics(t, testBuild)
	var src fakeStats
	src.set(keyStat("api", 10, time.Second, 0, 0))
	m.SetStats(&src)
	tests := []struct {
		name string
		key  string
	}{
		{"configured", "api"},
		{"unknown", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, func() {
				m.ObserveRequest(tc.key, locker.OutcomeSorry, 3*time.Microsecond)
			}); n != 0 {
				t.Errorf("ObserveRequest allocates %v times, want 0", n)
			}
		})
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, testBuild)
	if err != nil {
		b.Fatal(err)
	}
	var src fakeStats
	var ks []locker.ServerKeyStats
	keys := []string{"a", "b", "c", "d", "default"}
	for _, k := range keys {
		ks = append(ks, keyStat(k, 10, time.Second, 0, 0))
	}
	src.set(ks...)
	m.SetStats(&src)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			m.ObserveRequest(keys[i%len(keys)], locker.Outcome(i%3), 2*time.Microsecond)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				m.ObserveRequest(keys[i%len(keys)], locker.Outcome(i%3), 2*time.Microsecond)
				i++
			}
		})
	})
}

// TestConcurrentObserveAndScrape observes new and known keys from several
// goroutines while the registry is gathered and the stats change, for
// the race detector, and checks that no observation is lost.
func TestConcurrentObserveAndScrape(t *testing.T) {
	m, reg := mustMetrics(t, testBuild)
	var src fakeStats
	src.set(keyStat("a", 1, time.Second, 0, 0))
	m.SetStats(&src)
	const workers, per = 4, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				m.ObserveRequest("k"+strconv.Itoa(i%20), locker.OutcomeGo, time.Microsecond)
				if i%100 == w {
					src.set(keyStat("a", 1, time.Second, 0, 0), keyStat("r"+strconv.Itoa(i), 1, time.Second, 0, 0))
				}
			}
		}()
	}
	stop := make(chan struct{})
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := reg.Gather(); err != nil {
				t.Errorf("Gather: %v", err)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-scraped
	var total float64
	for i := range 20 {
		v, _ := counterValue(t, reg, "k"+strconv.Itoa(i), "go")
		total += v
	}
	if total != workers*per {
		t.Errorf("counted %v go, want %d", total, workers*per)
	}
}
