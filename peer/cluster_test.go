package peer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	"github.com/lockerd/lockerd/peer"
)

// testNode is one lockerd server with its federation node, in process.
type testNode struct {
	srv      *locker.Server
	node     *peer.Node
	endpoint string // the server's
	pub      string // the node's publish endpoint
	stop     func()
}

// freeEndpoints returns n tcp endpoints on 127.0.0.1 that were free a
// moment ago. Members must know each other's publish endpoints before
// they start, so the ports cannot be bound as "*" and read back.
func freeEndpoints(tb testing.TB, n int) []string {
	tb.Helper()
	var out []string
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, "tcp://"+l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// waitPortFree waits until the tcp endpoint ep can be bound again: a
// closed ZeroMQ socket gives its port back in the background, after Close
// has returned.
func waitPortFree(tb testing.TB, ep string) {
	tb.Helper()
	addr := strings.TrimPrefix(ep, "tcp://")
	lockertest.WaitFor(tb, func() bool {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
}

// clusterConfig describes an in-process federation.
type clusterConfig struct {
	n        int
	mode     peer.Mode
	keys     []locker.KeyConfig
	dropRate float64
	now      func() time.Time
	// tweak, if not nil, changes member i's configuration.
	tweak func(i int, sc *locker.Config, pc *peer.Config)
}

// newTestCluster starts cc.n servers and nodes that all know each other
// and stops them when the test ends.
func newTestCluster(tb testing.TB, cc clusterConfig) []*testNode {
	tb.Helper()
	pubs := freeEndpoints(tb, cc.n)
	nodes := make([]*testNode, cc.n)
	for i := range nodes {
		nodes[i] = startTestNode(tb, cc, pubs, i)
	}
	return nodes
}

func testLogger(tb testing.TB, id string) *slog.Logger {
	if testing.Verbose() && os.Getenv("PEER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", id)
	}
	return nil
}

// startTestNode starts member i of a cluster whose publish endpoints are
// pubs.
func startTestNode(tb testing.TB, cc clusterConfig, pubs []string, i int) *testNode {
	tb.Helper()
	id := fmt.Sprintf("node%d", i)
	sc := locker.Config{Endpoints: []string{"tcp://127.0.0.1:*"}, Keys: cc.keys, ID: id, Now: cc.now,
		Logger: testLogger(tb, id)}
	pc := peer.Config{ID: id, Publish: pubs[i], Peers: pubs, Mode: cc.mode, DropRate: cc.dropRate, Now: cc.now,
		Logger: testLogger(tb, id)}
	if cc.now != nil {
		// A stopped clock never leaves the start window: the members
		// are taken to have run for a day, so that no fence applies.
		pc.Started = cc.now().Add(-24 * time.Hour)
	}
	if cc.tweak != nil {
		cc.tweak(i, &sc, &pc)
	}
	var node *peer.Node
	sc.StatusExtra = func() map[string]any { return node.StatusExtra() }
	srv, err := locker.NewServer(sc)
	if err != nil {
		tb.Fatal(err)
	}
	node, err = peer.New(pc, srv.Counter())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srvDone, nodeDone := make(chan error, 1), make(chan error, 1)
	go func() { srvDone <- srv.Run(ctx) }()
	go func() { nodeDone <- node.Run(ctx) }()
	for _, ready := range []<-chan struct{}{srv.Ready(), node.Ready()} {
		select {
		case <-ready:
		case err := <-srvDone:
			cancel()
			tb.Fatalf("server Run: %v", err)
		case err := <-nodeDone:
			cancel()
			tb.Fatalf("node Run: %v", err)
		case <-time.After(5 * time.Second):
			cancel()
			tb.Fatal("not ready after 5s")
		}
	}
	tn := &testNode{srv: srv, node: node, endpoint: srv.Endpoints()[0], pub: pc.Publish}
	var once sync.Once
	tn.stop = func() {
		once.Do(func() {
			cancel()
			for what, ch := range map[string]chan error{"server": srvDone, "node": nodeDone} {
				select {
				case err := <-ch:
					if !errors.Is(err, locker.ErrServerClosed) && !errors.Is(err, peer.ErrNodeClosed) {
						tb.Errorf("%s Run returned %v", what, err)
					}
				case <-time.After(5 * time.Second):
					tb.Errorf("%s did not stop within 5s", what)
				}
			}
		})
	}
	tb.Cleanup(tn.stop)
	return tn
}

// waitAllUp waits until every node hears every other one.
func waitAllUp(tb testing.TB, nodes []*testNode) {
	tb.Helper()
	lockertest.WaitFor(tb, func() bool {
		for _, n := range nodes {
			up := 0
			for _, p := range n.node.PeerStats() {
				if p.Up {
					up++
				}
			}
			if up != len(nodes)-1 {
				return false
			}
		}
		return true
	})
}

// checker drives clients against servers and counts the go answers per
// window, cluster wide.
type checker struct {
	mu        sync.Mutex
	perWindow map[int64]int64
	// perRealWindow counts the same grants by the window that contains
	// the checker's clock when the answer arrived; it differs from
	// perWindow when a server's clock is off.
	perRealWindow map[int64]int64
	realWindow    time.Duration
	sorry         int64
	errs          int64
}

// run sends take requests for key from workers goroutines per endpoint in
// weights (endpoint -> workers) until ctx is done.
func (c *checker) run(ctx context.Context, tb testing.TB, key string, workers map[string]int) {
	tb.Helper()
	c.perWindow = make(map[int64]int64)
	c.perRealWindow = make(map[int64]int64)
	var wg sync.WaitGroup
	for ep, n := range workers {
		cl, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Attempts: 1, Timeout: time.Second})
		if err != nil {
			tb.Fatal(err)
		}
		defer cl.Close()
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					d, err := cl.Take(ctx, key, 1)
					c.mu.Lock()
					switch {
					case err != nil:
						c.errs++
					case d.OK:
						c.perWindow[d.Window]++
						if c.realWindow > 0 {
							c.perRealWindow[locker.WindowIndex(time.Now(), c.realWindow)]++
						}
					default:
						c.sorry++
					}
					c.mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
}

// report returns the largest window count, the total and the number of
// full windows between the first and the last seen (both excluded, as
// the run started and ended inside them).
func (c *checker) report() (maxWin, total int64, windows []int64) {
	for k, n := range c.perWindow {
		maxWin = max(maxWin, n)
		total += n
		windows = append(windows, k)
	}
	sort.Slice(windows, func(i, j int) bool { return windows[i] < windows[j] })
	return maxWin, total, windows
}

// utilization returns the grants in the windows strictly between the
// first and last windows seen, as a fraction of limit per window, skipping
// skip windows at the start.
func (c *checker) utilization(limit int64, skip int) float64 {
	_, _, ws := c.report()
	if len(ws) < skip+3 {
		return 0
	}
	var sum int64
	first, last := ws[0]+int64(skip)+1, ws[len(ws)-1]-1
	for k := first; k <= last; k++ {
		sum += c.perWindow[k]
	}
	return float64(sum) / float64((last-first+1)*limit)
}

var fastKey = locker.KeyConfig{Name: "api", Limit: 100, Window: 100 * time.Millisecond}

func TestClusterStrictNeverOverLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	for _, tc := range []struct {
		name     string
		dropRate float64
		workers  []int // per node
	}{
		{"even load", 0, []int{4, 4, 4}},
		{"all load on one", 0, []int{12, 0, 0}},
		{"even load, 30% drop", 0.3, []int{4, 4, 4}},
		{"all load on one, 30% drop", 0.3, []int{12, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := newTestCluster(t, clusterConfig{n: 3, mode: peer.ModeStrict, keys: []locker.KeyConfig{fastKey},
				dropRate: tc.dropRate})
			waitAllUp(t, nodes)
			workers := map[string]int{}
			for i, n := range tc.workers {
				if n > 0 {
					workers[nodes[i].endpoint] = n
				}
			}
			var c checker
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			c.run(ctx, t, fastKey.Name, workers)
			maxWin, total, ws := c.report()
			for _, k := range ws {
				if n := c.perWindow[k]; n > fastKey.Limit {
					t.Errorf("window %d: %d grants, above the limit %d", k, n, fastKey.Limit)
				}
			}
			u := c.utilization(fastKey.Limit, 2)
			t.Logf("%d windows, %d grants, %d sorry, %d errors, busiest window %d, utilization %.0f%%",
				len(ws), total, c.sorry, c.errs, maxWin, 100*u)
			if total == 0 {
				t.Fatal("nothing granted")
			}
		})
	}
}

