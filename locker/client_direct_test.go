package locker_test

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// TestClientDirectLoneCaller makes requests one at a time, after a burst
// of concurrent ones that the loop served: the caller sends them and
// receives the answers itself, without the loop, and the answers are the
// server's.
func TestClientDirectLoneCaller(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: "api", Limit: 30, Window: time.Hour}}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Ping(t.Context()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	before := locker.ClientDirect(c)
	for i := range 40 {
		d, err := c.Take(t.Context(), "api", 1)
		if err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
		if want := i < 30; d.OK != want {
			t.Fatalf("take %d: OK=%v, want %v", i, d.OK, want)
		}
	}
	// The loop takes the socket back for a moment on each tick, so a
	// few calls may go through it; most must not.
	if n := locker.ClientDirect(c) - before; n < 20 {
		t.Errorf("%d of 40 lone calls were sent by their callers, want most", n)
	}
}

// TestClientDirectHandoff has a ROUTER hold its answer until the caller
// has given up waiting for it on the socket and left the call to the
// loop; it then sends a stale answer (another id) and the real one. The
// loop must deliver the real one. A call that the loop sent itself (it
// was busy when the call came) is answered at once and tried again.
func TestClientDirectHandoff(t *testing.T) {
	router, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	router.SetLinger(0)
	router.SetRcvtimeo(10 * time.Second)
	if err := router.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := router.GetLastEndpoint()
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}, Timeout: 10 * time.Second, Attempts: 1})
	type answer struct {
		d   locker.Decision
		err error
	}
	for try := range 5 {
		direct := locker.ClientDirect(c)
		got := make(chan answer, 1)
		go func() {
			d, err := c.Take(t.Context(), "api", 1)
			got <- answer{d, err}
		}()
		msg, err := router.RecvMessageBytes(0)
		if err != nil || len(msg) != 4 || len(msg[1]) != 8 {
			t.Fatalf("router got %q, %v; want [peer id \"\" body]", msg, err)
		}
		if locker.ClientDirect(c) == direct { // the loop sent it
			router.SendMessage(msg[0], msg[1], "", "go 7 0 1")
			if a := <-got; a.err != nil {
				t.Fatalf("try %d: %v", try, a.err)
			}
			continue
		}
		waitFor(t, func() bool { return locker.ClientHandoffs(c) == 1 })
		stale := make([]byte, 8)
		binary.BigEndian.PutUint64(stale, binary.BigEndian.Uint64(msg[1])+1000)
		router.SendMessage(msg[0], stale, "", "sorry 0 1")
		router.SendMessage(msg[0], msg[1], "", "go 7 0 1")
		a := <-got
		if a.err != nil || !a.d.OK || a.d.Remaining != 7 {
			t.Fatalf("Take() = %+v, %v; want the real answer, go 7", a.d, a.err)
		}
		return
	}
	t.Fatal("no call of 5 was sent by its caller")
}

// TestClientDirectNotWhenOverlapping has 16 goroutines take at once:
// their calls overlap, so the loop sends them (in batches) and callers
// do not take turns on the socket, each for a whole round trip. Only a
// goroutine left alone (at the start or the end) sends its own.
func TestClientDirectNotWhenOverlapping(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: "api", Limit: 100000, Window: time.Hour}}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}})
	const goroutines, each = 16, 50
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range each {
				if _, err := c.Take(t.Context(), "api", 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := locker.ClientDirect(c); n > goroutines*each/10 {
		t.Errorf("%d of %d overlapping calls were sent by their callers, want few", n, goroutines*each)
	}
}
