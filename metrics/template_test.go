package metrics_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/metrics"
	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestNoSeriesPerKeyMadeOnDemand makes 1000 keys from a template through
// a real server, then one more than --max-keys allows: the exposition
// counts them under the template and has no series for any of them; the
// refusal is counted; each limit of a multi-limit key has its gauges.
func TestNoSeriesPerKeyMadeOnDemand(t *testing.T) {
	reg := prometheus.NewRegistry()
	tmpl, _ := locker.ParseKeySpec("tenant:*=2/1h")
	multi, _ := locker.ParseKeySpec("m=10/1h+3/1h/sliding")
	_, srv, ep := newObservedServer(t, reg, tmpl, multi)
	const n = 1000
	srv.Counter().SetMaxKeys(n)
	req := mustSocket(t, zmq.REQ, ep)
	for i := 0; i < n; i++ {
		if got := mustAsk(t, req, fmt.Sprintf("take tenant:%d", i)); !strings.HasPrefix(got, "go ") {
			t.Fatalf("tenant %d: %q", i, got)
		}
	}
	if got := mustAsk(t, req, "take tenant:extra"); got != fmt.Sprintf("error too many live keys made on demand (--max-keys %d)", n) {
		t.Fatalf("key beyond the cap: %q", got)
	}
	mustAsk(t, req, "take m 2")
	mustAsk(t, req, "ping") // every request above is observed

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); strings.HasPrefix(v, "tenant:") && v != "tenant:*" {
					t.Fatalf("series %s{%s=%q}: a key made on demand became a label", mf.GetName(), l.GetName(), v)
				}
			}
		}
	}
	want := fmt.Sprintf(`
# HELP lockerd_keys_refused_total Requests answered with an error because they would have made one key on demand more than --max-keys, by template.
# TYPE lockerd_keys_refused_total counter
lockerd_keys_refused_total{template="tenant:*"} 1
# HELP lockerd_part_limit Tokens one limit of a multi-limit key grants per window; part is the limit's place in the key's spec, from 0.
# TYPE lockerd_part_limit gauge
lockerd_part_limit{algorithm="fixed",key="m",part="0"} 10
lockerd_part_limit{algorithm="sliding",key="m",part="1"} 3
# HELP lockerd_part_used Tokens in use of one limit of a multi-limit key: granted in the window (fixed), in the last window's length (sliding), not yet back (gcra).
# TYPE lockerd_part_used gauge
lockerd_part_used{key="m",part="0"} 2
lockerd_part_used{key="m",part="1"} 2
# HELP lockerd_template_live_keys Keys made on demand from a key template that are live.
# TYPE lockerd_template_live_keys gauge
lockerd_template_live_keys{key="tenant:*"} %d
`, n)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"lockerd_keys_refused_total", "lockerd_part_limit", "lockerd_part_used", "lockerd_template_live_keys"); err != nil {
		t.Error(err)
	}
	if v, ok := counterValue(t, reg, "tenant:*", "go"); !ok || v != n {
		t.Errorf("requests{key=tenant:*,decision=go}=%v, want %d", v, n)
	}
	if v, _ := counterValue(t, reg, "tenant:*", "error"); v != 1 {
		t.Errorf("requests{key=tenant:*,decision=error}=%v, want 1", v)
	}
}

var _ locker.KeyRefusalObserver = (*metrics.Metrics)(nil)
