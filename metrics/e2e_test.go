package metrics_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// syncBuffer is a bytes.Buffer safe for a process's output and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for a process that takes its listen address as a flag.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// mustReplace replaces old with new in s, failing if old is absent so
// that a change to the shipped file cannot make the test vacuous.
func mustReplace(tb testing.TB, s, old, new string) string {
	tb.Helper()
	if !strings.Contains(s, old) {
		tb.Fatalf("shipped prometheus.yml has no %q to rewrite", old)
	}
	return strings.ReplaceAll(s, old, new)
}

// startPrometheus runs a Prometheus server on a free loopback port with
// the shipped config, its target rewritten to target and its intervals
// to one second, until the test ends. It returns the server's base URL
// and its log.
func startPrometheus(tb testing.TB, target string) (string, *syncBuffer) {
	tb.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		tb.Skip("prometheus not found in PATH (Debian package prometheus); skipping")
	}
	dir := tb.TempDir()
	cfg, err := os.ReadFile(filepath.Join(deployDir, "prometheus.yml"))
	if err != nil {
		tb.Fatal(err)
	}
	c := mustReplace(tb, string(cfg), "localhost:9777", target)
	c = mustReplace(tb, c, "scrape_interval: 15s", "scrape_interval: 1s")
	c = mustReplace(tb, c, "evaluation_interval: 15s", "evaluation_interval: 1s")
	rules, err := os.ReadFile(filepath.Join(deployDir, "lockerd.rules.yml"))
	if err != nil {
		tb.Fatal(err)
	}
	for name, b := range map[string][]byte{"prometheus.yml": []byte(c), "lockerd.rules.yml": rules} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	addr := freeAddr(tb)
	var log syncBuffer
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	return "http://" + addr, &log
}

// promQuery is the part of a Prometheus instant query answer the test
// reads.
type promQuery struct {
	Status string `json:"status"`
	Data   struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

// query runs an instant query and returns the value of each series
// under the label label. Errors are returned, not fatal: Prometheus may
// still be starting.
func query(c *http.Client, base, q, label string) (map[string]string, error) {
	resp, err := c.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r promQuery
	if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" {
		return nil, fmt.Errorf("query %s: %d %s", q, resp.StatusCode, b)
	}
	out := map[string]string{}
	for _, s := range r.Data.Result {
		v, _ := s.Value[1].(string)
		out[s.Metric[label]] = v
	}
	return out, nil
}

// TestPrometheusEndToEnd has a real Prometheus scrape a real server
// through the shipped config, and reads the counts back through its
// query API.
func TestPrometheusEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server; skipped with -short")
	}
	// A real lockerd process, built from cmd/lockerd with a version
	// stamped the way releases are.
	bin := filepath.Join(t.TempDir(), "lockerd")
	build := exec.Command("go", "build", "-ldflags", "-X main.Version=1.2.3", "-o", bin, "../cmd/lockerd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build lockerd: %v\n%s", err, out)
	}
	target := freeAddr(t)
	ep := "tcp://" + freeAddr(t)
	var lockerdLog syncBuffer
	lockerd := exec.Command(bin, "--bind", ep, "--metrics-addr", target, "--key", "api=7/1h")
	lockerd.Stderr = &lockerdLog
	if err := lockerd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lockerd.Process.Kill(); lockerd.Wait() })

	req := mustSocket(t, zmq.REQ, ep)
	var gotGo, gotSorry int
	for range 10 {
		switch r := mustAsk(t, req, "take api"); {
		case strings.HasPrefix(r, "go "):
			gotGo++
		case strings.HasPrefix(r, "sorry "):
			gotSorry++
		default:
			t.Fatalf("take api answered %q", r)
		}
	}
	if gotGo != 7 || gotSorry != 3 {
		t.Fatalf("server answered %d go and %d sorry, want 7 and 3", gotGo, gotSorry)
	}

	base, log := startPrometheus(t, target)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr}

	const wait = 30 * time.Second
	want := map[string]string{"go": "7", "sorry": "3", "error": "0"}
	var got map[string]string
	var lastErr error
	deadline := time.Now().Add(wait)
	for {
		got, lastErr = query(c, base, `lockerd_requests_total{job="lockerd", key="api", instance="`+target+`"}`, "decision")
		if lastErr == nil && fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s Prometheus shows lockerd_requests_total{key=api} by decision = %v (err %v), want %v\nprometheus log:\n%s",
				wait, got, lastErr, want, log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The same scrape brought the gauges, and the shipped rules loaded.
	checks := []struct {
		q, label string
		want     map[string]string
	}{
		{`lockerd_window_granted{key="api"}`, "key", map[string]string{"api": "7"}},
		{`up{job="lockerd"}`, "instance", map[string]string{target: "1"}},
		{`count(lockerd_build_info{version="1.2.3"})`, "", map[string]string{"": "1"}},
	}
	for _, ck := range checks {
		got, err := query(c, base, ck.q, ck.label)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(ck.want) {
			t.Errorf("%s = %v (err %v), want %v", ck.q, got, err, ck.want)
		}
	}
	resp, err := c.Get(base + "/api/v1/rules")
	if err != nil {
		t.Fatalf("GET rules: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, alert := range []string{"LockerdDown", "LockerdAbsent", "LockerdPeerDown", "LockerdKeyNearLimit", "LockerdHighSorryRatio"} {
		if !bytes.Contains(b, []byte(`"name":"`+alert+`"`)) {
			t.Errorf("Prometheus did not load alert %s from the shipped rules", alert)
		}
	}
}
