package main

import (
	"bytes"
	"encoding/json"
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
