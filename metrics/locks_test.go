package metrics_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	"github.com/lockerd/lockerd/metrics"
	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestLockMetrics drives the lock verbs through a real socket and checks
// the lock metrics: labelled by configured name or template, "other" for
// made-up names, never by a client's name; expiries counted when the
// server's clock passes a lease end.
func TestLockMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, testBuild)
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(t0.UnixNano())
	srv, ep := newTestServer(t, locker.Config{
		Now:      func() time.Time { return time.Unix(0, now.Load()) },
		Observer: m,
		Locks: locker.LockTableConfig{NoGrace: true, Locks: []locker.LockSpec{
			{Name: "licence", Capacity: 2}, {Name: "job:", Template: true, Capacity: 1}}},
	})
	m.SetStats(srv)
	s := mustSocket(t, zmq.REQ, ep)
	mustAsk(t, s, "acquire licence shared 60000")
	mustAsk(t, s, "acquire job:nightly exclusive 1000")
	mustAsk(t, s, "acquire job:nightly exclusive 0 0")
	r, err := locker.ParseLockReply([]byte(mustAsk(t, s, "acquire client-made-name")))
	if err != nil {
		t.Fatal(err)
	}
	now.Add(int64(2 * time.Second))
	mustAsk(t, s, "release client-made-name "+strconv.FormatUint(r.Fence, 10))
	// The job's lease ended two seconds ago: the loop expires it on
	// its own. Wait for that, then check everything.
	lockertest.WaitFor(t, func() bool { // job:nightly's lease expires
		return lockCounterValue(t, reg, "lockerd_lock_leases_ended_total", "job:*", "expired") == 1
	})
	want := `
# HELP lockerd_lock_acquisitions_total Acquisitions answered, by lock label and outcome (granted, busy, error, abandoned).
# TYPE lockerd_lock_acquisitions_total counter
lockerd_lock_acquisitions_total{lock="job:*",outcome="busy"} 1
lockerd_lock_acquisitions_total{lock="job:*",outcome="granted"} 1
lockerd_lock_acquisitions_total{lock="licence",outcome="granted"} 1
lockerd_lock_acquisitions_total{lock="other",outcome="granted"} 1
# HELP lockerd_lock_holders Holders of the locks under a label: a configured lock name or template, or "other" for names made on demand.
# TYPE lockerd_lock_holders gauge
lockerd_lock_holders{lock="job:*"} 0
lockerd_lock_holders{lock="licence"} 1
lockerd_lock_holders{lock="other"} 0
# HELP lockerd_lock_leases_ended_total Leases ended, by lock label and how: released, expired (the holder died, hung or lost the server) or broken.
# TYPE lockerd_lock_leases_ended_total counter
lockerd_lock_leases_ended_total{how="expired",lock="job:*"} 1
lockerd_lock_leases_ended_total{how="released",lock="other"} 1
# HELP lockerd_lock_waiters Acquisitions queued for the locks under a label.
# TYPE lockerd_lock_waiters gauge
lockerd_lock_waiters{lock="job:*"} 0
lockerd_lock_waiters{lock="licence"} 0
lockerd_lock_waiters{lock="other"} 0
# HELP lockerd_locks_live Locks held or waited for.
# TYPE lockerd_locks_live gauge
lockerd_locks_live 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lockerd_lock_acquisitions_total", "lockerd_lock_holders", "lockerd_lock_waiters", "lockerd_lock_leases_ended_total", "lockerd_locks_live"); err != nil {
		t.Fatal(err)
	}
	if n := histogramCountLabelled(t, reg, "lockerd_lock_hold_seconds"); n != 2 {
		t.Fatalf("%d hold times observed, want 2", n)
	}
}

// lockCounterValue returns the value of the counter name whose labels are
// lock and how, or 0.
func lockCounterValue(tb testing.TB, g prometheus.Gatherer, name, lock, how string) float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if got["lock"] == lock && got["how"] == how {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// histogramCountLabelled adds up the sample counts of every series of
// the histogram name.
func histogramCountLabelled(tb testing.TB, g prometheus.Gatherer, name string) uint64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}
