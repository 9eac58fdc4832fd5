package locker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var freeEndpoint = lockertest.FreeEndpoint

func TestClientTake(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: "api", Limit: 3, Window: time.Hour}}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}})
	ctx := t.Context()
	tests := []struct {
		name    string
		key     string
		n       int64
		wantOK  bool
		wantRem int64
		wantErr bool
	}{
		{"first", "api", 1, true, 2, false},
		{"two more", "api", 2, true, 0, false},
		{"exhausted", "api", 1, false, 0, false},
		{"above limit", "api", 4, false, 0, true},
		{"unknown key", "nope", 1, false, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := c.Take(ctx, tc.key, tc.n)
			if tc.wantErr {
				var se *locker.ServerError
				if !errors.As(err, &se) {
					t.Fatalf("Take()=%+v, %v, want a *ServerError", d, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Take: %v", err)
			}
			if d.OK != tc.wantOK || d.Remaining != tc.wantRem {
				t.Fatalf("Take()=%+v, want OK=%v Remaining=%d", d, tc.wantOK, tc.wantRem)
			}
			if d.Window != locker.WindowIndex(time.Now(), time.Hour) && d.Window != locker.WindowIndex(time.Now(), time.Hour)-1 {
				t.Fatalf("Window=%d, want the current hour's index", d.Window)
			}
		})
	}
}

func TestClientArgsCheckedLocally(t *testing.T) {
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{freeEndpoint(t)}, Timeout: time.Second})
	for _, tc := range []struct {
		key string
		n   int64
	}{{"", 1}, {"bad key", 1}, {"api", 0}, {"api", -3}} {
		if _, err := c.Take(t.Context(), tc.key, tc.n); err == nil {
			t.Errorf("Take(%q, %d) = nil error, want one", tc.key, tc.n)
		}
	}
}

func TestClientPingStatus(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{ID: "test-1", Keys: []locker.KeyConfig{{Name: "api", Limit: 3, Window: time.Hour}}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}})
	id, err := c.Ping(t.Context())
	if err != nil || id != "test-1" {
		t.Fatalf("Ping()=%q, %v, want test-1", id, err)
	}
	if _, err := c.Take(t.Context(), "api", 2); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != "test-1" || len(st.Keys) != 2 {
		t.Fatalf("Status()=%+v, want id test-1 and 2 keys", st)
	}
	if k := st.Keys[0]; k.Name != "api" || k.Limit != 3 || k.Granted != 2 || k.WindowMS != 3600000 {
		t.Fatalf("Status key=%+v, want api limit 3 granted 2 window 1h", k)
	}
}

func TestClientNoServerTimesOut(t *testing.T) {
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{freeEndpoint(t)}, Timeout: 100 * time.Millisecond, Attempts: 2})
	start := time.Now()
	_, err := c.Take(t.Context(), "default", 1)
	if !errors.Is(err, locker.ErrTimeout) {
		t.Fatalf("Take err=%v, want ErrTimeout", err)
	}
	if n := locker.ClientAttempts(c); n != 2 {
		t.Fatalf("Take made %d attempts, want 2", n)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("Take returned after %v, before its 2 attempts of 100ms", el)
	}
}

func TestClientContextEnds(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}})
	if d, err := c.Take(t.Context(), "api", 1); err != nil || !d.OK {
		t.Fatalf("Take()=%+v, %v, want go", d, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Wait(ctx, "api", 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait err=%v, want DeadlineExceeded", err)
	}
	// A cancelled context returns at once and leaves the client usable.
	cctx, ccancel := context.WithCancel(t.Context())
	ccancel()
	if _, err := c.Take(cctx, "api", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Take on cancelled ctx err=%v, want Canceled", err)
	}
	if _, err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping after cancellations: %v", err)
	}
}

func TestClientWaitAnsweredWhenWindowOpens(t *testing.T) {
	const w = 100 * time.Millisecond
	_, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: "api", Limit: 2, Window: w}}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var last int64 = -1
	for i := 0; i < 6; i++ {
		d, err := c.Wait(ctx, "api", 1)
		if err != nil {
			t.Fatal(err)
		}
		if !d.OK {
			t.Fatalf("Wait()=%+v, want go", d)
		}
		if d.Window < last {
			t.Fatalf("window went back from %d to %d", last, d.Window)
		}
		last = d.Window
	}
}

func TestClientConcurrentExactLimit(t *testing.T) {
	const limit = 7
	_, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: "api", Limit: limit, Window: time.Hour}}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}})
	var gos, sorries atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				d, err := c.Take(t.Context(), "api", 1)
				if err != nil {
					t.Error(err)
					return
				}
				if d.OK {
					gos.Add(1)
				} else {
					sorries.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	// Within one hour-long window (a boundary between would double it).
	if g := gos.Load(); g != limit && g != 2*limit {
		t.Fatalf("go=%d, want %d", g, limit)
	}
	if total := gos.Load() + sorries.Load(); total != 64*20 {
		t.Fatalf("answers=%d, want %d", total, 64*20)
	}
}

