package peer_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	"github.com/lockerd/lockerd/peer"
	zmq "github.com/pebbe/zmq4"
)

// tenantTemplate is the template of the cluster tests of keys made on
// demand: a short window, so that a test sees many.
var tenantTemplate = locker.KeyConfig{Name: "t:*", Limit: 12, Window: 100 * time.Millisecond}

// jumpClock runs at real speed from a window boundary, and jumps forward
// when told: the servers sweep idle keys every few seconds of their
// clock, which a test reaches by a jump instead of a wait.
type jumpClock struct {
	start time.Time
	base  time.Time
	extra atomic.Int64
}

func newJumpClock() *jumpClock {
	now := time.Now()
	return &jumpClock{start: now, base: now}
}

func (c *jumpClock) now() time.Time {
	return c.base.Add(time.Since(c.start) + time.Duration(c.extra.Load()))
}

func (c *jumpClock) jump(d time.Duration) { c.extra.Add(int64(d)) }

// tenantGrants counts go answers per key, window and member.
type tenantGrants struct {
	mu     sync.Mutex
	byNode map[[2]string]map[int64]int64 // {key, node} -> window -> grants
	total  map[string]map[int64]int64    // key -> window -> grants
	sorry  int64
}

func (g *tenantGrants) add(key, node string, window int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byNode == nil {
		g.byNode = make(map[[2]string]map[int64]int64)
		g.total = make(map[string]map[int64]int64)
	}
	kn := [2]string{key, node}
	if g.byNode[kn] == nil {
		g.byNode[kn] = make(map[int64]int64)
	}
	if g.total[key] == nil {
		g.total[key] = make(map[int64]int64)
	}
	g.byNode[kn][window]++
	g.total[key][window]++
}

// hammer runs workers goroutines per member of load (member index ->
// workers), each taking tokens of the tenants in turn, until d has passed.
func (g *tenantGrants) hammer(tb testing.TB, nodes []*testNode, load map[int]int, tenants []string, d time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for i, workers := range load {
		cl, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{nodes[i].endpoint}, Attempts: 1, Timeout: time.Second})
		if err != nil {
			tb.Fatal(err)
		}
		defer cl.Close()
		node := fmt.Sprint(i)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := w; ctx.Err() == nil; n++ {
					key := tenants[n%len(tenants)]
					d, err := cl.Take(ctx, key, 1)
					switch {
					case err != nil:
					case d.OK:
						g.add(key, node, d.Window)
					default:
						g.mu.Lock()
						g.sorry++
						g.mu.Unlock()
					}
				}
			}()
		}
	}
	wg.Wait()
}

// TestClusterTemplateKeys runs three members, in shared and in strict
// mode, with the template t:*=12/100ms and twelve tenants, under load that
// moves from one member to another while a third goes silent, and checks
// that no tenant gets more than 12 grants in any window cluster wide;
// that the busy member gets more than its share (4) of a tenant's
// window, the others' unasked tokens; that once the load stops every key
// is dropped on every member (memory returns); and that a member then
// publishes only the keys live on it: a key in use, reported with zeros
// by a member that was never asked for it, and no idle key.
func TestClusterTemplateKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	for _, mode := range []peer.Mode{peer.ModeShared, peer.ModeStrict} {
		t.Run(mode.String(), func(t *testing.T) { testClusterTemplateKeys(t, mode) })
	}
}

func testClusterTemplateKeys(t *testing.T, mode peer.Mode) {
	clock := newJumpClock()
	nodes := newTestCluster(t, clusterConfig{n: 3, mode: mode, keys: []locker.KeyConfig{tenantTemplate}, now: clock.now})
	waitAllUp(t, nodes)
	var tenants []string
	for i := 0; i < 12; i++ {
		tenants = append(tenants, fmt.Sprintf("t:%d", i))
	}
	var g tenantGrants
	g.hammer(t, nodes, map[int]int{0: 6}, tenants, 600*time.Millisecond)
	g.hammer(t, nodes, map[int]int{1: 5, 2: 1}, tenants, 600*time.Millisecond)
	nodes[2].stop() // silent from now on: its share stays its own
	g.hammer(t, nodes, map[int]int{0: 3, 1: 3}, tenants, 600*time.Millisecond)

	var windows, grants, over int64
	for key, byWin := range g.total {
		for w, n := range byWin {
			windows++
			grants += n
			if n > tenantTemplate.Limit {
				over++
				t.Errorf("%s window %d: %d grants, above the limit %d", key, w, n, tenantTemplate.Limit)
			}
		}
	}
	var busiest int64 // the most one member granted of one tenant's window
	for kn, byWin := range g.byNode {
		if kn[1] != "0" && kn[1] != "1" {
			continue
		}
		for _, n := range byWin {
			busiest = max(busiest, n)
		}
	}
	t.Logf("%s: %d tenant windows, %d grants, %d sorry, %d windows over, busiest member window %d",
		mode, windows, grants, g.sorry, over, busiest)
	if share := locker.Share(tenantTemplate.Limit, 3, 0); busiest <= share {
		t.Errorf("no member granted more than its share %d of a tenant's window: tokens did not move", share)
	}

	// The load stopped: the clock jumps past the servers' sweep interval
	// until every key made on demand is dropped on the members up.
	up := nodes[:2]
	lockertest.WaitFor(t, func() bool {
		for _, n := range up {
			if n.srv.Counter().LiveKeys() != 0 {
				clock.jump(6 * time.Second)
				return false
			}
		}
		return true
	})

	// One tenant is used on member 0 only: members 0 and 1 publish it,
	// member 1 with zeros, and nothing else made on demand.
	checkPublished(t, up, clock, "t:live")
}

// checkPublished takes tokens of key on nodes[0] until a heartbeat of
// every node in nodes reports it, reading what they publish: every key
// they report must be the default key or key, and the others report
// key with nothing granted or asked.
func checkPublished(t *testing.T, nodes []*testNode, clock *jumpClock, key string) {
	t.Helper()
	sub, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	sub.SetLinger(0)
	sub.SetRcvtimeo(50 * time.Millisecond)
	sub.SetSubscribe("")
	for _, n := range nodes {
		if err := sub.Connect(n.pub); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{nodes[0].endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reported := map[string]bool{} // node id -> a heartbeat reported key
	deadline := time.Now().Add(10 * time.Second)
	for len(reported) < len(nodes) {
		if time.Now().After(deadline) {
			t.Fatalf("within 10s, heartbeats reporting %s came from %v only", key, reported)
		}
		if _, err := cl.Take(context.Background(), key, 1); err != nil {
			t.Fatal(err)
		}
		b, err := sub.RecvBytes(0)
		if err != nil {
			continue // nothing within the receive timeout
		}
		m, err := peer.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range m.Counts {
			switch {
			case c.Key != locker.DefaultKey && c.Key != key:
				t.Fatalf("%s published %s, a key idle everywhere: %+v", m.From, c.Key, c)
			case c.Key == key && m.From != "node0" && (c.Granted != 0 || c.Asked != 0):
				t.Fatalf("%s, never asked for %s, published %+v", m.From, key, c)
			case c.Key == key && m.Type == peer.TypeHeartbeat:
				reported[m.From] = true
			}
		}
	}
}
