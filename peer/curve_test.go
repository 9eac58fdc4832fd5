package peer_test

import (
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/curve"
	"github.com/lockerd/lockerd/locker/lockertest"
	"github.com/lockerd/lockerd/peer"
	zmq "github.com/pebbe/zmq4"
)

// curveTweak makes every member use the cluster key pair kp for its PUB
// (server) and SUB (client) sockets.
func curveTweak(tb testing.TB, kp curve.KeyPair) func(int, *locker.Config, *peer.Config) {
	cs, err := curve.NewServer(kp.Secret, []string{kp.Public})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cs.Close)
	sub, err := curve.Client(kp.Public, kp)
	if err != nil {
		tb.Fatal(err)
	}
	return func(_ int, _ *locker.Config, pc *peer.Config) {
		pc.PubSecurity, pc.SubSecurity = cs.Apply, sub
	}
}

// TestCurvePeers checks that members sharing the cluster key exchange
// counts, that a stranger cannot read the stream, and that grants a
// stranger publishes at a member's endpoint are not counted.
func TestCurvePeers(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	kp, err := curve.NewKeyPair()
	if err != nil {
		t.Skipf("no CURVE: %v", err)
	}
	now := midHour()
	pubs := freeEndpoints(t, 3)
	cc := clusterConfig{n: 3, mode: peer.ModeShared, keys: []locker.KeyConfig{hourKey}, now: now, tweak: curveTweak(t, kp)}
	// Members 0 and 1 run; member 2's endpoint is taken by a stranger
	// who publishes without the cluster key.
	nodes := []*testNode{startTestNode(t, cc, pubs, 0), startTestNode(t, cc, pubs, 1)}
	strangerKP, _ := curve.NewKeyPair()
	strangerCS, err := curve.NewServer(strangerKP.Secret, []string{kp.Public})
	if err != nil {
		t.Fatal(err)
	}
	defer strangerCS.Close()
	stranger, err := zmq.NewSocket(zmq.PUB)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	stranger.SetLinger(0)
	strangerCS.Apply(stranger)
	if err := stranger.Bind(pubs[2]); err != nil {
		t.Fatal(err)
	}
	fake := &peer.Message{Type: peer.TypeCounts, From: "node2", Sent: now().UnixNano(),
		Counts: []peer.Count{{Key: hourKey.Name, Window: locker.WindowIndex(now(), hourKey.Window), Granted: 999, Asked: 999}}}
	fakeBytes, err := peer.Encode(nil, fake)
	if err != nil {
		t.Fatal(err)
	}

	mustTake(t, nodes[0].endpoint, hourKey.Name, 5)
	lockertest.WaitFor(t, func() bool {
		return remoteOf(nodes[1], now(), hourKey.Name) == 5
	})
	// Publish the fake grants for a while: no member may count them.
	for i := 0; i < 20; i++ {
		stranger.SendBytes(fakeBytes, zmq.DONTWAIT)
		time.Sleep(10 * time.Millisecond) // a publisher's pace; nothing to await
	}
	for i, want := range []int64{0, 5} { // grants by the others: member 1 took none
		if r := remoteOf(nodes[i], now(), hourKey.Name); r != want {
			t.Errorf("member %d counts %d from others, want %d: a stranger's grants were counted", i, r, want)
		}
	}

	// A stranger subscribing to member 0 receives nothing.
	sub, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	sub.SetLinger(0)
	sub.SetSubscribe("")
	sub.SetRcvtimeo(500 * time.Millisecond) // several heartbeats
	sc, _ := curve.Client(kp.Public, strangerKP)
	sc(sub)
	sub.Connect(pubs[0])
	if b, err := sub.RecvBytes(0); err == nil {
		t.Fatalf("a stranger read %d bytes of the stream", len(b))
	}
	plain, _ := zmq.NewSocket(zmq.SUB)
	defer plain.Close()
	plain.SetLinger(0)
	plain.SetSubscribe("")
	plain.SetRcvtimeo(500 * time.Millisecond)
	plain.Connect(pubs[0])
	if b, err := plain.RecvBytes(0); err == nil {
		t.Fatalf("a plaintext subscriber read %d bytes of the stream", len(b))
	}
}
