package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// newBenchServerT starts a server on a free loopback port and returns its
// endpoint; it stops with the test.
func newBenchServerT(tb testing.TB, keys ...locker.KeyConfig) string {
	tb.Helper()
	return lockertest.NewServer(tb, locker.Config{Keys: keys}).Endpoint
}

func TestBenchJSON(t *testing.T) {
	ep := newBenchServerT(t, locker.KeyConfig{Name: "few", Limit: 5, Window: time.Hour})
	var out, errb bytes.Buffer
	cmd := &BenchCommand{g: newGlobals(&out, &errb)}
	err := cmd.Run(t.Context(), []string{"-s", ep, "-c", "4", "--sockets", "2", "-d", "200ms", "-k", "few", "--json"})
	if err != nil {
		t.Fatalf("Run: %v (stderr %q)", err, errb.String())
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output %q is not one JSON object: %v", out.String(), err)
	}
	for _, k := range []string{"decisions_per_second", "p50_us", "p90_us", "p99_us", "p999_us", "go", "sorry", "errors"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out.String())
		}
	}
	// The key grants 5 tokens an hour: exactly 5 go, the rest sorry.
	if got["go"] != 5.0 || got["sorry"].(float64) < 1 || got["errors"] != 0.0 {
		t.Errorf("go %v sorry %v errors %v, want 5, some, 0", got["go"], got["sorry"], got["errors"])
	}
}

func TestBenchErrors(t *testing.T) {
	ep := newBenchServerT(t)
	tests := []struct {
		name string
		o    benchOptions
	}{
		{"more sockets than goroutines", benchOptions{client: locker.ClientConfig{Endpoints: []string{ep}}, goroutines: 1, sockets: 2, duration: time.Second, key: "default", n: 1}},
		{"no duration", benchOptions{client: locker.ClientConfig{Endpoints: []string{ep}}, goroutines: 1, sockets: 1, key: "default", n: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := runBench(t.Context(), tc.o, nil); err == nil {
				t.Errorf("runBench(%+v) succeeded, want an error", tc.o)
			}
		})
	}
	// An unknown key is answered with errors, counted, not fatal.
	s, err := runBench(t.Context(), benchOptions{client: locker.ClientConfig{Endpoints: []string{ep}}, goroutines: 2, sockets: 1, duration: 100 * time.Millisecond, key: "nope", n: 1}, nil)
	if err != nil || s.Errors == 0 || s.Go+s.Sorry != 0 {
		t.Errorf("unknown key: %+v, %v; want only errors", s, err)
	}
}

func TestBenchWaitProgress(t *testing.T) {
	ep := newBenchServerT(t, locker.KeyConfig{Name: "w", Limit: 100, Window: 100 * time.Millisecond})
	var prog bytes.Buffer
	s, err := runBench(t.Context(), benchOptions{client: locker.ClientConfig{Endpoints: []string{ep}}, goroutines: 8, sockets: 1, duration: 1100 * time.Millisecond, key: "w", n: 1, wait: true}, &prog)
	if err != nil {
		t.Fatal(err)
	}
	if s.Go < 100 || s.Errors != 0 {
		t.Errorf("wait: %+v, want at least a window's 100 go and no errors", s)
	}
	if !bytes.Contains(prog.Bytes(), []byte("requests")) {
		t.Errorf("no progress line in %q", prog.String())
	}
}

// TestBenchFlags checks that bench refuses -c and --sockets values it
// cannot run, naming the flag the user gave.
func TestBenchFlags(t *testing.T) {
	t.Setenv("LOCKER_SERVER", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", "0"}, "-c 0: want 1 to 4096"},
		{[]string{"-c", "100000"}, "-c 100000: want 1 to 4096"},
		{[]string{"-c", "2000"}, "raise --sockets to 2"},
		{[]string{"-c", "2", "--sockets", "3"}, "--sockets 3: want 1 to 2"},
		{[]string{"-d", "0s"}, "-d must be positive"},
	} {
		code, _, errOut := runCtl(t, t.Context(), append([]string{"bench", "-s", "tcp://127.0.0.1:1"}, tc.args...)...)
		if code != exitError || !strings.Contains(errOut, tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestBenchEndsWithDuration runs bench against a server that does not
// answer, with a client that would retry each request for 15 s: the run
// still ends soon after -d, and the abandoned requests are not counted.
func TestBenchEndsWithDuration(t *testing.T) {
	o := benchOptions{client: locker.ClientConfig{Endpoints: []string{freeEndpoint(t)}, Timeout: 5 * time.Second, Attempts: 3},
		goroutines: 4, sockets: 1, duration: 200 * time.Millisecond, key: "default", n: 1}
	start := time.Now()
	s, err := runBench(t.Context(), o, nil)
	if err != nil || s.Go+s.Sorry+s.Errors != 0 {
		t.Fatalf("runBench = %+v, %v; want nothing counted", s, err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("a 200ms run took %v: requests in flight outlived it", el)
	}
}
