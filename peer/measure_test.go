package peer_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/peer"
)

// TestMeasure prints utilization and over-admission of three members
// under load; it asserts nothing about them (timing on a shared machine
// varies) and runs only with PEER_MEASURE=1:
//
//	PEER_MEASURE=1 go test -run TestMeasure -v -count=1 ./peer/
func TestMeasure(t *testing.T) {
	if os.Getenv("PEER_MEASURE") == "" {
		t.Skip("set PEER_MEASURE=1 to measure")
	}
	dur := 3 * time.Second
	for _, tc := range []struct {
		name    string
		mode    peer.Mode
		workers []int
		skew    time.Duration // of member 1's clock
	}{
		{"strict even", peer.ModeStrict, []int{8, 8, 8}, 0},
		{"strict one", peer.ModeStrict, []int{24, 0, 0}, 0},
		{"strict two of three", peer.ModeStrict, []int{12, 12, 0}, 0},
		{"shared even", peer.ModeShared, []int{8, 8, 8}, 0},
		{"shared one", peer.ModeShared, []int{24, 0, 0}, 0},
		{"shared two of three", peer.ModeShared, []int{12, 12, 0}, 0},
		{"strict even, member 1 clock +20ms", peer.ModeStrict, []int{8, 8, 8}, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := clusterConfig{n: 3, mode: tc.mode, keys: []locker.KeyConfig{fastKey}}
			if tc.skew != 0 {
				cc.tweak = func(i int, sc *locker.Config, pc *peer.Config) {
					if i == 1 {
						sc.Now = func() time.Time { return time.Now().Add(tc.skew) }
						pc.Now = sc.Now
					}
				}
			}
			nodes := newTestCluster(t, cc)
			waitAllUp(t, nodes)
			workers := map[string]int{}
			for i, n := range tc.workers {
				if n > 0 {
					workers[nodes[i].endpoint] = n
				}
			}
			c := checker{realWindow: fastKey.Window}
			ctx, cancel := context.WithTimeout(context.Background(), dur)
			defer cancel()
			c.run(ctx, t, fastKey.Name, workers)
			maxWin, total, ws := c.report()
			var over, overWins int64
			for _, k := range ws {
				if n := c.perWindow[k]; n > fastKey.Limit {
					over += n - fastKey.Limit
					overWins++
				}
			}
			t.Logf("%s: %d windows, %d grants, %d sorry; utilization %.1f%% of %d/%s; busiest window %d; "+
				"over the limit: %d grants (%.2f%% of grants) in %d windows",
				tc.name, len(ws), total, c.sorry, 100*c.utilization(fastKey.Limit, 0), fastKey.Limit, fastKey.Window,
				maxWin, over, 100*float64(over)/float64(max(total, 1)), overWins)
			var realOver, realMax int64
			for _, n := range c.perRealWindow {
				realMax = max(realMax, n)
				realOver += max(0, n-fastKey.Limit)
			}
			if tc.skew != 0 {
				for _, p := range nodes[0].node.PeerStats() {
					t.Logf("%s: node0 estimates the clock offset of %s at %s", tc.name, p.Name, p.ClockOffset)
				}
			}
			t.Logf("%s: by the checker's clock: busiest window %d, %d grants (%.2f%%) over the limit",
				tc.name, realMax, realOver, 100*float64(realOver)/float64(max(total, 1)))
		})
	}
}