func TestClientStartedBeforeServer(t *testing.T) {
	ep := freeEndpoint(t)
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}, Timeout: 500 * time.Millisecond, Attempts: 20})
	type res struct {
		d   locker.Decision
		err error
	}
	got := make(chan res, 1)
	go func() {
		d, err := c.Take(t.Context(), "default", 1)
		got <- res{d, err}
	}()
	newTestServer(t, locker.Config{Endpoints: []string{ep}})
	select {
	case r := <-got:
		if r.err != nil || !r.d.OK {
			t.Fatalf("Take()=%+v, %v, want go", r.d, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer 10s after the server started")
	}
}

func TestClientFailover(t *testing.T) {
	_, live := newTestServer(t, locker.Config{ID: "live"})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{freeEndpoint(t), live}, Timeout: 200 * time.Millisecond})
	id, err := c.Ping(t.Context())
	if err != nil || id != "live" {
		t.Fatalf("Ping()=%q, %v, want the second endpoint's id", id, err)
	}
}

// TestClientServerRestart stops the server under a stream of requests and
// starts a new one on the same endpoint: every request still gets an
// answer.
func TestClientServerRestart(t *testing.T) {
	ep := freeEndpoint(t)
	cfg := locker.Config{Endpoints: []string{ep}, Keys: []locker.KeyConfig{{Name: "api", Limit: 1000, Window: time.Second}}}
	_, stop := startServer(t, cfg)
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}, Timeout: 200 * time.Millisecond, Attempts: 50})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var answered atomic.Int64
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := c.Take(ctx, "api", 1); err != nil {
					errs <- err
					return
				}
				answered.Add(1)
			}
		}()
	}
	waitFor(t, func() bool { return answered.Load() >= 50 })
	stop()
	_, stop2 := startServer(t, cfg)
	defer stop2()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Take during restart: %v", err)
	}
	if a := answered.Load(); a != 400 {
		t.Fatalf("answered=%d, want 400", a)
	}
}

// TestClientAgainstSeedServer talks to a REP server that answers a bare
// go or sorry to anything, like the seed design's Python server.
func TestClientAgainstSeedServer(t *testing.T) {
	rep, err := zmq.NewSocket(zmq.REP)
	if err != nil {
		t.Fatal(err)
	}
	rep.SetLinger(0)
	if err := rep.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := rep.GetLastEndpoint()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer rep.Close()
		rep.SetRcvtimeo(100 * time.Millisecond)
		n := 0
		for n < 2 {
			if _, err := rep.RecvMessageBytes(0); err != nil {
				continue
			}
			reply := "go"
			if n > 0 {
				reply = "sorry"
			}
			rep.Send(reply, 0)
			n++
		}
	}()
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}})
	d1, err1 := c.Take(t.Context(), "default", 1)
	d2, err2 := c.Take(t.Context(), "default", 1)
	<-done
	if err1 != nil || err2 != nil || !d1.OK || d2.OK {
		t.Fatalf("Take()=%+v,%v then %+v,%v; want go then sorry", d1, err1, d2, err2)
	}
}

func TestClientClose(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}})
	c, err := locker.Dial(ep)
	if err != nil {
		t.Fatal(err)
	}
	c.Take(t.Context(), "api", 1)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Wait(context.Background(), "api", 1)
		errc <- err
	}()
	waitFor(t, func() bool {
		st, err := c.Status(t.Context())
		return err == nil && st.Keys[0].Waiters == 1
	})
	c.Close()
	c.Close() // idempotent
	if err := <-errc; !errors.Is(err, locker.ErrClientClosed) {
		t.Fatalf("Wait after Close err=%v, want ErrClientClosed", err)
	}
	if _, err := c.Take(t.Context(), "api", 1); !errors.Is(err, locker.ErrClientClosed) {
		t.Fatalf("Take after Close err=%v, want ErrClientClosed", err)
	}
}

var waitFor = lockertest.WaitFor

// TestClientDoWaitOutlastsTimeout sends a raw wait whose hold is longer
// than the client's timeout: the attempt waits for the hold.
func TestClientDoWaitOutlastsTimeout(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}, Timeout: 100 * time.Millisecond, Attempts: 1})
	if _, err := c.Take(t.Context(), "api", 1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := c.Do(t.Context(), []byte("wait api 1 400"))
	if err != nil || r.Kind != locker.ReplySorry {
		t.Fatalf("Do(wait 400ms)=%+v, %v; want sorry after the hold, not a timeout", r, err)
	}
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("answered after %v, before the 400ms hold", el)
	}
}
