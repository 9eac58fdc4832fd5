package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/curve"
	"github.com/lockerd/lockerd/locker/lockertest"
)

var freeEndpoint = lockertest.FreeEndpoint

// runCtl runs lockerctl with args and returns its exit status and output.
func runCtl(tb testing.TB, ctx context.Context, args ...string) (int, string, string) {
	tb.Helper()
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestExitCodes runs each case against a server of its own, after the
// commands in before (which set the server up), so that no case depends
// on another.
func TestExitCodes(t *testing.T) {
	t.Setenv("LOCKER_SERVER", "")
	takeAPI := []string{"probe", "-k", "api"}
	tests := []struct {
		name        string
		before      [][]string
		args        []string // the server flag is added after them
		globalFirst bool     // add the server flag before them instead
		code        int
		stdout      string
		stderr      string
	}{
		{name: "probe go", args: []string{"probe", "-k", "api"}, code: exitGo, stdout: "go 0 "},
		{name: "probe sorry", before: [][]string{takeAPI}, args: []string{"probe", "-k", "api"}, code: exitSorry, stdout: "sorry "},
		{name: "global flag first", before: [][]string{takeAPI}, args: []string{"probe", "-k", "api"}, globalFirst: true, code: exitSorry, stdout: "sorry "},
		{name: "probe unknown key", args: []string{"probe", "-k", "nope"}, code: exitError, stderr: "unknown key"},
		{name: "probe N above limit", args: []string{"probe", "-k", "api", "-n", "2"}, code: exitError, stderr: "above the limit"},
		{name: "probe bad N", args: []string{"probe", "-n", "0"}, code: exitError, stderr: "-n 0"},
		{name: "bad flag", args: []string{"probe", "--bogus"}, code: exitError, stderr: "unknown flag"},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitError, stderr: "unknown command"},
		{name: "no command", args: nil, code: exitError, stderr: "Usage"},
		{name: "ping", args: []string{"ping"}, code: exitGo, stdout: "pong ctl-test"},
		{name: "wait granted at once", args: []string{"wait", "-k", "fast", "-n", "1"}, code: exitGo, stdout: "go "},
		{name: "wait granted in next window", before: [][]string{{"probe", "-k", "fast"}}, args: []string{"wait", "-k", "fast"}, code: exitGo, stdout: "go "},
		{name: "wait max-wait passes", before: [][]string{takeAPI}, args: []string{"wait", "-k", "api", "--max-wait", "200ms"}, code: exitSorry, stdout: "sorry "},
		{name: "status", before: [][]string{takeAPI}, args: []string{"status"}, code: exitGo, stdout: "api      1      1h0m0s  1"},
		{name: "status json", args: []string{"status", "--json"}, code: exitGo, stdout: `"id":"ctl-test"`},
		{name: "version", args: []string{"--version"}, code: exitGo, stdout: "lockerctl dev"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := lockertest.NewServer(t, locker.Config{ID: "ctl-test", Keys: []locker.KeyConfig{
				{Name: "api", Limit: 1, Window: time.Hour},
				{Name: "fast", Limit: 1, Window: 200 * time.Millisecond},
			}})
			s := "--server=" + srv.Endpoint
			for _, b := range tc.before {
				if code, _, errOut := runCtl(t, t.Context(), append(b, s)...); code == exitError {
					t.Fatalf("lockerctl %v: %d %q", b, code, errOut)
				}
			}
			args := append([]string{}, tc.args...)
			switch {
			case tc.globalFirst:
				args = append([]string{s}, args...)
			case len(args) > 0:
				args = append(args, s)
			}
			code, out, errOut := runCtl(t, t.Context(), args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("lockerctl %v = %d, stdout %q, stderr %q; want %d, stdout with %q, stderr with %q",
					args, code, out, errOut, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// TestNoServer checks that every command gives up with status 2 and says
// so when nothing listens (TestTimeoutBoundsCommand checks how soon).
func TestNoServer(t *testing.T) {
	ep := freeEndpoint(t)
	for _, cmd := range [][]string{{"probe"}, {"ping"}, {"status"}, {"wait", "--max-wait", "10s"}} {
		t.Run(cmd[0], func(t *testing.T) {
			code, _, errOut := runCtl(t, t.Context(), append(cmd, "-s", ep, "--timeout", "300ms")...)
			if code != exitError || !strings.Contains(errOut, "no answer from "+ep) {
				t.Fatalf("exit %d, stderr %q; want 2 and 'no answer'", code, errOut)
			}
		})
	}
}

func TestServerFromEnvironment(t *testing.T) {
	srv := lockertest.NewServer(t, locker.Config{ID: "from-env"})
	t.Setenv("LOCKER_SERVER", freeEndpoint(t)+","+srv.Endpoint)
	code, out, errOut := runCtl(t, t.Context(), "ping", "--timeout", "300ms")
	if code != exitGo || !strings.Contains(out, "pong from-env") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want pong from the second server", code, out, errOut)
	}
}

func TestKeygenAndCurve(t *testing.T) {
	dir := t.TempDir()
	server, client := filepath.Join(dir, "server"), filepath.Join(dir, "client")
	for _, p := range []string{server, client} {
		if code, _, errOut := runCtl(t, t.Context(), "keygen", "--out", p); code != exitGo {
			t.Fatalf("keygen: %d %s", code, errOut)
		}
	}
	if fi, err := os.Stat(client + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret key: %v, %v; want mode 0600", fi, err)
	}
	if code, _, errOut := runCtl(t, t.Context(), "keygen", "--out", client); code != exitError || !strings.Contains(errOut, "exists") {
		t.Fatalf("keygen over an existing key: %d %q, want 2 and 'exists'", code, errOut)
	}
	secret, _ := curve.ReadKey(server + ".key")
	allowed, _ := curve.ReadAllowList(client + ".pub")
	cs, err := curve.NewServer(secret, allowed)
	if err != nil {
		t.Fatal(err)
	}
	srv := lockertest.NewServer(t, locker.Config{ID: "curved", Security: cs.Apply, ClientAllowed: cs.Allowed})
	t.Cleanup(cs.Close)
	args := []string{"ping", "-s", srv.Endpoint, "--timeout", "500ms", "--curve-server", server + ".pub"}
	if code, out, errOut := runCtl(t, t.Context(), append(args, "--curve-secret", client+".key")...); code != exitGo || !strings.Contains(out, "curved") {
		t.Fatalf("allowed key: %d %q %q", code, out, errOut)
	}
	if code, _, _ := runCtl(t, t.Context(), append(args, "--curve-secret", server+".key")...); code != exitError {
		t.Fatalf("key not on the list: exit %d, want 2", code)
	}
	if code, _, _ := runCtl(t, t.Context(), "ping", "-s", srv.Endpoint, "--timeout", "500ms"); code != exitError {
		t.Fatalf("plaintext: exit %d, want 2", code)
	}
}

// TestProbeSeedServer runs the seed design's Python server (ported to
// Python 3 only where the language requires) and probes it: it answers a
// bare go or sorry to anything.
func TestProbeSeedServer(t *testing.T) {
	ep := startSeedServer(t)
	// The server allows 1 request per 10 s: go, then sorry.
	code, out, errOut := runCtl(t, t.Context(), "probe", "-s", ep, "--timeout", "5s")
	if code != exitGo || strings.TrimSpace(out) != "go" {
		t.Fatalf("first probe: %d %q %q, want 0 and a bare go", code, out, errOut)
	}
	code, out, errOut = runCtl(t, t.Context(), "probe", "-s", ep, "--timeout", "5s")
	if code != exitSorry || strings.TrimSpace(out) != "sorry" {
		t.Fatalf("second probe: %d %q %q, want 1 and a bare sorry", code, out, errOut)
	}
}

// startSeedServer starts testdata/seed_server.py with args after its
// endpoint (LIMIT SECONDS; 1 per 10 s if none) and returns the endpoint.
// It skips the test when /usr/bin/python3 has no zmq module.
func startSeedServer(tb testing.TB, args ...string) string {
	tb.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import zmq").Run(); err != nil {
		tb.Skipf("no python3-zmq for %s (%v): apt-get install python3-zmq", py, err)
	}
	ep := freeEndpoint(tb)
	cmd := exec.Command(py, append([]string{"testdata/seed_server.py", strings.Replace(ep, "127.0.0.1", "*", 1)}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return ep
}

// TestWaitSeedServer waits on the seed's server, which answers at once
// and bare: wait asks again until it says go, and prints a bare go.
func TestWaitSeedServer(t *testing.T) {
	ep := startSeedServer(t, "1", "0.5")
	for i := range 2 {
		code, out, errOut := runCtl(t, t.Context(), "wait", "-s", ep, "--timeout", "5s", "--max-wait", "5s")
		if code != exitGo || out != "go\n" {
			t.Fatalf("wait %d: %d %q %q, want 0 and a bare go", i, code, out, errOut)
		}
	}
}

// ctlBin is the lockerctl binary TestMain builds, version stamped as
// scripts/build does.
var ctlBin string

const (
	testVersion  = "v9.9.9-test"
	testRevision = "0123abcd"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lockerctl-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctlBin = filepath.Join(dir, "lockerctl")
	ldflags := "-X main.Version=" + testVersion + " -X main.Revision=" + testRevision
	if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", ctlBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// exitCode returns the exit status of a finished command.
func exitCode(tb testing.TB, err error) int {
	tb.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		tb.Fatal(err)
	}
	return 0
}

// TestBinaryExitCodes checks the real binary's exit status against a dead
// endpoint and with bad flags, and its version stamp.
func TestBinaryExitCodes(t *testing.T) {
	bin := ctlBin
	ep := freeEndpoint(t)
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"probe", "-s", ep, "--timeout", "200ms"}, exitError, ""},
		{[]string{"ping", "-s", ep, "--timeout", "200ms"}, exitError, ""},
		{[]string{"wait", "-s", ep, "--timeout", "200ms"}, exitError, ""},
		{[]string{"probe", "--nope"}, exitError, ""},
		{[]string{"--version"}, exitGo, "lockerctl " + testVersion + " (revision " + testRevision + ")"},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append(os.Environ(), "LOCKER_SERVER=")
		out, err := cmd.Output()
		if code := exitCode(t, err); code != tc.code || !strings.Contains(string(out), tc.stdout) {
			t.Errorf("lockerctl %v: exit %d, stdout %q; want %d, stdout with %q", tc.args, code, out, tc.code, tc.stdout)
		}
	}
}

// TestBinaryInterrupted sends SIGINT to a real lockerctl wait that the
// server holds: it exits 2 at once.
func TestBinaryInterrupted(t *testing.T) {
	srv := lockertest.NewServer(t, locker.Config{ID: "sigint", Keys: []locker.KeyConfig{{Name: "hour", Limit: 1, Window: time.Hour}}})
	if code, _, errOut := runCtl(t, t.Context(), "probe", "-s", srv.Endpoint, "-k", "hour"); code != exitGo {
		t.Fatalf("probe: %d %q", code, errOut)
	}
	cmd := exec.Command(ctlBin, "wait", "-s", srv.Endpoint, "-k", "hour")
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(10 * time.Second); waiters(srv, "hour") == 0; <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("the server holds no wait after 10s; stderr %q", errOut.String())
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if code := exitCode(t, err); code != exitError || !strings.Contains(errOut.String(), "interrupted") {
			t.Fatalf("exit %d, stderr %q; want 2 and 'interrupted'", code, errOut.String())
		}
	case <-time.After(3 * time.Second):
		t.Fatal("lockerctl wait still running 3s after SIGINT")
	}
}

// waiters returns how many wait requests srv holds for key.
func waiters(srv *lockertest.Server, key string) int64 {
	for _, k := range srv.Stats().Keys {
		if k.Name == key {
			return k.Waiters
		}
	}
	return 0
}

// TestWaitHeldPastTimeout checks that --timeout bounds how long an answer
// takes beyond the time the server may hold the wait, not the wait itself:
// a wait held for longer than --timeout ends in go or sorry, not "no
// answer".
func TestWaitHeldPastTimeout(t *testing.T) {
	t.Setenv("LOCKER_SERVER", "")
	const window = 2 * time.Second
	srv := lockertest.NewServer(t, locker.Config{ID: "held", Keys: []locker.KeyConfig{
		{Name: "hour", Limit: 1, Window: time.Hour},
		{Name: "twosec", Limit: 1, Window: window},
	}})
	s := "--server=" + srv.Endpoint
	if code, _, errOut := runCtl(t, t.Context(), "probe", s, "-k", "hour"); code != exitGo {
		t.Fatalf("probe: %d %q", code, errOut)
	}
	t.Run("sorry after max-wait", func(t *testing.T) {
		start := time.Now()
		code, out, errOut := runCtl(t, t.Context(), "wait", s, "--timeout", "200ms", "-k", "hour", "--max-wait", "1500ms")
		if code != exitSorry || !strings.HasPrefix(out, "sorry ") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and sorry", code, out, errOut)
		}
		if el := time.Since(start); el < 1500*time.Millisecond || el > 5*time.Second {
			t.Fatalf("took %v, want about the 1.5s max-wait", el)
		}
	})
	t.Run("go in a window that opens after the timeout", func(t *testing.T) {
		// Exhaust a window that has nearly all of its length left: the
		// wait is granted by a wait at the window's start.
		c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{srv.Endpoint}, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 3*window)
		defer cancel()
		if _, err := c.Take(ctx, "twosec", 1); err != nil {
			t.Fatal(err)
		}
		d, err := c.Wait(ctx, "twosec", 1)
		if err != nil || d.Reset < window/2 {
			t.Fatalf("Wait = %+v, %v; want go with over %v left", d, err, window/2)
		}
		start := time.Now()
		code, out, errOut := runCtl(t, t.Context(), "wait", s, "--timeout", "200ms", "-k", "twosec")
		if code != exitGo || !strings.HasPrefix(out, "go 0 ") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and go", code, out, errOut)
		}
		if el := time.Since(start); el > 2*window {
			t.Fatalf("took %v, want under %v", el, 2*window)
		}
	})
}

