package peer_test

import (
	"net"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	"github.com/lockerd/lockerd/peer"
)

// TestFederationIPv6 runs two members that publish on [::1] and hear each
// other: without ZMQ_IPV6 on the PUB and SUB sockets the bind fails.
func TestFederationIPv6(t *testing.T) {
	lockertest.SkipWithoutIPv6(t)
	var pubs []string
	for range 2 {
		l, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, "tcp://"+l.Addr().String())
		l.Close()
	}
	nodes := newTestCluster(t, clusterConfig{n: 2, mode: peer.ModeStrict, keys: []locker.KeyConfig{{Name: "api", Limit: 10, Window: time.Hour}},
		tweak: func(i int, sc *locker.Config, pc *peer.Config) {
			sc.Endpoints = []string{"tcp://[::1]:*"}
			pc.Publish, pc.Peers = pubs[i], pubs
		}})
	waitAllUp(t, nodes)
}
