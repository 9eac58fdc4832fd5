package locker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	zmq "github.com/pebbe/zmq4"
)

// TestServerReplies sends every kind of request from a plain REQ socket,
// the seed client's, to a server on a stopped clock, and checks each
// reply exactly.
func TestServerReplies(t *testing.T) {
	const w = time.Second
	const k = 1_800_000_000
	clock := &fakeClock{}
	clock.Set(clock.window(k, w).Add(200 * time.Millisecond))
	_, ep := newTestServer(t, locker.Config{ID: "srv-1", Now: clock.Now, Keys: []locker.KeyConfig{{Name: "api", Limit: 3, Window: w}}})
	s := mustREQ(t, ep)
	tests := []struct{ req, reply string }{
		// The seed's client, and anything that is not a known verb: a
		// bare go or sorry for one token of default (1 per second).
		{"let me go", "go"},
		{"let me go", "sorry"},
		{"", "sorry"},
		{"\x00\xff\xfe junk", "sorry"},
		{"TAKE api", "sorry"},
		{"take default", "sorry 800 1800000000"},
		{"take api", "go 2 800 1800000000"},
		{"take api 2", "go 0 800 1800000000"},
		{"take api", "sorry 800 1800000000"},
		{"wait api 1 0", "sorry 800 1800000000"},
		{"take api 4", "error N 4 above the limit 3 of key api"},
		{"wait api 4", "error N 4 above the limit 3 of key api"},
		{"take nope", `error unknown key "nope"`},
		{"wait nope 1 10", `error unknown key "nope"`},
		{"take api 0", "error N must be a positive integer up to 1000000000"},
		{"take api 99999999999999999999", "error N must be a positive integer up to 1000000000"},
		{"wait api 1 -5", "error MAX_MS must be a non-negative integer"},
		{"take", "error missing key"},
		{"take ", "error malformed request: tokens must be separated by single spaces"},
		{"take  api", "error malformed request: tokens must be separated by single spaces"},
		{"take a$b", "error bad key name: 1 to 128 characters of A-Za-z0-9_.:/-"},
		{"take api 1 2", "error too many arguments"},
		{"ping", "pong srv-1"},
		{"ping\n", "pong srv-1"},
		{"ping x", "error too many arguments"},
	}
	for _, tc := range tests {
		if got := roundTrip(t, s, tc.req); got != tc.reply {
			t.Errorf("%q: reply %q, want %q", tc.req, got, tc.reply)
		}
	}
	doc := wireStatus(t, s)
	if doc.ID != "srv-1" || doc.Protocol != locker.ProtocolVersion || len(doc.Keys) != 2 {
		t.Fatalf("status=%+v", doc)
	}
	for _, key := range doc.Keys {
		want := map[string][3]int64{"api": {3, 1000, 3}, "default": {1, 1000, 1}}[key.Name] // limit, window_ms, granted
		if [3]int64{key.Limit, key.WindowMS, key.Granted} != want || key.Window != k || key.Waiters != 0 {
			t.Errorf("status key %+v, want limit, window_ms, granted %v in window %d", key, want, k)
		}
	}
	// The next window.
	clock.Set(clock.window(k+1, w))
	for _, tc := range []struct{ req, reply string }{
		{"take api 3", "go 0 1000 1800000001"},
		{"let me go", "go"},
		{"take default", "sorry 1000 1800000001"},
	} {
		if got := roundTrip(t, s, tc.req); got != tc.reply {
			t.Errorf("next window, %q: reply %q, want %q", tc.req, got, tc.reply)
		}
	}
}

// TestEnvelopes checks the three envelope forms a client may use.
func TestEnvelopes(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{ID: "env"})
	d := mustDealer(t, ep)
	tests := []struct {
		name  string
		send  []any
		reply []string
	}{
		{"request id and delimiter", []any{"id-1", "", "ping"}, []string{"id-1", "", "pong env"}},
		{"request id without delimiter", []any{"id-2", "ping"}, []string{"id-2", "pong env"}},
		{"several id frames", []any{"a", "b", "", "ping"}, []string{"a", "b", "", "pong env"}},
		{"no envelope", []any{"ping"}, []string{"pong env"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := d.SendMessage(tc.send...); err != nil {
				t.Fatal(err)
			}
			got, err := d.RecvMessage(0)
			if err != nil || strings.Join(got, "|") != strings.Join(tc.reply, "|") {
				t.Fatalf("reply %q, %v; want %q", got, err, tc.reply)
			}
		})
	}
}

