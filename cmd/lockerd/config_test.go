package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfigLine(t *testing.T) {
	tests := []struct {
		line        string
		name, value string
		ok          bool
		err         bool
	}{
		{line: "", ok: false},
		{line: "   # a comment", ok: false},
		{line: "key = api=5/800ms", name: "key", value: "api=5/800ms", ok: true},
		{line: "  bind=tcp://*:7777  ", name: "bind", value: "tcp://*:7777", ok: true},
		{line: "--limit = 5", name: "limit", value: "5", ok: true},
		{line: `id = "two words"`, name: "id", value: "two words", ok: true},
		{line: `id = ""`, name: "id", value: "", ok: true},
		{line: "log-level =", name: "log-level", value: "", ok: true},
		{line: "just words", err: true},
		{line: "= value", err: true},
		{line: `id = "unterminated\"`, err: true},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			e, ok, err := parseConfigLine(tc.line)
			if tc.err {
				if err == nil {
					t.Fatalf("parseConfigLine(%q)=%+v, want an error", tc.line, e)
				}
				return
			}
			if err != nil || ok != tc.ok || e.name != tc.name || e.value != tc.value {
				t.Fatalf("parseConfigLine(%q)=%+v, %v, %v; want %q=%q %v", tc.line, e, ok, err, tc.name, tc.value, tc.ok)
			}
		})
	}
}

