package peer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	"github.com/lockerd/lockerd/peer"
)

// TestClusterRestartNewIDs restarts member 2 of three 20 times, each time
// under a new id (as a member whose default id is host:port does in a new
// container), granting 2 tokens per run in one hour-long window. Members
// 0 and 1 count every run's grants: more ids than they track at once are
// seen, the old ones are forgotten with their grants kept, and the new
// ones are never ignored.
func TestClusterRestartNewIDs(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	now := midHour()
	const restarts = 20
	cc := clusterConfig{n: 3, mode: peer.ModeShared, keys: []locker.KeyConfig{hourKey}, now: now}
	run := 0
	cc.tweak = func(i int, sc *locker.Config, pc *peer.Config) {
		if i == 2 {
			sc.ID = fmt.Sprintf("node2-run%d", run)
			pc.ID = sc.ID
		}
	}
	pubs := freeEndpoints(t, 3)
	nodes := []*testNode{startTestNode(t, cc, pubs, 0), startTestNode(t, cc, pubs, 1)}
	mustTake(t, nodes[1].endpoint, hourKey.Name, 5)
	for run = 0; run < restarts; run++ {
		n2 := startTestNode(t, cc, pubs, 2)
		mustTake(t, n2.endpoint, hourKey.Name, 2)
		want := int64(2 * (run + 1))
		lockertest.WaitFor(t, func() bool {
			return remoteOf(nodes[0], now(), hourKey.Name) == 5+want && remoteOf(nodes[1], now(), hourKey.Name) == want
		})
		n2.stop()
		waitPortFree(t, pubs[2])
	}
	for i, n := range nodes {
		if got := len(n.node.PeerStats()); got > 2*3+8 {
			t.Errorf("member %d tracks %d ids", i, got)
		}
	}
}

// TestClusterStrictWaitAboveShare: three strict members with a share of 1
// each of 3 per window, clients busy on every member; a wait for 2 tokens
// sent to any member is granted (the others hand that member their shares
// of a window for it) instead of being held until it expires, and no
// window goes over the limit.
func TestClusterStrictWaitAboveShare(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	small := locker.KeyConfig{Name: "small", Limit: 3, Window: 100 * time.Millisecond}
	nodes := newTestCluster(t, clusterConfig{n: 3, mode: peer.ModeStrict, keys: []locker.KeyConfig{small}})
	waitAllUp(t, nodes)
	workers := map[string]int{}
	for _, n := range nodes {
		workers[n.endpoint] = 2
	}
	var c checker
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx, t, small.Name, workers) }()
	defer func() { cancel(); <-done }()
	waited := map[int64]int64{}
	for i, n := range nodes {
		cl, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{n.endpoint}})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		d, err := cl.WaitMax(context.Background(), small.Name, 2, 5*time.Second)
		cl.Close()
		if err != nil || !d.OK {
			t.Fatalf("member %d: wait for 2 answered %+v, %v; want go", i, d, err)
		}
		t.Logf("member %d: wait for 2 granted after %s (windows of %s)", i, time.Since(start).Round(time.Millisecond), small.Window)
		waited[d.Window] += 2
	}
	cancel()
	<-done
	for k, n := range waited {
		c.perWindow[k] += n
	}
	for k, n := range c.perWindow {
		if n > small.Limit {
			t.Errorf("window %d: %d grants, above the limit %d", k, n, small.Limit)
		}
	}
}

// TestClusterStrictWaitBeyondReach: three strict members with a share of
// 1 each of 3 per window; one stops. A wait for 3 tokens, which only all
// three members together could bring, is refused at once with an error
// saying why, instead of being held for nothing; a wait for 2, which the
// two members up can bring, is still accepted.
func TestClusterStrictWaitBeyondReach(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	small := locker.KeyConfig{Name: "small", Limit: 3, Window: 100 * time.Millisecond}
	nodes := newTestCluster(t, clusterConfig{n: 3, mode: peer.ModeStrict, keys: []locker.KeyConfig{small}})
	waitAllUp(t, nodes)
	nodes[2].stop()
	lockertest.WaitFor(t, func() bool {
		for _, p := range nodes[0].node.PeerStats() {
			if !p.Up {
				return true
			}
		}
		return false
	})
	cl, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{nodes[0].endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Its hold would outlast the test's own deadline: only a refusal
	// ends it before ctx does.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = cl.WaitMax(ctx, small.Name, 3, time.Hour)
	var se *locker.ServerError
	if !errors.As(err, &se) || !strings.Contains(se.Error(), "members up") {
		t.Fatalf("wait for 3 with a member down: %v, want a server error naming the members up", err)
	}
	if _, err := cl.WaitMax(ctx, small.Name, 2, 50*time.Millisecond); err != nil {
		t.Fatalf("wait for 2 with two members up: %v, want go or sorry", err)
	}
}
