package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// TestStatusOfOneKey runs lockerctl status -k on a configured multi-limit
// key, on a key a template matches before and after it is made, and on an
// unknown key, as a table and as JSON; status alone lists the template
// with its live keys.
func TestStatusOfOneKey(t *testing.T) {
	t.Setenv("LOCKER_SERVER", "")
	now := time.Unix(1_800_000_000, 0)
	srv := lockertest.NewServer(t, locker.Config{ID: "ctl-test", Now: func() time.Time { return now }, Keys: []locker.KeyConfig{
		mustSpec(t, "m=10/1s+3/1m/sliding"), mustSpec(t, "tenant:*=5/1s/gcra:2"),
	}})
	s := "--server=" + srv.Endpoint
	steps := []struct {
		args   []string
		code   int
		stdout []string // each must appear
		stderr string
	}{
		{args: []string{"status", "-k", "tenant:7"}, code: exitGo, stdout: []string{
			"key tenant:7 (made on demand from tenant:*, not live", "spec tenant:*=5/1s/gcra:2",
			"0     5      1s      gcra       2      0"}},
		{args: []string{"probe", "-k", "tenant:7", "-n", "2"}, code: exitGo, stdout: []string{"go 0 "}},
		{args: []string{"probe", "-k", "m", "-n", "2"}, code: exitGo, stdout: []string{"go 1 "}},
		{args: []string{"status", "-k", "tenant:7"}, code: exitGo, stdout: []string{
			"key tenant:7 (made on demand from tenant:*, live)", "0     5      1s      gcra       2      2"}},
		{args: []string{"status", "-k", "m"}, code: exitGo, stdout: []string{
			"key m (configured)", "spec m=10/1s+3/1m0s/sliding",
			"0     10     1s      fixed      -      2", "1     3      1m0s    sliding    -      2"}},
		{args: []string{"status"}, code: exitGo, stdout: []string{"TEMPLATE  SPEC", "tenant:*  tenant:*=5/1s/gcra:2  1          0"}},
		{args: []string{"status", "-k", "nope"}, code: exitError, stderr: `unknown key "nope"`},
		{args: []string{"status", "-k", "bad*"}, code: exitError, stderr: "-k: "},
	}
	for _, st := range steps {
		code, out, errOut := runCtl(t, t.Context(), append(st.args, s)...)
		if code != st.code || !strings.Contains(errOut, st.stderr) {
			t.Fatalf("lockerctl %v: exit %d, stderr %q; want %d and %q", st.args, code, errOut, st.code, st.stderr)
		}
		for _, want := range st.stdout {
			if !strings.Contains(out, want) {
				t.Fatalf("lockerctl %v printed\n%s\nwant %q in it", st.args, out, want)
			}
		}
	}
	code, out, _ := runCtl(t, t.Context(), "status", "-k", "tenant:7", "--json", s)
	var doc struct {
		ID  string           `json:"id"`
		Key locker.KeyStatus `json:"key"`
	}
	if err := json.Unmarshal([]byte(out), &doc); code != exitGo || err != nil {
		t.Fatalf("status -k --json: exit %d, %q: %v", code, out, err)
	}
	if doc.ID != "ctl-test" || doc.Key.Template != "tenant:*" || !doc.Key.Live || len(doc.Key.Parts) != 1 || doc.Key.Parts[0].Used != 2 {
		t.Fatalf("status -k --json: %+v", doc)
	}
}

func mustSpec(tb testing.TB, spec string) locker.KeyConfig {
	tb.Helper()
	k, err := locker.ParseKeySpec(spec)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
