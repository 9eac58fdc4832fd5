package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
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

func TestExitCodes(t *testing.T) {
	t.Setenv("LOCKER_SERVER", "")
	srv := lockertest.NewServer(t, locker.Config{ID: "ctl-test", Keys: []locker.KeyConfig{
		{Name: "api", Limit: 1, Window: time.Hour},
		{Name: "fast", Limit: 1, Window: 200 * time.Millisecond},
	}})
	s := "--server=" + srv.Endpoint
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderr   string
		maxTaken time.Duration
	}{
		{name: "probe go", args: []string{"probe", s, "-k", "api"}, code: exitGo, stdout: "go 0 "},
		{name: "probe sorry", args: []string{"probe", s, "-k", "api"}, code: exitSorry, stdout: "sorry "},
		{name: "global flag first", args: []string{s, "probe", "-k", "api"}, code: exitSorry, stdout: "sorry "},
		{name: "probe unknown key", args: []string{"probe", s, "-k", "nope"}, code: exitError, stderr: "unknown key"},
		{name: "probe N above limit", args: []string{"probe", s, "-k", "api", "-n", "2"}, code: exitError, stderr: "above the limit"},
		{name: "probe bad N", args: []string{"probe", s, "-n", "0"}, code: exitError, stderr: "-n 0"},
		{name: "bad flag", args: []string{"probe", "--bogus"}, code: exitError, stderr: "unknown flag"},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitError, stderr: "unknown command"},
		{name: "no command", args: nil, code: exitError, stderr: "Usage"},
		{name: "ping", args: []string{"ping", s}, code: exitGo, stdout: "pong ctl-test"},
		{name: "wait granted in next window", args: []string{"wait", s, "-k", "fast", "-n", "1"}, code: exitGo, stdout: "go "},
		{name: "wait again granted", args: []string{"wait", s, "-k", "fast"}, code: exitGo, stdout: "go "},
		{name: "wait max-wait passes", args: []string{"wait", s, "-k", "api", "--max-wait", "200ms"}, code: exitSorry, stdout: "sorry ", maxTaken: 3 * time.Second},
		{name: "status", args: []string{"status", s}, code: exitGo, stdout: "api      1      1h0m0s  1"},
		{name: "status json", args: []string{"status", s, "--json"}, code: exitGo, stdout: `"id":"ctl-test"`},
		{name: "version", args: []string{"--version"}, code: exitGo, stdout: "lockerctl dev"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, out, errOut := runCtl(t, t.Context(), tc.args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("lockerctl %v = %d, stdout %q, stderr %q; want %d, stdout with %q, stderr with %q",
					tc.args, code, out, errOut, tc.code, tc.stdout, tc.stderr)
			}
			if tc.maxTaken > 0 && time.Since(start) > tc.maxTaken {
				t.Fatalf("took %v, want under %v", time.Since(start), tc.maxTaken)
			}
		})
	}
}

// TestNoServer checks that every command gives up with status 2 within its
// timeout plus a second when nothing listens.
func TestNoServer(t *testing.T) {
	ep := freeEndpoint(t)
	for _, cmd := range [][]string{{"probe"}, {"ping"}, {"status"}, {"wait", "--max-wait", "10s"}} {
		t.Run(cmd[0], func(t *testing.T) {
			start := time.Now()
			code, _, errOut := runCtl(t, t.Context(), append(cmd, "-s", ep, "--timeout", "300ms")...)
			if code != exitError || !strings.Contains(errOut, "no answer from "+ep) {
				t.Fatalf("exit %d, stderr %q; want 2 and 'no answer'", code, errOut)
			}
			if el := time.Since(start); el > 1300*time.Millisecond {
				t.Fatalf("took %v, want under timeout + 1s", el)
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
	secret, _ := locker.ReadCurveKey(server + ".key")
	allowed, _ := locker.ReadAllowList(client + ".pub")
	cs, err := locker.NewCurveServer(secret, allowed)
	if err != nil {
		t.Fatal(err)
	}
	srv := lockertest.NewServer(t, locker.Config{ID: "curved", Security: cs.Apply})
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
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import zmq").Run(); err != nil {
		t.Skipf("no python3-zmq (%v): apt-get install python3-zmq", err)
	}
	ep := freeEndpoint(t)
	cmd := exec.Command(py, "testdata/seed_server.py", strings.Replace(ep, "127.0.0.1", "*", 1))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
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

// TestBinaryExitCodes builds the real binary and checks its exit status
// against a dead endpoint and with bad flags.
func TestBinaryExitCodes(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "lockerctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ep := freeEndpoint(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"probe", "-s", ep, "--timeout", "200ms"}, exitError},
		{[]string{"ping", "-s", ep, "--timeout", "200ms"}, exitError},
		{[]string{"probe", "--nope"}, exitError},
		{[]string{"--version"}, exitGo},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append(os.Environ(), "LOCKER_SERVER=")
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("lockerctl %v: exit %d, want %d", tc.args, code, tc.code)
		}
	}
}