// TestWaitInterrupted checks that a wait with no --max-wait ends with
// status 2 as soon as it is interrupted (ctx is what SIGINT cancels).
func TestWaitInterrupted(t *testing.T) {
	t.Setenv("LOCKER_SERVER", "")
	srv := lockertest.NewServer(t, locker.Config{ID: "intr", Keys: []locker.KeyConfig{{Name: "hour", Limit: 1, Window: time.Hour}}})
	s := "--server=" + srv.Endpoint
	if code, _, errOut := runCtl(t, t.Context(), "probe", s, "-k", "hour"); code != exitGo {
		t.Fatalf("probe: %d %q", code, errOut)
	}
	ctx, cancel := context.WithCancel(t.Context())
	type res struct {
		code        int
		out, errOut string
	}
	done := make(chan res, 1)
	go func() {
		code, out, errOut := runCtl(t, ctx, "wait", s, "-k", "hour")
		done <- res{code, out, errOut}
	}()
	// Interrupt once the server holds the wait.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(5 * time.Second); waiters(srv, "hour") == 0; <-tick.C {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the server holds no wait after 5s; lockerctl: %+v", <-done)
		}
	}
	cancel()
	select {
	case r := <-done:
		if r.code != exitError || r.out != "" || !strings.Contains(r.errOut, "interrupted") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 2, nothing printed, 'interrupted'", r.code, r.out, r.errOut)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("wait still running 2s after it was interrupted")
	}
}
