//go:build linux && !lockerpipe

package locker_test

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// loopStates returns the scheduling state of the goroutines running a
// client's loop ("IO wait", "syscall", "runnable"...), from a dump of
// every goroutine.
func loopStates() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var states []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if !bytes.Contains(g, []byte("locker.(*Client).loop(")) {
			continue
		}
		// "goroutine 12 [IO wait, 2 minutes]:"
		head, _, _ := bytes.Cut(g, []byte("\n"))
		i, j := bytes.IndexByte(head, '['), bytes.IndexAny(head, ",]")
		if i >= 0 && j > i {
			states = append(states, string(head[i+1:j]))
		}
	}
	return states
}

// TestClientIdleLoopParks: the loop of a client with nothing pending, not
// woken for a while, sleeps parked in the runtime's poller, not in a
// system call. A thread
// blocked in a system call keeps one of the process's Ps until sysmon
// takes it back, up to 10 ms later on a busy process: two idle clients
// beside a busy one (as in bench/lockcmp) tripled the busy one's p99.
func TestClientIdleLoopParks(t *testing.T) {
	srv := lockertest.NewServer(t, locker.Config{
		Keys: []locker.KeyConfig{{Name: "k", Limit: locker.MaxLimit, Window: time.Second}},
	})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{srv.Endpoint}})
	if _, err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Asleep, unwoken for a while (idleParkAfter): parked in the
	// runtime's poller. The old way, in epoll_wait, the state stays
	// "syscall" and WaitFor fails.
	lockertest.WaitFor(t, func() bool {
		s := loopStates()
		return len(s) == 1 && s[0] == "IO wait"
	})
	// It still wakes for a call, each time it went back to sleep: a
	// wait request goes through the loop, never the caller's direct
	// path.
	for i := range 3 {
		lockertest.WaitFor(t, func() bool {
			s := loopStates()
			return len(s) == 1 && s[0] == "IO wait"
		})
		if d, err := c.Wait(context.Background(), "k", 1); err != nil || !d.OK {
			t.Fatalf("wait %d after sleeping: %+v, %v", i, d, err)
		}
	}
	if n := locker.ClientDirect(c); n > 1 {
		t.Errorf("%d calls went by the direct path, want at most the ping", n)
	}
}