// TestServerDealerPipelining keeps hundreds of requests in flight on one
// DEALER socket with request ids: every one is answered once, in order,
// with its own id, and the key grants exactly its limit.
func TestServerDealerPipelining(t *testing.T) {
	const n, limit = 600, 100
	clock := &fakeClock{}
	clock.Set(time.Unix(1_800_000_000, 0))
	_, ep := newTestServer(t, locker.Config{ID: "p", Now: clock.Now, Keys: []locker.KeyConfig{{Name: "api", Limit: limit, Window: time.Hour}}})
	d := mustDealer(t, ep)
	for i := uint64(0); i < n; i++ {
		body := "take api"
		if i%3 == 2 {
			body = "ping"
		}
		send(t, d, i, body)
	}
	gos, remaining := 0, int64(limit)
	for i := uint64(0); i < n; i++ {
		id, r := recv(t, d)
		if id != i {
			t.Fatalf("reply %d carries id %d: replies out of order", i, id)
		}
		if i%3 == 2 {
			if r != "pong p" {
				t.Fatalf("ping %d: %q", i, r)
			}
			continue
		}
		dec, err := locker.ParseReply([]byte(r))
		if err != nil || !dec.Full {
			t.Fatalf("take %d: %q, %v", i, r, err)
		}
		if dec.Decision.OK {
			gos++
			remaining--
			if dec.Decision.Remaining != remaining {
				t.Fatalf("take %d: %q, want %d remaining", i, r, remaining)
			}
		}
	}
	if gos != limit {
		t.Fatalf("%d go replies, want %d", gos, limit)
	}
}

// TestServerMaxFrames sends messages of MaxFrames frames, which are
// answered with their envelope, and of one frame more, which get an error
// without it; the socket is served normally afterwards.
func TestServerMaxFrames(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{ID: "f"})
	d := mustDealer(t, ep)
	frames := func(n int) []any {
		parts := make([]any, n)
		for i := range parts[:n-1] {
			parts[i] = fmt.Sprintf("env-%d", i)
		}
		parts[n-1] = "ping"
		return parts
	}
	tests := []struct {
		name   string
		frames int
		want   func(env []any) []string
	}{
		{"MaxFrames", locker.MaxFrames, func(env []any) []string {
			var out []string
			for _, f := range env[:len(env)-1] {
				out = append(out, f.(string))
			}
			return append(out, "pong f")
		}},
		{"MaxFrames+1", locker.MaxFrames + 1, func([]any) []string {
			return []string{fmt.Sprintf("error more than %d frames", locker.MaxFrames)}
		}},
		{"1000 frames", 1000, func([]any) []string {
			return []string{fmt.Sprintf("error more than %d frames", locker.MaxFrames)}
		}},
		{"one again", 1, func([]any) []string { return []string{"pong f"} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := frames(tc.frames)
			if _, err := d.SendMessage(msg...); err != nil {
				t.Fatal(err)
			}
			got, err := d.RecvMessage(0)
			if want := tc.want(msg); err != nil || !slices.Equal(got, want) {
				t.Fatalf("reply %q, %v; want %q", got, err, want)
			}
		})
	}
}

// TestServerOversizeFrame sets MaxMsgSize and sends a frame of exactly
// that size, which is answered, and one byte more, which is not: ZeroMQ
// drops that peer's connection. Another client is answered throughout
// and the server stops cleanly at the end.
func TestServerOversizeFrame(t *testing.T) {
	const max = 256
	_, ep := newTestServer(t, locker.Config{ID: "o", MaxMsgSize: max})
	good := mustREQ(t, ep)
	if r := roundTrip(t, good, "ping"); r != "pong o" {
		t.Fatalf("ping: %q", r)
	}
	fits := mustDealer(t, ep)
	if _, err := fits.SendMessage("", strings.Repeat("x", max)); err != nil { // legacy
		t.Fatal(err)
	}
	if msg, err := fits.RecvMessage(0); err != nil || len(msg) != 2 || msg[1] != "go" && msg[1] != "sorry" {
		t.Fatalf("frame of MaxMsgSize bytes: %q, %v; want a bare go or sorry", msg, err)
	}
	for _, tc := range []struct {
		name string
		msg  []any
	}{
		{"body one byte over", []any{"", strings.Repeat("x", max+1)}},
		{"envelope frame over", []any{strings.Repeat("i", max+1), "", "ping"}},
		{"1 MiB body", []any{"", strings.Repeat("x", 1<<20)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			big := mustDealer(t, ep)
			big.SetRcvtimeo(300 * time.Millisecond) // the wait for a reply that must not come
			if _, err := big.SendMessage(tc.msg...); err != nil {
				t.Fatal(err)
			}
			if msg, err := big.RecvMessage(0); err == nil {
				t.Fatalf("oversize message answered: %.80q", msg)
			}
			if r := roundTrip(t, good, "ping"); r != "pong o" {
				t.Fatalf("ping after an oversize frame: %q", r)
			}
		})
	}
}

