package locker_test

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	zmq "github.com/pebbe/zmq4"
)

// stepClock is a clock a test sets by hand. It counts the readings made
// since it was last set.
type stepClock struct {
	mu    sync.Mutex
	ns    int64
	reads int
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return time.Unix(0, c.ns)
}

func (c *stepClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ns, c.reads = t.UnixNano(), 0
}

func (c *stepClock) readsSinceSet() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// reqSocket is a DEALER socket sending requests tagged with an id, used
// by one goroutine.
type reqSocket struct {
	tb   testing.TB
	sock *zmq.Socket
}

func dialDealer(tb testing.TB, ep string) *reqSocket {
	tb.Helper()
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		tb.Fatal(err)
	}
	s.SetLinger(0)
	s.SetRcvtimeo(10 * time.Second)
	if err := s.Connect(ep); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return &reqSocket{tb: tb, sock: s}
}

func (r *reqSocket) send(id uint64, body string) {
	r.tb.Helper()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	if _, err := r.sock.SendMessage(b[:], "", body); err != nil {
		r.tb.Fatal(err)
	}
}

func (r *reqSocket) recv() (uint64, string) {
	r.tb.Helper()
	msg, err := r.sock.RecvMessageBytes(0)
	if err != nil || len(msg) != 3 || len(msg[0]) != 8 {
		r.tb.Fatalf("reply %q, %v", msg, err)
	}
	return binary.BigEndian.Uint64(msg[0]), string(msg[2])
}

// settle returns the replies the server sends once it has served its
// held waits at the time the clock was last set to. The server reads the
// clock only to serve waits (no take is sent meanwhile), one pass at a
// time: once it has read the clock twice since it was set, a whole pass at
// that time is over and its replies are sent. Pings wake the server's loop
// until then; the replies on one socket keep their order, so those of the
// pass come before the answer to a ping sent after it.
func (r *reqSocket) settle(clock *stepClock) []string {
	r.tb.Helper()
	var got []string
	for id := uint64(1 << 60); ; id++ {
		done := clock.readsSinceSet() >= 2
		r.send(id, "ping")
		for {
			rid, body := r.recv()
			if rid == id {
				break
			}
			got = append(got, fmt.Sprintf("%d:%s", rid, body))
		}
		if done {
			return got
		}
	}
}

