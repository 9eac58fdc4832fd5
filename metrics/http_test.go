package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/metrics"
	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
)

func TestChecks(t *testing.T) {
	open, closed := make(chan struct{}), make(chan struct{})
	close(closed)
	fail := func() error { return errors.New("metrics: nope") }
	pass := func() error { return nil }
	tests := []struct {
		name  string
		check metrics.Check
		ok    bool
	}{
		{"closed passes", metrics.Closed(closed, "x"), true},
		{"open fails", metrics.Closed(open, "x"), false},
		{"running", metrics.Running(closed, open), true},
		{"not started", metrics.Running(open, open), false},
		{"stopped", metrics.Running(closed, closed), false},
		{"all empty", metrics.All(), true},
		{"all pass with nil", metrics.All(pass, nil, pass), true},
		{"all one fails", metrics.All(pass, fail), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.check(); (err == nil) != tc.ok {
				t.Errorf("check()=%v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestHandler(t *testing.T) {
	_, reg := mustMetrics(t, testBuild)
	notReady := errors.New("metrics: peers not heard yet")
	h := metrics.Handler(reg, metrics.Health{
		Live:  func() error { return nil },
		Ready: func() error { return notReady },
	})
	tests := []struct {
		method, path string
		wantCode     int
		wantBody     string // substring
	}{
		{"GET", "/healthz", 200, "ok\n"},
		{"HEAD", "/healthz", 200, ""},
		{"GET", "/readyz", 503, "peers not heard yet"},
		{"GET", "/metrics", 200, `lockerd_build_info{goversion="go1.99",revision="abc123",version="1.2.3"} 1`},
		{"GET", "/", 200, `href="/metrics"`},
		{"GET", "/nope", 404, ""},
		{"POST", "/metrics", 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.wantCode {
				t.Errorf("code=%d, want %d", rec.Code, tc.wantCode)
			}
			if !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Errorf("body=%q, want it to contain %q", rec.Body.String(), tc.wantBody)
			}
		})
	}

	t.Run("nil checks pass", func(t *testing.T) {
		h := metrics.Handler(reg, metrics.Health{})
		for _, p := range []string{"/healthz", "/readyz"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
			if rec.Code != 200 {
				t.Errorf("GET %s: code=%d, want 200", p, rec.Code)
			}
		}
	})
}

// mustServe serves h on a free loopback port until the test ends and
// returns its base URL. The test fails if Serve does not return nil
// within five seconds of the end.
func mustServe(tb testing.TB, h http.Handler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- metrics.Serve(ctx, ln, h) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Serve returned %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			tb.Error("Serve did not return within 5s of cancel")
		}
	})
	return "http://" + ln.Addr().String()
}

// mustGet fetches url and returns its status code and body.
func mustGet(tb testing.TB, url string) (int, []byte) {
	tb.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, b
}

func TestServe(t *testing.T) {
	t.Run("serves until cancel", func(t *testing.T) {
		ready := make(chan struct{})
		base := mustServe(t, metrics.Handler(prometheus.NewRegistry(), metrics.Health{
			Ready: metrics.Closed(ready, "server not bound"),
		}))
		if code, body := mustGet(t, base+"/readyz"); code != 503 || !strings.Contains(string(body), "server not bound") {
			t.Errorf("readyz before ready: %d %q, want 503 with the reason", code, body)
		}
		close(ready)
		if code, _ := mustGet(t, base+"/readyz"); code != 200 {
			t.Errorf("readyz after ready: %d, want 200", code)
		}
	})
	t.Run("closed listener", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		err = metrics.Serve(t.Context(), ln, http.NotFoundHandler())
		if err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
			t.Errorf("Serve on a closed listener: %v, want a metrics: error", err)
		}
	})
	t.Run("bad address", func(t *testing.T) {
		err := metrics.ListenAndServe(t.Context(), "127.0.0.1:notaport", http.NotFoundHandler())
		if err == nil || !strings.HasPrefix(err.Error(), "metrics: listen") {
			t.Errorf("ListenAndServe: %v, want a metrics: listen error", err)
		}
	})
}

// promtool returns the path of promtool, or skips the test.
func promtool(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		tb.Skip("promtool not found in PATH (Debian package prometheus); skipping")
	}
	return p
}

// TestPromtoolCheckMetrics lints a live scrape of the full registry (Go
// and process collectors included) with promtool check metrics.
func TestPromtoolCheckMetrics(t *testing.T) {
	tool := promtool(t)
	reg := metrics.NewRegistry()
	m, _, ep := newObservedServer(t, reg, locker.KeyConfig{Name: "api", Limit: 2, Window: time.Minute})
	m.SetPeers(fakePeers{{Name: "node-b", Up: true, Messages: 3, ClockOffset: time.Millisecond}})
	req := mustSocket(t, zmq.REQ, ep)
	for _, body := range []string{"take api", "take api", "take api", "take nope"} {
		mustAsk(t, req, body)
	}
	base := mustServe(t, metrics.Handler(reg, metrics.Health{}))
	code, body := mustGet(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, name := range []string{"lockerd_requests_total", "lockerd_peer_up", "go_goroutines", "process_cpu_seconds_total"} {
		if !bytes.Contains(body, []byte("\n"+name)) {
			t.Errorf("scrape has no %s", name)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestLimitListener checks that a LimitListener holds at most n
// connections: a third waits until one of two is closed (closing it twice
// frees one slot only), and Close ends a waiting Accept.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := metrics.LimitListener(inner, 2)
	defer ln.Close()
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	accept := func() <-chan net.Conn {
		ch := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				c = nil
			}
			ch <- c
		}()
		return ch
	}
	a, b := <-accept(), <-accept()
	if a == nil || b == nil {
		t.Fatal("Accept failed below the limit")
	}
	third := accept()
	select {
	case <-third:
		t.Fatal("a third connection accepted while two are open")
	default:
	}
	a.Close()
	a.Close() // a second Close must not free a second slot
	c := <-third
	if c == nil {
		t.Fatal("Accept failed after a slot was freed")
	}
	fourth := accept()
	ln.Close()
	if c := <-fourth; c != nil {
		t.Fatal("Accept returned a connection after Close with every slot taken")
	}
	b.Close()
	c.Close()
}
