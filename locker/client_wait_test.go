package locker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	zmq "github.com/pebbe/zmq4"
)

func TestClientWaitUntil(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{Keys: []locker.KeyConfig{
		{Name: "hour", Limit: 1, Window: time.Hour},
		{Name: "fast", Limit: 1, Window: 100 * time.Millisecond},
	}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}, FirstHold: 50 * time.Millisecond})
	for _, key := range []string{"hour", "fast"} {
		if d, err := c.Take(t.Context(), key, 1); err != nil || !d.OK {
			t.Fatalf("Take(%s) = %+v, %v; want go", key, d, err)
		}
	}
	tests := []struct {
		name   string
		key    string
		wait   time.Duration
		wantOK bool
	}{
		{"granted when the window opens", "fast", time.Minute, true},
		{"sorry when the deadline passes", "hour", 300 * time.Millisecond, false},
		{"no deadline", "fast", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var deadline time.Time
			if tc.wait > 0 {
				deadline = time.Now().Add(tc.wait)
			}
			d, err := c.WaitUntil(t.Context(), tc.key, 1, deadline)
			if err != nil || d.OK != tc.wantOK {
				t.Fatalf("WaitUntil = %+v, %v; want OK=%v", d, err, tc.wantOK)
			}
			if !tc.wantOK && time.Now().Before(deadline) {
				t.Fatalf("sorry before the deadline")
			}
		})
	}
	dead := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{freeEndpoint(t)}, Timeout: 50 * time.Millisecond, Attempts: 2, FirstHold: 10 * time.Millisecond})
	if _, err := dead.WaitUntil(t.Context(), "hour", 1, time.Time{}); !errors.Is(err, locker.ErrTimeout) {
		t.Fatalf("WaitUntil with no server: %v, want ErrTimeout", err)
	}
}

// TestClientWaitFailoverKeepsHold sends a wait held up to 500ms to a dead
// endpoint, then (after the attempt times out) to a ROUTER that records
// what it gets: the resent request asks to be held for what is left of
// the first hold, here nothing, not for another 500ms.
func TestClientWaitFailoverKeepsHold(t *testing.T) {
	router, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	router.SetLinger(0)
	if err := router.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := router.GetLastEndpoint()
	got := make(chan string, 1)
	go func() {
		defer router.Close()
		router.SetRcvtimeo(10 * time.Second)
		msg, err := router.RecvMessageBytes(0)
		if err != nil || len(msg) != 4 {
			got <- ""
			return
		}
		got <- string(msg[3])
		router.SendMessage(msg[0], msg[1], "", "sorry")
	}()
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{freeEndpoint(t), ep}, Timeout: 100 * time.Millisecond})
	d, err := c.WaitMax(t.Context(), "api", 1, 500*time.Millisecond)
	if err != nil || d.OK {
		t.Fatalf("WaitMax = %+v, %v; want the ROUTER's sorry", d, err)
	}
	if body := <-got; body != "wait api 1 0" {
		t.Fatalf("the resent request was %q, want \"wait api 1 0\"", body)
	}
}
