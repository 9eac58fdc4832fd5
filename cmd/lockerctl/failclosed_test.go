package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// TestOutputWriteFails writes each command's answer to /dev/full: the
// command must say so and exit 2, never 0 or 1 with nothing written.
func TestOutputWriteFails(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	srv := lockertest.NewServer(t, locker.Config{ID: "full", Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}})
	s := "--server=" + srv.Endpoint
	for _, args := range [][]string{
		{"status", "--json", s},
		{"status", s},
		{"ping", s},
		{"probe", "-k", "api", s}, // go
		{"probe", "-k", "api", s}, // sorry
		{"wait", "-k", "api", "--max-wait", "1ms", s},
		{"--version"},
	} {
		var errOut strings.Builder
		if code := run(t.Context(), args, full, &errOut); code != exitError || !strings.Contains(errOut.String(), "writing the output") {
			t.Errorf("lockerctl %v > /dev/full: exit %d, stderr %q; want 2 and a message", args, code, errOut.String())
		}
	}
	// The real binary, as a shell runs it.
	cmd := exec.Command(ctlBin, "status", "--json", s)
	cmd.Stdout = full
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if code := exitCode(t, cmd.Run()); code != exitError || !strings.Contains(errOut.String(), "no space left") {
		t.Errorf("lockerctl status --json > /dev/full: exit %d, stderr %q; want 2 and the write error", code, errOut.String())
	}
}

// TestTimeoutBoundsCommand checks that --timeout bounds the whole command
// however many servers it tries: the attempts share it. 20 dead servers
// and --timeout 1s took 20 s when each attempt had the whole --timeout.
func TestTimeoutBoundsCommand(t *testing.T) {
	servers := make([]string, 20)
	for i := range servers {
		servers[i] = freeEndpoint(t)
	}
	g := newGlobals(nil, nil)
	g.servers, g.timeout = servers, 300*time.Millisecond
	cfg, err := g.clientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if total := cfg.Timeout * time.Duration(cfg.Attempts); cfg.Attempts != len(servers) || total > g.timeout {
		t.Fatalf("%d attempts of %v (%v in all), want one per server within --timeout %v", cfg.Attempts, cfg.Timeout, total, g.timeout)
	}
	// The real thing, with a bound far from both the promise (1 s) and
	// the old behaviour (20 s).
	t.Setenv("LOCKER_SERVER", "")
	for _, cmd := range [][]string{{"ping"}, {"probe"}, {"status"}, {"wait", "--max-wait", "1s"}} {
		t.Run(cmd[0], func(t *testing.T) {
			start := time.Now()
			code, _, errOut := runCtl(t, t.Context(), append(cmd, "--timeout", "1s", "-s", strings.Join(servers, ","))...)
			if code != exitError || !strings.Contains(errOut, "no answer") {
				t.Fatalf("exit %d, stderr %q; want 2 and no answer", code, errOut)
			}
			if el := time.Since(start); el > 10*time.Second {
				t.Fatalf("took %v with --timeout 1s over 20 servers: each attempt had the whole timeout", el)
			}
		})
	}
}

// TestBadServerList checks the messages for server lists that cannot
// work, from the flag and from the environment.
func TestBadServerList(t *testing.T) {
	for _, tc := range []struct {
		env, flag, want string
	}{
		{env: ",", want: "empty endpoint"},
		{env: "tcp://127.0.0.1:1,", want: "empty endpoint"},
		{flag: "tcp://127.0.0.1", want: `--server "tcp://127.0.0.1": want tcp://HOST:PORT`},
		{flag: "tcp://::1:7777", want: "IPv6 address in brackets"},
		{flag: "localhost:7777", want: "TRANSPORT://ADDRESS"},
	} {
		t.Setenv("LOCKER_SERVER", tc.env)
		args := []string{"ping", "--timeout", "100ms"}
		if tc.flag != "" {
			args = append(args, "-s", tc.flag)
		}
		code, _, errOut := runCtl(t, t.Context(), args...)
		if code != exitError || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "invalid argument") {
			t.Errorf("LOCKER_SERVER=%q %v: exit %d, stderr %q; want 2 and %q", tc.env, args, code, errOut, tc.want)
		}
	}
}

// TestIPv6Server runs lockerctl against a server on [::1].
func TestIPv6Server(t *testing.T) {
	lockertest.SkipWithoutIPv6(t)
	srv := lockertest.NewServer(t, locker.Config{ID: "six", Endpoints: []string{"tcp://[::1]:*"},
		Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}})
	t.Setenv("LOCKER_SERVER", "")
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"ping"}, exitGo, "pong six"},
		{[]string{"probe", "-k", "api"}, exitGo, "go 0 "},
		{[]string{"wait", "-k", "api", "--max-wait", "50ms"}, exitSorry, "sorry "},
	} {
		code, out, errOut := runCtl(t, t.Context(), append(tc.args, "-s", srv.Endpoint)...)
		if code != tc.code || !strings.HasPrefix(out, tc.out) {
			t.Errorf("lockerctl %v -s %s: %d %q %q; want %d %q", tc.args, srv.Endpoint, code, out, errOut, tc.code, tc.out)
		}
	}
}