// hourKey has a window long enough that a test never sees it change.
var hourKey = locker.KeyConfig{Name: "slow", Limit: 1000, Window: time.Hour}

// midHour returns a clock that starts ten minutes into an hour window and
// runs at real speed, so that a test never crosses a window boundary.
func midHour() func() time.Time {
	start := time.Now()
	base := time.Unix(0, (start.UnixNano()/int64(time.Hour))*int64(time.Hour)).Add(10 * time.Minute)
	return func() time.Time { return base.Add(time.Since(start)) }
}

func remoteOf(tn *testNode, now time.Time, key string) int64 {
	for _, lc := range tn.srv.Counter().LocalAt(now) {
		if lc.Name == key {
			return lc.Remote
		}
	}
	return -1
}

func mustTake(tb testing.TB, endpoint, key string, n int) {
	tb.Helper()
	cl, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{endpoint}})
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	for i := 0; i < n; i++ {
		d, err := cl.Take(context.Background(), key, 1)
		if err != nil || !d.OK {
			tb.Fatalf("take %d: %+v, %v", i, d, err)
		}
	}
}

// TestClusterSharedRecovers: with half of all messages dropped, every
// member learns the cluster-wide count, a member that joins late too,
// within about a heartbeat.
func TestClusterSharedRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	for _, drop := range []float64{0, 0.5} {
		t.Run(fmt.Sprintf("drop %.0f%%", drop*100), func(t *testing.T) { testSharedRecovers(t, drop) })
	}
}

