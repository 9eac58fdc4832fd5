package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// TestMaxKeysOption reads --max-keys from its default, the config file,
// the environment and the command line, and refuses a value below 1.
func TestMaxKeysOption(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "lockerd.conf")
	if err := os.WriteFile(conf, []byte("max-keys = 5\nkey = tenant:*=3/1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want int
		err  string
	}{
		{name: "default", want: locker.DefaultMaxKeys},
		{name: "file", args: []string{"--config", conf}, want: 5},
		{name: "env beats file", env: map[string]string{"LOCKER_MAX_KEYS": "7"}, args: []string{"--config", conf}, want: 7},
		{name: "flag beats env", env: map[string]string{"LOCKER_MAX_KEYS": "7"}, args: []string{"--max-keys", "9"}, want: 9},
		{name: "zero", args: []string{"--max-keys", "0"}, err: "--max-keys 0: want at least 1"},
		{name: "negative", env: map[string]string{"LOCKER_MAX_KEYS": "-1"}, err: "--max-keys -1: want at least 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			o, err := parseOptions(append([]string{"--bind", "tcp://127.0.0.1:1", "--id", "x"}, tc.args...), io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseOptions: %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || o.maxKeys != tc.want {
				t.Fatalf("max-keys %d, %v; want %d", o.maxKeys, err, tc.want)
			}
			if cfg := serverConfig(o, nil, nil, nil, nil); cfg.MaxKeys != tc.want {
				t.Fatalf("server config MaxKeys %d, want %d", cfg.MaxKeys, tc.want)
			}
		})
	}
}

// TestMaxKeysReload runs lockerd with max-keys = 1 in its config file: a
// second tenant is refused with an error naming the cap, never a go;
// after the file raises it to 2 and SIGHUP, the second tenant is granted.
func TestMaxKeysReload(t *testing.T) {
	ep := freeEndpoint(t)
	conf := filepath.Join(t.TempDir(), "lockerd.conf")
	write := func(text string) {
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("key = tenant:*=3/1h\nmax-keys = 1\n")
	p := startLockerd(t, ep, "--bind", ep, "--metrics-addr", "", "-c", conf)
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 2 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d, err := c.Take(t.Context(), "tenant:a", 1); err != nil || !d.OK {
		t.Fatalf("first tenant: %+v, %v", d, err)
	}
	var se *locker.ServerError
	if d, err := c.Take(t.Context(), "tenant:b", 1); !errors.As(err, &se) || se.Msg != "too many live keys made on demand (--max-keys 1)" || d.OK {
		t.Fatalf("second tenant at --max-keys 1: %+v, %v", d, err)
	}
	write("key = tenant:*=3/1h\nmax-keys = 2\n")
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(p.stderr.String(), "reloaded") })
	if d, err := c.Take(t.Context(), "tenant:b", 1); err != nil || !d.OK || d.Remaining != 2 {
		t.Fatalf("second tenant after the reload raised --max-keys: %+v, %v", d, err)
	}
	if d, err := c.Take(t.Context(), "tenant:a", 1); err != nil || !d.OK || d.Remaining != 1 {
		t.Fatalf("first tenant after the reload: %+v, %v; want its count kept", d, err)
	}
}

// TestSharedFederationRefusesTemplateKeys starts lockerd in a shared
// federation with a sliding template and a sliding key, which shared mode
// cannot bound: it exits 1 with one line naming both, before it serves.
func TestSharedFederationRefusesTemplateKeys(t *testing.T) {
	pub := freeEndpoint(t)
	p := startLockerd(t, "", "--bind", freeEndpoint(t), "--metrics-addr", "", "--publish", pub, "--peer", pub,
		"--peer", freeEndpoint(t), "--federation", "shared", "--key", "tenant:*=3/1s/sliding", "--key", "s=2/1s/sliding")
	code := p.wait(t, 10*time.Second)
	const want = "shared federation cannot bound the sliding, gcra or multi-limit keys s, tenant:*: use strict mode or fixed keys"
	if stderr := p.stderr.String(); code != exitError || !strings.Contains(stderr, want) || strings.Contains(stderr, "msg=serving") {
		t.Fatalf("exit %d, stderr:\n%s\nwant 1, %q and no serving", code, stderr, want)
	}
}