// TestWaitOnSlidingAndGCRA holds waits on sliding, gcra and multi-limit
// keys with the server's clock stopped, then moves the clock to 1ns before
// and to the instant each wait's tokens come back: no wait is answered
// early, each is answered at that instant, in the order they came.
func TestWaitOnSlidingAndGCRA(t *testing.T) {
	const k0 = 1_800_000_000
	base := time.Unix(k0, 0)
	ms := time.Millisecond
	type step struct {
		at   time.Duration // clock, from base
		want string        // replies before the ping's, joined by " | "
	}
	tests := []struct {
		spec  string
		takes []time.Duration // one token each, before the waits
		waits []int64         // N of each wait, ids 1, 2, ...
		steps []step
	}{
		{"k=2/1s/sliding", []time.Duration{100 * ms, 400 * ms}, []int64{1, 1, 2}, []step{
			{1100*ms - 1, ""},
			{1100 * ms, fmt.Sprintf("1:go 0 1000 %d", k0+1)},
			{1400*ms - 1, ""},
			{1400 * ms, fmt.Sprintf("2:go 0 1000 %d", k0+1)},
			{2400*ms - 1, ""},
			{2400 * ms, fmt.Sprintf("3:go 0 1000 %d", k0+2)},
		}},
		{"k=4/1s/gcra:2", []time.Duration{0, 0}, []int64{1, 2, 1}, []step{
			{250*ms - 1, ""},
			{250 * ms, fmt.Sprintf("1:go 0 500 %d", k0)},
			{749 * ms, ""},
			// two tokens back at 750ms: wait 2 takes both, wait 3 is held
			{750 * ms, fmt.Sprintf("2:go 0 500 %d", k0)},
			{1000*ms - 1, ""},
			{1000 * ms, fmt.Sprintf("3:go 0 500 %d", k0+1)},
		}},
		{"k=3/1s/sliding+1/300ms/sliding", []time.Duration{0}, []int64{1, 1, 1}, []step{
			{300*ms - 1, ""},
			{300 * ms, fmt.Sprintf("1:go 0 300 %d", k0*10/3+1)},
			{600 * ms, fmt.Sprintf("2:go 0 1000 %d", k0)},
			// the 1s part is spent until 1000ms
			{999 * ms, ""},
			// both parts end with 0 left: the reply is the one whose
			// tokens are all back later
			{1000 * ms, fmt.Sprintf("3:go 0 1000 %d", k0+1)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			k, err := locker.ParseKeySpec(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			clock := &stepClock{}
			srv := lockertest.NewServer(t, locker.Config{Now: clock.Now, Keys: []locker.KeyConfig{k}})
			s := dialDealer(t, srv.Endpoint)
			for i, at := range tc.takes {
				clock.Set(base.Add(at))
				s.send(uint64(100+i), "take k")
				if _, r := s.recv(); !strings.HasPrefix(r, "go ") {
					t.Fatalf("take %d: %q", i, r)
				}
			}
			for i, n := range tc.waits {
				s.send(uint64(i+1), fmt.Sprintf("wait k %d 600000", n))
			}
			if got := s.settle(clock); len(got) != 0 {
				t.Fatalf("answered before the clock moved: %q", got)
			}
			held := int64(len(tc.waits))
			for _, st := range tc.steps {
				clock.Set(base.Add(st.at))
				got := strings.Join(s.settle(clock), " | ")
				if got != st.want {
					t.Fatalf("clock at %v: replies %q, want %q", st.at, got, st.want)
				}
				if got != "" {
					held--
				}
				for _, ks := range srv.Stats().Keys {
					if ks.Name == "k" && ks.Waiters != held {
						t.Fatalf("clock at %v: %d held, want %d", st.at, ks.Waiters, held)
					}
				}
			}
		})
	}
}

// TestRetryMSOnTheWire takes from sliding, gcra and multi-limit keys
// through a server on an injected clock until sorry, then resends the
// request RETRY_MS later (the reply rounds up to whole milliseconds):
// it is granted, every time.
func TestRetryMSOnTheWire(t *testing.T) {
	base := time.Unix(1_800_000_000, 0).Add(123456789) // not on a millisecond
	for _, spec := range []string{"k=3/1s/sliding", "k=3/1s/gcra", "k=3/1s/gcra:1", "k=7/700ms/gcra:2+3/1s/sliding", "k=2/250ms+3/1s/sliding"} {
		t.Run(spec, func(t *testing.T) {
			k, err := locker.ParseKeySpec(spec)
			if err != nil {
				t.Fatal(err)
			}
			clock := &stepClock{}
			clock.Set(base)
			srv := lockertest.NewServer(t, locker.Config{Now: clock.Now, Keys: []locker.KeyConfig{k}})
			s := dialDealer(t, srv.Endpoint)
			now, sorries := base, 0
			for i := uint64(0); sorries < 8 && i < 200; i++ {
				s.send(i, "take k")
				_, body := s.recv()
				r, err := locker.ParseReply([]byte(body))
				if err != nil || !r.Full {
					t.Fatalf("reply %q: %v", body, err)
				}
				if r.Decision.OK {
					now = now.Add(time.Duration(i%3) * 37 * time.Millisecond)
					clock.Set(now)
					continue
				}
				sorries++
				now = now.Add(r.Decision.RetryAfter)
				clock.Set(now)
				s.send(1000+i, "take k")
				if _, body := s.recv(); !strings.HasPrefix(body, "go ") {
					t.Fatalf("resent %v after %q: %q", r.Decision.RetryAfter, "sorry", body)
				}
			}
			if sorries < 8 {
				t.Fatalf("only %d sorry replies: the test checks too little", sorries)
			}
		})
	}
}