func testSharedRecovers(t *testing.T, drop float64) {
	now := midHour()
	cc := clusterConfig{n: 3, mode: peer.ModeShared, keys: []locker.KeyConfig{hourKey}, dropRate: drop, now: now}
	pubs := freeEndpoints(t, 3)
	nodes := []*testNode{startTestNode(t, cc, pubs, 0), startTestNode(t, cc, pubs, 1)}
	mustTake(t, nodes[0].endpoint, hourKey.Name, 50)
	mustTake(t, nodes[1].endpoint, hourKey.Name, 30)
	nodes = append(nodes, startTestNode(t, cc, pubs, 2))
	mustTake(t, nodes[2].endpoint, hourKey.Name, 7)
	want := []int64{37, 57, 80}
	start := time.Now()
	lockertest.WaitFor(t, func() bool {
		for i, n := range nodes {
			if remoteOf(n, now(), hourKey.Name) != want[i] {
				return false
			}
		}
		return true
	})
	t.Logf("views converged %s after the last grant (heartbeat %s, %.0f%% of messages dropped)",
		time.Since(start), peer.DefaultHeartbeat, 100*drop)
	// Granted in status is the cluster-wide count.
	cl, err := locker.Dial(nodes[2].endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range st.Keys {
		if k.Name == hourKey.Name && k.Granted != 87 {
			t.Errorf("status granted=%d, want 87", k.Granted)
		}
	}
}

// TestClusterStatusAndMismatch: status shows the peers and the federation,
// and a member configured with another limit is reported by the others.
func TestClusterStatusAndMismatch(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	nodes := newTestCluster(t, clusterConfig{n: 3, mode: peer.ModeStrict, keys: []locker.KeyConfig{hourKey},
		tweak: func(i int, sc *locker.Config, pc *peer.Config) {
			if i == 2 {
				sc.Keys = []locker.KeyConfig{{Name: hourKey.Name, Limit: 999, Window: hourKey.Window}}
			}
		}})
	waitAllUp(t, nodes)
	cl, err := locker.Dial(nodes[0].endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var doc struct {
		Peers []struct {
			ID             string `json:"id"`
			Up             bool   `json:"up"`
			ConfigMismatch bool   `json:"config_mismatch"`
		} `json:"peers"`
		Federation struct {
			Mode           string `json:"mode"`
			Members        int    `json:"members"`
			ConfigMismatch bool   `json:"config_mismatch"`
		} `json:"federation"`
	}
	lockertest.WaitFor(t, func() bool {
		st, err := cl.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(st.Raw, &doc); err != nil {
			t.Fatal(err)
		}
		return doc.Federation.ConfigMismatch
	})
	if doc.Federation.Mode != "strict" || doc.Federation.Members != 3 || len(doc.Peers) != 2 {
		t.Fatalf("status federation=%+v peers=%+v", doc.Federation, doc.Peers)
	}
	for _, p := range doc.Peers {
		if !p.Up || p.ConfigMismatch != (p.ID == "node2") {
			t.Errorf("peer %+v, want up and a mismatch for node2 only", p)
		}
	}
	if !nodes[2].node.ConfigMismatch() || nodes[0].node.PeerStats()[0].ConfigMismatch {
		t.Errorf("node2 sees no mismatch or node0 sees one with node1")
	}
}
