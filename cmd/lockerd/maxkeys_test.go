package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
