package metrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	"github.com/lockerd/lockerd/metrics"
	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// t0 is the fixed instant the test servers live at, so that no window
// ends during a test.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newObservedServer runs a locker server with keys at the fixed clock t0,
// observed by Metrics registered on reg, and returns the Metrics and the
// server's endpoint.
func newObservedServer(tb testing.TB, reg prometheus.Registerer, keys ...locker.KeyConfig) (*metrics.Metrics, *locker.Server, string) {
	tb.Helper()
	m, err := metrics.New(reg, testBuild)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	srv, ep := newTestServer(tb, locker.Config{
		Keys:     keys,
		Now:      func() time.Time { return t0 },
		Observer: m,
	})
	m.SetStats(srv)
	return m, srv, ep
}

// TestServerTraffic drives requests through a real REQ socket and checks
// that every answer is counted once under the right labels.
func TestServerTraffic(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, _, ep := newObservedServer(t, reg, locker.KeyConfig{Name: "api", Limit: 3, Window: time.Hour})
	req := mustSocket(t, zmq.REQ, ep)

	steps := []struct {
		body      string
		wantReply string // prefix
	}{
		{"take api", "go "},
		{"take api", "go "},
		{"take api", "go "},
		{"take api", "sorry "},
		{"take api", "sorry "},
		{"take api 99", "error "}, // above the limit: counted under api
		{"take nope", "error "},   // unknown key: counted under <unknown>
		{"take no\x01pe 1", "error "},
		{"let me go", "go"}, // legacy request: key default, limit 1
		{"let me go", "sorry"},
		{"ping", "pong "}, // not counted
		{"status", "{"},   // not counted
	}
	for _, s := range steps {
		if got := mustAsk(t, req, s.body); !strings.HasPrefix(got, s.wantReply) {
			t.Fatalf("%q answered %q, want prefix %q", s.body, got, s.wantReply)
		}
	}

	// A wait that cannot be served is held: it shows in lockerd_waiters
	// and is not counted until answered.
	dealer := mustSocket(t, zmq.DEALER, ep)
	if _, err := dealer.SendMessage("", "wait api 1 60000"); err != nil {
		t.Fatalf("send wait: %v", err)
	}
	// lockerd_waiters{key=api} reaches 1.
	lockertest.WaitFor(t, func() bool {
		err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP lockerd_waiters Wait requests held for a key.
# TYPE lockerd_waiters gauge
lockerd_waiters{key="api"} 1
lockerd_waiters{key="default"} 0
`), "lockerd_waiters")
		return err == nil
	})
	// The loop observes a request after sending its reply; a ping
	// answered after them proves they were all observed.
	mustAsk(t, req, "ping")

	want := `
# HELP lockerd_limit Tokens a key grants per window.
# TYPE lockerd_limit gauge
lockerd_limit{key="api"} 3
lockerd_limit{key="default"} 1
# HELP lockerd_requests_total Requests answered, by configured key (<unknown> for none) and decision (go, sorry, error).
# TYPE lockerd_requests_total counter
lockerd_requests_total{decision="error",key="<unknown>"} 2
lockerd_requests_total{decision="go",key="<unknown>"} 0
lockerd_requests_total{decision="sorry",key="<unknown>"} 0
lockerd_requests_total{decision="error",key="api"} 1
lockerd_requests_total{decision="go",key="api"} 3
lockerd_requests_total{decision="sorry",key="api"} 2
lockerd_requests_total{decision="error",key="default"} 0
lockerd_requests_total{decision="go",key="default"} 1
lockerd_requests_total{decision="sorry",key="default"} 1
# HELP lockerd_waiters Wait requests held for a key.
# TYPE lockerd_waiters gauge
lockerd_waiters{key="api"} 1
lockerd_waiters{key="default"} 0
# HELP lockerd_window_granted Tokens granted in a key's current window, including those granted by known peers.
# TYPE lockerd_window_granted gauge
lockerd_window_granted{key="api"} 3
lockerd_window_granted{key="default"} 1
# HELP lockerd_window_seconds Length of a key's window.
# TYPE lockerd_window_seconds gauge
lockerd_window_seconds{key="api"} 3600
lockerd_window_seconds{key="default"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"lockerd_limit", "lockerd_requests_total", "lockerd_waiters",
		"lockerd_window_granted", "lockerd_window_seconds"); err != nil {
		t.Error(err)
	}
	// Every counted request was timed; the held wait is not yet counted.
	if got, want := histogramCount(t, reg, "lockerd_request_duration_seconds"), uint64(10); got != want {
		t.Errorf("histogram count=%d, want %d", got, want)
	}
}

// TestServerReload checks that a key added by reconfiguring the counter
// shows up in the gauges and counters without a restart.
func TestServerReload(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, srv, ep := newObservedServer(t, reg)
	if n, err := testutil.GatherAndCount(reg, "lockerd_limit"); err != nil || n != 1 {
		t.Fatalf("before reload: %d lockerd_limit series, err %v; want 1 (default)", n, err)
	}
	if err := srv.Counter().Reconfigure([]locker.KeyConfig{{Name: "fresh", Limit: 2, Window: time.Minute}}); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if n, err := testutil.GatherAndCount(reg, "lockerd_limit"); err != nil || n != 2 {
		t.Errorf("after reload: %d lockerd_limit series, err %v; want 2", n, err)
	}
	if v, ok := counterValue(t, reg, "fresh", "sorry"); !ok || v != 0 {
		t.Errorf("requests{key=fresh,decision=sorry}=%v (exported %v), want 0 before any request", v, ok)
	}
	req := mustSocket(t, zmq.REQ, ep)
	mustAsk(t, req, "take fresh 2")
	mustAsk(t, req, "take fresh")
	mustAsk(t, req, "ping")
	for _, c := range []struct {
		decision string
		want     float64
	}{{"go", 1}, {"sorry", 1}, {"error", 0}} {
		if v, _ := counterValue(t, reg, "fresh", c.decision); v != c.want {
			t.Errorf("requests{key=fresh,decision=%s}=%v, want %v", c.decision, v, c.want)
		}
	}
}
