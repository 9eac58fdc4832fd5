package locker_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	zmq "github.com/pebbe/zmq4"
)

// newTestServer runs a server on a free loopback port until the test ends
// and returns it with its endpoint.
func newTestServer(tb testing.TB, cfg locker.Config) (*locker.Server, string) {
	tb.Helper()
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = []string{"tcp://127.0.0.1:*"}
	}
	srv, stop := startServer(tb, cfg)
	tb.Cleanup(stop)
	return srv, srv.Endpoints()[0]
}

// startServer runs a server and returns a function that stops it and
// waits for Run to return.
//
// A port just released by a stopped server may still be held by ZeroMQ's
// I/O thread for a moment, so a bind that finds it in use is retried for
// up to 5 seconds.
func startServer(tb testing.TB, cfg locker.Config) (*locker.Server, func()) {
	tb.Helper()
	var (
		srv    *locker.Server
		cancel context.CancelFunc
		done   chan error
	)
	for deadline := time.Now().Add(5 * time.Second); ; {
		var err error
		srv, err = locker.NewServer(cfg)
		if err != nil {
			tb.Fatalf("NewServer: %v", err)
		}
		var ctx context.Context
		ctx, cancel = context.WithCancel(context.Background())
		done = make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		select {
		case <-srv.Ready():
		case err := <-done:
			cancel()
			if strings.Contains(err.Error(), "address already in use") && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond) // the port is freed by another thread, with no event to await
				continue
			}
			tb.Fatalf("Run: %v", err)
		case <-time.After(5 * time.Second):
			cancel()
			tb.Fatal("server not ready after 5s")
		}
		break
	}
	stopped := false
	return srv, func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, locker.ErrServerClosed) {
				tb.Errorf("Run returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			tb.Error("server did not stop within 5s")
		}
	}
}

// send sends body with a request id on a DEALER socket.
func send(tb testing.TB, d *zmq.Socket, id uint64, body string) {
	tb.Helper()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	if _, err := d.SendMessage(b[:], "", body); err != nil {
		tb.Fatal(err)
	}
}

// recv returns the id and body of the next reply on a DEALER socket.
func recv(tb testing.TB, d *zmq.Socket) (uint64, string) {
	tb.Helper()
	msg, err := d.RecvMessageBytes(0)
	if err != nil {
		tb.Fatalf("no reply: %v", err)
	}
	if len(msg) != 3 || len(msg[0]) != 8 || len(msg[1]) != 0 {
		tb.Fatalf("reply frames %q, want [id, \"\", body]", msg)
	}
	return binary.BigEndian.Uint64(msg[0]), string(msg[2])
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

func (c *fakeClock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

func (c *fakeClock) window(k int64, w time.Duration) time.Time { return time.Unix(0, k*int64(w)) }

// observerFunc adapts a function to locker.Observer.
type observerFunc func(key string, o locker.Outcome, elapsed time.Duration)

func (f observerFunc) ObserveRequest(key string, o locker.Outcome, elapsed time.Duration) {
	f(key, o, elapsed)
}

// mustREQ is dialREQ for the test goroutine; the socket is closed when the
// test ends.
func mustREQ(tb testing.TB, ep string) *zmq.Socket {
	tb.Helper()
	s, err := dialREQ(ep)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// dialREQ returns a REQ socket connected to ep, for use by the calling
// goroutine only, which must close it.
func dialREQ(ep string) (*zmq.Socket, error) {
	s, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		return nil, err
	}
	s.SetLinger(0)
	s.SetRcvtimeo(5 * time.Second)
	s.SetSndtimeo(5 * time.Second)
	if err := s.Connect(ep); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// roundTrip sends body on a REQ socket and returns the reply.
func roundTrip(tb testing.TB, s *zmq.Socket, body string) string {
	tb.Helper()
	if _, err := s.Send(body, 0); err != nil {
		tb.Fatalf("send %q: %v", body, err)
	}
	msg, err := s.RecvMessage(0)
	if err != nil {
		tb.Fatalf("no reply to %q: %v", body, err)
	}
	if len(msg) != 1 {
		tb.Fatalf("reply to %q: %d frames %q, want 1", body, len(msg), msg)
	}
	return msg[0]
}

// mustReply parses a full go or sorry reply.
func mustReply(tb testing.TB, body string) locker.Decision {
	tb.Helper()
	r, err := locker.ParseReply([]byte(body))
	if err != nil || !r.Full {
		tb.Fatalf("reply %q: want a full go or sorry (%v)", body, err)
	}
	return r.Decision
}

// statusDoc is the part of a status reply the tests read.
type statusDoc struct {
	ID       string `json:"id"`
	Protocol int    `json:"protocol"`
	Keys     []struct {
		Name     string `json:"name"`
		Limit    int64  `json:"limit"`
		WindowMS int64  `json:"window_ms"`
		Window   int64  `json:"window"`
		Granted  int64  `json:"granted"`
		Waiters  int64  `json:"waiters"`
	} `json:"keys"`
}

// wireStatus asks for status over s and returns the document.
func wireStatus(tb testing.TB, s *zmq.Socket) statusDoc {
	tb.Helper()
	r := roundTrip(tb, s, "status")
	var doc statusDoc
	if err := json.Unmarshal([]byte(r), &doc); err != nil {
		tb.Fatalf("status reply %q: %v", r, err)
	}
	return doc
}

// wireWaiters returns the waiters of key from a status request over s.
func wireWaiters(tb testing.TB, s *zmq.Socket, key string) int64 {
	tb.Helper()
	for _, k := range wireStatus(tb, s).Keys {
		if k.Name == key {
			return k.Waiters
		}
	}
	tb.Fatalf("no key %q in status", key)
	return 0
}