// TestRunOnce calls Run from several goroutines at once: one serves, the
// others return an error at once, and the server stops cleanly.
func TestRunOnce(t *testing.T) {
	srv, err := locker.NewServer(locker.Config{ID: "once", Endpoints: []string{"tcp://127.0.0.1:*"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const runs = 4
	errs := make(chan error, runs)
	start := make(chan struct{})
	for range runs {
		go func() {
			<-start
			errs <- srv.Run(ctx)
		}()
	}
	close(start)
	for range runs - 1 {
		select {
		case err := <-errs:
			if err == nil || errors.Is(err, locker.ErrServerClosed) {
				t.Fatalf("a second Run returned %v, want an error at once", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the extra Runs did not return")
		}
	}
	<-srv.Ready()
	if eps := srv.Endpoints(); len(eps) != 1 {
		t.Fatalf("endpoints %v, want one", eps)
	}
	if r := roundTrip(t, mustREQ(t, srv.Endpoints()[0]), "ping"); r != "pong once" {
		t.Fatalf("ping: %q", r)
	}
	cancel()
	if err := <-errs; !errors.Is(err, locker.ErrServerClosed) {
		t.Fatalf("Run=%v, want ErrServerClosed", err)
	}
}

// TestShutdownAnswersHeldWaits cancels the server's context with waits
// held: each gets sorry, and Run returns ErrServerClosed.
func TestShutdownAnswersHeldWaits(t *testing.T) {
	cfg := locker.Config{Endpoints: []string{"tcp://127.0.0.1:*"}, Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}}
	srv, err := locker.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	<-srv.Ready()
	d := mustDealer(t, srv.Endpoints()[0])
	send(t, d, 1, "take api")
	recv(t, d)
	for i := uint64(2); i < 12; i++ {
		send(t, d, i, "wait api")
	}
	waitFor(t, func() bool { return lockertest.Waiters(srv, "api") == 10 })
	cancel()
	for i := 0; i < 10; i++ {
		if _, r := recv(t, d); !strings.HasPrefix(r, "sorry ") {
			t.Fatalf("held wait at shutdown: %q, want sorry", r)
		}
	}
	if err := <-done; !errors.Is(err, locker.ErrServerClosed) {
		t.Fatalf("Run=%v, want ErrServerClosed", err)
	}
	if err := srv.Run(context.Background()); err == nil {
		t.Fatal("a second Run did not fail")
	}
}

// TestShutdownAnswersWaitsOnEveryKey holds waits on two keys from
// several sockets, cancels the server's context, and checks that every
// wait gets a full sorry and Run returns ErrServerClosed.
func TestShutdownAnswersWaitsOnEveryKey(t *testing.T) {
	srv, stop := startServer(t, locker.Config{Endpoints: []string{"tcp://127.0.0.1:*"}, Keys: []locker.KeyConfig{
		{Name: "a", Limit: 1, Window: time.Hour}, {Name: "b", Limit: 2, Window: time.Minute}}})
	t.Cleanup(stop)
	ep := srv.Endpoints()[0]
	owner := mustDealer(t, ep)
	send(t, owner, 0, "take a")
	recv(t, owner)
	send(t, owner, 0, "take b 2")
	recv(t, owner)
	var socks []*zmq.Socket
	for i, key := range []string{"a", "b", "a", "b", "a"} {
		s := mustDealer(t, ep)
		send(t, s, uint64(i), "wait "+key)
		socks = append(socks, s)
	}
	waitFor(t, func() bool { return lockertest.Waiters(srv, "a") == 3 && lockertest.Waiters(srv, "b") == 2 })
	stop() // fails the test unless Run returns ErrServerClosed
	for i, s := range socks {
		id, r := recv(t, s)
		if id != uint64(i) || !strings.HasPrefix(r, "sorry ") || mustReply(t, r).OK {
			t.Fatalf("held wait %d at shutdown: %d %q, want sorry", i, id, r)
		}
	}
}