func FuzzParseConfigLine(f *testing.F) {
	for _, s := range []string{"key = api=5/800ms", "# c", "", `id = "x y"`, "a", "=", `x = "\q"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, ok, err := parseConfigLine(line)
		if err != nil || !ok {
			return
		}
		if e.name == "" || strings.ContainsAny(e.name, "=") || e.name != strings.TrimSpace(e.name) {
			t.Fatalf("parseConfigLine(%q) gave name %q", line, e.name)
		}
	})
}

// TestEnvOverrides checks the order command line, then LOCKER_*, then the
// config file.
func TestEnvOverrides(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "lockerd.conf")
	if err := os.WriteFile(conf, []byte("id = from-file\nmax-waiters = 7\nkey = file=1/1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		env            map[string]string
		args           []string
		wantID         string
		wantMaxWaiters int
		wantKeys       string
		wantBinds      string
	}{
		{
			name: "env beats default", env: map[string]string{"LOCKER_LIMIT": "4", "LOCKER_WINDOW": "2s"},
			wantID: "x", wantMaxWaiters: 10000, wantKeys: "default=4/2s", wantBinds: "tcp://127.0.0.1:1",
		},
		{
			name: "command line beats env", env: map[string]string{"LOCKER_ID": "from-env", "LOCKER_MAX_WAITERS": "3"},
			args: []string{"--id", "from-args"}, wantID: "from-args", wantMaxWaiters: 3, wantKeys: "default=1/1s", wantBinds: "tcp://127.0.0.1:1",
		},
		{
			name: "env beats file, file fills the rest", env: map[string]string{"LOCKER_CONFIG": conf, "LOCKER_ID": "from-env"},
			wantID: "from-env", wantMaxWaiters: 7, wantKeys: "file=1/1s default=1/1s", wantBinds: "tcp://127.0.0.1:1",
		},
		{
			name: "repeatable flags take a list", env: map[string]string{"LOCKER_KEY": "a=1/1s, b=2/2s", "LOCKER_BIND": "tcp://127.0.0.1:2,ipc:///tmp/x"},
			args: []string{}, wantID: "x", wantMaxWaiters: 10000, wantKeys: "a=1/1s b=2/2s default=1/1s", wantBinds: "tcp://127.0.0.1:2 ipc:///tmp/x",
		},
		{
			name: "empty counts as set", env: map[string]string{"LOCKER_METRICS_ADDR": ""},
			wantID: "x", wantMaxWaiters: 10000, wantKeys: "default=1/1s", wantBinds: "tcp://127.0.0.1:1",
		},
		{
			name: "lockerctl's variable is ignored", env: map[string]string{"LOCKER_SERVER": "tcp://elsewhere:1"},
			wantID: "x", wantMaxWaiters: 10000, wantKeys: "default=1/1s", wantBinds: "tcp://127.0.0.1:1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			if _, ok := tc.env["LOCKER_BIND"]; !ok {
				args = append([]string{"--bind", "tcp://127.0.0.1:1"}, args...)
			}
			if _, ok := tc.env["LOCKER_ID"]; !ok && tc.wantID == "x" {
				args = append(args, "--id", "x")
			}
			o, err := parseOptions(args, io.Discard)
			if err != nil {
				t.Fatalf("parseOptions: %v", err)
			}
			var keys []string
			for _, k := range o.keys {
				keys = append(keys, k.String())
			}
			if o.id != tc.wantID || o.maxWaiters != tc.wantMaxWaiters || strings.Join(keys, " ") != tc.wantKeys || strings.Join(o.binds, " ") != tc.wantBinds {
				t.Fatalf("id=%q max-waiters=%d keys=%q binds=%q; want %q %d %q %q", o.id, o.maxWaiters, strings.Join(keys, " "), strings.Join(o.binds, " "),
					tc.wantID, tc.wantMaxWaiters, tc.wantKeys, tc.wantBinds)
			}
			if _, ok := tc.env["LOCKER_METRICS_ADDR"]; ok && o.metricsAddr != "" {
				t.Fatalf("metrics-addr=%q, want empty from the environment", o.metricsAddr)
			}
		})
	}
}

// TestBadEnvExit2 checks that a bad LOCKER_* value is a usage error that
// names the variable.
func TestBadEnvExit2(t *testing.T) {
	for _, tc := range []struct{ env, value, want string }{
		{"LOCKER_LIMIT", "many", "LOCKER_LIMIT"},
		{"LOCKER_KEY", "api=0/1s", `limit "0"`},
		{"LOCKER_MAX_WAIT", "soon", "LOCKER_MAX_WAIT"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(tc.env, tc.value)
			var errOut bytes.Buffer
			code := run(t.Context(), []string{"--bind", "tcp://127.0.0.1:1", "--metrics-addr", ""}, io.Discard, &errOut)
			lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
			if code != exitUsage || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and one line mentioning %q", code, errOut.String(), tc.want)
			}
		})
	}
}

// TestConfigFileReadWhole checks that a config file is read to its end,
// whatever its size under the limit or its line lengths, and that a file
// over the limit is refused, never cut.
func TestConfigFileReadWhole(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var big strings.Builder
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&big, "key = k%d=10/1s\n", i)
	}
	if big.Len() < 1800000 {
		t.Fatalf("test file of %d bytes, want about 1.9 MB", big.Len())
	}
	longComment := "# " + strings.Repeat("x", 100<<10) + "\n"
	tests := []struct {
		name     string
		text     string
		wantKeys int    // keys besides default, when the file is good
		wantErr  string // else, in the error
	}{
		{"100000 keys", big.String(), 100000, ""},
		{"byte order mark", "\ufeffkey = api=5/1s\n", 1, ""},
		{"line of 100 KiB", longComment + "key = api=5/1s\n", 1, ""},
		{"no final newline", "key = a=1/1s\nkey = b=2/1s", 2, ""},
		{"CRLF", "key = a=1/1s\r\nkey = b=2/1s\r\n", 2, ""},
		{"long bad line names its line", "key = a=1/1s\n" + strings.Repeat("y", 100<<10) + "\n", 0, "c.conf:2: want"},
		{"scalar repeated", "max-wait = 1s\nkey = a=1/1s\nmax-wait = 2s\n", 0, `c.conf:3: "max-wait" is already set on line 1`},
		{"BOM not skipped mid-file", "key = a=1/1s\n\ufeffkey = b=1/1s\n", 0, "c.conf:2: unknown setting"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write("c.conf", tc.text)
			o, err := parseOptions([]string{"--bind", "tcp://127.0.0.1:1", "-c", p}, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || len(err.Error()) > 300 {
					t.Fatalf("parseOptions: %v; want a short error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseOptions: %v", err)
			}
			if got := len(o.keys) - 1; got != tc.wantKeys {
				t.Fatalf("%d keys loaded, want %d", got, tc.wantKeys)
			}
		})
	}
}

// TestConfigFileOverLimitExit2 gives lockerd a config file one byte over
// the limit: it exits 2 naming the limit instead of reading part of it.
func TestConfigFileOverLimitExit2(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.conf")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// A sparse file: no disk is written.
	if err := f.Truncate(maxConfigSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var errOut bytes.Buffer
	code := run(t.Context(), []string{"--bind", "tcp://127.0.0.1:1", "--metrics-addr", "", "-c", p}, io.Discard, &errOut)
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	if code != exitUsage || len(lines) != 1 || !strings.Contains(lines[0], "larger than 64 MiB") {
		t.Fatalf("exit %d, stderr %q; want 2 and one line naming the 64 MiB limit", code, errOut.String())
	}
}

// TestCheckEndpoint checks the endpoint forms ZeroMQ accepts, by use.
func TestCheckEndpoint(t *testing.T) {
	tests := []struct {
		endpoint string
		use      endpointUse
		want     string // "" for valid, else in the error
	}{
		{"tcp://127.0.0.1:7777", useConnect, ""},
		{"tcp://[::1]:7777", useConnect, ""},
		{"tcp://[::1]:7777", useBind, ""},
		{"tcp://[fe80::1%eth0]:7777", useConnect, ""},
		{"tcp://lockerd-1.example.com:7777", useConnect, ""},
		{"tcp://*:7777", useBind, ""},
		{"tcp://*:7778", usePublish, ""},
		{"tcp://127.0.0.1:*", useBind, ""},
		{"tcp://eth0:7777", useBind, ""},
		{"tcp://10.0.0.2:0;10.0.0.1:7778", useConnect, ""},
		{"ipc:///run/lockerd.sock", useBind, ""},
		{"ipc://@lockerd", useConnect, ""},
		{"inproc://lockerd", useBind, ""},
		{"tcp://127.0.0.1", useConnect, "needs host and port"},
		{"tcp://127.0.0.1:", useConnect, "needs host and port"},
		{"tcp://:7777", useConnect, "needs host and port"},
		{"tcp://", useBind, "needs host and port"},
		{"tcp://*:7777", useConnect, "needs a host"},
		{"tcp://127.0.0.1:*", useConnect, "needs a port"},
		{"tcp://127.0.0.1:*", usePublish, "peers could not find it"},
		{"tcp://127.0.0.1:0", usePublish, "peers could not find it"},
		{"tcp://127.0.0.1:65536", useBind, "from 1 to 65535"},
		{"tcp://127.0.0.1:77a", useBind, "from 1 to 65535"},
		{"tcp://127.0.0.1:-1", useBind, "from 1 to 65535"},
		{"tcp://::1:7777", useConnect, "in brackets"},
		{"tcp://[::1:7777", useConnect, "closing ]"},
		{"tcp://[::1]", useConnect, "needs host and port"},
		{"tcp://[1.2.3.4]:7777", useConnect, "not an IPv6 address"},
		{"tcp://a b:7777", useConnect, "want a name"},
		{"tcp://10.0.0.2:0;10.0.0.1:7778", useBind, "for --peer only"},
		{"tcp://10.0.0.2;10.0.0.1:7778", useConnect, "source address"},
		{"ipc://", useBind, "needs a path"},
		{"ipc://*", usePublish, "random path"},
		{"ipc:///" + strings.Repeat("d", maxIPCPath), useBind, "at most 107"},
		{"inproc://", useBind, "needs a name"},
		{"udp://127.0.0.1:7777", useBind, "want tcp, ipc or inproc"},
		{"127.0.0.1:7777", useBind, "want an endpoint"},
		{"", useConnect, "want an endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.endpoint, func(t *testing.T) {
			err := checkEndpoint(tc.endpoint, tc.use)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("checkEndpoint(%q, %d)=%v, want nil", tc.endpoint, tc.use, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("checkEndpoint(%q, %d)=%v, want an error containing %q", tc.endpoint, tc.use, err, tc.want)
			}
		})
	}
}

// TestIPv6EndpointsPassFlags checks that IPv6 endpoints, in brackets,
// are accepted for every endpoint flag.
func TestIPv6EndpointsPassFlags(t *testing.T) {
	args := []string{"--bind", "tcp://[::1]:7777", "--publish", "tcp://[::1]:7778", "--peer", "tcp://[::1]:7778",
		"--peer", "tcp://[::1]:7779", "--metrics-addr", "[::1]:9777"}
	if _, err := parseOptions(args, io.Discard); err != nil {
		t.Fatalf("parseOptions(%q): %v", args, err)
	}
}
