package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/curve"
)

// TestCurveReloadRevokesOpenConnection runs lockerd with CURVE, removes
// one client's key from the allow list and reloads: that client's open
// connection is refused from then on, while the other client is still
// served. It checks that lockerd hands the allow list to the server as
// Config.ClientAllowed, not only to the handshake.
func TestCurveReloadRevokesOpenConnection(t *testing.T) {
	dir := t.TempDir()
	clients := filepath.Join(dir, "clients")
	os.Mkdir(clients, 0o755)
	server, kept, revoked := filepath.Join(dir, "server"), filepath.Join(clients, "kept"), filepath.Join(clients, "revoked")
	kps := writeKeyPairs(t, server, kept, revoked)
	ep := freeEndpoint(t)
	p := startLockerd(t, "", "--bind", ep, "--metrics-addr", "", "--key", "free=1000/1h",
		"--curve-secret", server+".key", "--curve-clients", clients)
	client := func(name string) *locker.Client {
		sec, err := curve.Client(kps[server].Public, kps[name])
		if err != nil {
			t.Fatal(err)
		}
		// Attempts cover the moment before lockerd has bound.
		c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Security: sec, Timeout: 200 * time.Millisecond, Attempts: 50})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	keptC, revokedC := client(kept), client(revoked)
	for name, c := range map[string]*locker.Client{"kept": keptC, "revoked": revokedC} {
		if d, err := c.Take(t.Context(), "free", 1); err != nil || !d.OK {
			t.Fatalf("%s client before the reload: Take=%+v, %v\nstderr:\n%s", name, d, err, p.stderr.String())
		}
	}

	if err := os.Remove(revoked + ".pub"); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(p.stderr.String(), "reloaded") })

	var se *locker.ServerError
	if d, err := revokedC.Take(t.Context(), "free", 1); !errors.As(err, &se) || se.Msg != "client key not allowed" {
		t.Fatalf("revoked key on its open connection: Take=%+v, %v; want error client key not allowed", d, err)
	}
	if d, err := keptC.Take(t.Context(), "free", 1); err != nil || !d.OK {
		t.Fatalf("kept client after the reload: Take=%+v, %v", d, err)
	}
}

// writeKeyPairs writes a new key pair at each prefix (PREFIX.key and
// PREFIX.pub) and returns them by prefix; it skips the test without CURVE.
func writeKeyPairs(t *testing.T, prefixes ...string) map[string]curve.KeyPair {
	t.Helper()
	kps := map[string]curve.KeyPair{}
	for _, p := range prefixes {
		kp, err := curve.NewKeyPair()
		if err != nil {
			t.Skipf("no CURVE: %v", err)
		}
		if err := curve.WriteKeyPair(p, kp); err != nil {
			t.Fatal(err)
		}
		kps[p] = kp
	}
	return kps
}
