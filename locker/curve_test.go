package locker_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	zmq "github.com/pebbe/zmq4"
)

func mustKeyPair(tb testing.TB) locker.CurveKeyPair {
	tb.Helper()
	kp, err := locker.NewCurveKeyPair()
	if err != nil {
		tb.Skipf("no CURVE: %v", err)
	}
	return kp
}

func TestCurveKeyFiles(t *testing.T) {
	kp := mustKeyPair(t)
	prefix := filepath.Join(t.TempDir(), "client")
	if err := locker.WriteCurveKeyPair(prefix, kp); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret key mode=%v, want 0600", fi.Mode().Perm())
	}
	if err := locker.SecretKeyFileMode(prefix + ".key"); err != nil {
		t.Fatal(err)
	}
	if err := locker.WriteCurveKeyPair(prefix, kp); err == nil {
		t.Fatal("WriteCurveKeyPair overwrote an existing key")
	}
	pub, err := locker.ReadCurveKey(prefix + ".pub")
	if err != nil || pub != kp.Public {
		t.Fatalf("ReadCurveKey(pub)=%q, %v, want %q", pub, err, kp.Public)
	}
	sec, err := locker.ReadCurveKey(prefix + ".key")
	if err != nil || sec != kp.Secret {
		t.Fatalf("ReadCurveKey(key)=%q, %v", sec, err)
	}
	// A key given inline instead of a file name.
	if k, err := locker.ReadCurveKey(kp.Public); err != nil || k != kp.Public {
		t.Fatalf("ReadCurveKey(inline)=%q, %v", k, err)
	}
	os.Chmod(prefix+".key", 0o644)
	if err := locker.SecretKeyFileMode(prefix + ".key"); err == nil {
		t.Fatal("SecretKeyFileMode accepted a world-readable secret key")
	}
}

func TestReadAllowList(t *testing.T) {
	a, b := mustKeyPair(t), mustKeyPair(t)
	dir := t.TempDir()
	list := filepath.Join(dir, "clients.txt")
	os.WriteFile(list, []byte("# clients\n"+a.Public+"\n\n"+b.Public+"\n"), 0o644)
	keys, err := locker.ReadAllowList(list)
	if err != nil || len(keys) != 2 || keys[0] != a.Public || keys[1] != b.Public {
		t.Fatalf("ReadAllowList(file)=%v, %v", keys, err)
	}
	kd := filepath.Join(dir, "keys")
	os.Mkdir(kd, 0o755)
	os.WriteFile(filepath.Join(kd, "a.pub"), []byte(a.Public+"\n"), 0o644)
	os.WriteFile(filepath.Join(kd, "a.key"), []byte(a.Secret+"\n"), 0o600) // not a .pub: ignored
	keys, err = locker.ReadAllowList(kd)
	if err != nil || len(keys) != 1 || keys[0] != a.Public {
		t.Fatalf("ReadAllowList(dir)=%v, %v", keys, err)
	}
	bad := []struct{ name, text string }{
		{"empty", "# nothing\n"},
		{"short key", "abc\n"},
		{"junk", strings.Repeat("~", 40) + "\n"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			os.WriteFile(p, []byte(tc.text), 0o644)
			if keys, err := locker.ReadAllowList(p); err == nil {
				t.Fatalf("ReadAllowList=%v, want an error", keys)
			}
		})
	}
}

// TestCurveServer checks that an allowed key is served and that an
// unknown key and a plaintext client get no answer at all.
func TestCurveServer(t *testing.T) {
	serverKP, allowedKP, strangerKP := mustKeyPair(t), mustKeyPair(t), mustKeyPair(t)
	cs, err := locker.NewCurveServer(serverKP.Secret, []string{allowedKP.Public})
	if err != nil {
		t.Fatal(err)
	}
	_, ep := newTestServer(t, locker.Config{ID: "secure", Security: cs.Apply})
	t.Cleanup(cs.Close) // after the server stops: cleanups run last-in first-out
	if cs.PublicKey() != serverKP.Public {
		t.Fatalf("PublicKey()=%q, want %q", cs.PublicKey(), serverKP.Public)
	}

	client := func(kp *locker.CurveKeyPair) *locker.Client {
		cfg := locker.ClientConfig{Endpoints: []string{ep}, Timeout: 300 * time.Millisecond, Attempts: 1}
		if kp != nil {
			sec, err := locker.CurveClient(serverKP.Public, *kp)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Security = sec
		}
		return mustClient(t, cfg)
	}
	if id, err := client(&allowedKP).Ping(t.Context()); err != nil || id != "secure" {
		t.Fatalf("allowed client: Ping()=%q, %v", id, err)
	}
	if _, err := client(&strangerKP).Ping(t.Context()); !errors.Is(err, locker.ErrTimeout) {
		t.Fatalf("unknown key: Ping err=%v, want ErrTimeout (no answer)", err)
	}
	if _, err := client(nil).Ping(t.Context()); !errors.Is(err, locker.ErrTimeout) {
		t.Fatalf("plaintext client: Ping err=%v, want ErrTimeout (no answer)", err)
	}
	// A raw REQ socket without CURVE gets nothing either.
	req, _ := zmq.NewSocket(zmq.REQ)
	defer req.Close()
	req.SetLinger(0)
	req.SetRcvtimeo(300 * time.Millisecond)
	req.Connect(ep)
	req.Send("let me go", 0)
	if r, err := req.Recv(0); err == nil {
		t.Fatalf("plaintext REQ got %q", r)
	}
	// The allow list can change at run time.
	cs.SetAllowed([]string{strangerKP.Public})
	if _, err := client(&strangerKP).Ping(t.Context()); err != nil {
		t.Fatalf("newly allowed key: Ping err=%v", err)
	}
	if _, err := client(&allowedKP).Ping(t.Context()); !errors.Is(err, locker.ErrTimeout) {
		t.Fatalf("removed key: Ping err=%v, want ErrTimeout", err)
	}
}

func TestLocalEndpoint(t *testing.T) {
	tests := []struct {
		ep   string
		want bool
	}{
		{"tcp://127.0.0.1:7777", true},
		{"tcp://127.1.2.3:*", true},
		{"tcp://localhost:7777", true},
		{"tcp://[::1]:7777", true},
		{"ipc:///tmp/lockerd.sock", true},
		{"inproc://x", true},
		{"tcp://*:7777", false},
		{"tcp://0.0.0.0:7777", false},
		{"tcp://10.0.0.1:7777", false},
		{"tcp://eth0:7777", false},
		{"tcp://[::]:7777", false},
		{"garbage", false},
	}
	for _, tc := range tests {
		if got := locker.LocalEndpoint(tc.ep); got != tc.want {
			t.Errorf("LocalEndpoint(%q)=%v, want %v", tc.ep, got, tc.want)
		}
	}
}

// TestCurveLeavesPlainSocketsAlone checks that a plaintext server in the
// same process keeps working while the authentication handler runs.
func TestCurveLeavesPlainSocketsAlone(t *testing.T) {
	kp := mustKeyPair(t)
	cs, err := locker.NewCurveServer(kp.Secret, []string{kp.Public})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	_, ep := newTestServer(t, locker.Config{ID: "plain"})
	c := mustClient(t, locker.ClientConfig{Endpoints: []string{ep}, Timeout: time.Second, Attempts: 1})
	if id, err := c.Ping(t.Context()); err != nil || id != "plain" {
		t.Fatalf("Ping()=%q, %v", id, err)
	}
}

// TestCurveRevokedKeyRefused connects two allowed CURVE clients, one of
// them with a wait held, then removes that one's key from the allow list:
// its open connection is refused from then on, its held wait included,
// while the other client is still served.
func TestCurveRevokedKeyRefused(t *testing.T) {
	serverKP, keptKP, revokedKP := mustKeyPair(t), mustKeyPair(t), mustKeyPair(t)
	cs, err := locker.NewCurveServer(serverKP.Secret, []string{keptKP.Public, revokedKP.Public})
	if err != nil {
		t.Fatal(err)
	}
	srv, ep := newTestServer(t, locker.Config{ID: "secure", Security: cs.Apply,
		Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}, {Name: "free", Limit: 1000, Window: time.Hour}}})
	t.Cleanup(cs.Close)
	client := func(kp locker.CurveKeyPair) *locker.Client {
		sec, err := locker.CurveClient(serverKP.Public, kp)
		if err != nil {
			t.Fatal(err)
		}
		return mustClient(t, locker.ClientConfig{Endpoints: []string{ep}, Security: sec, Attempts: 1})
	}
	kept, revoked := client(keptKP), client(revokedKP)
	if d, err := kept.Take(t.Context(), "api", 1); err != nil || !d.OK {
		t.Fatalf("kept client: Take=%+v, %v", d, err)
	}
	if d, err := revoked.Take(t.Context(), "free", 1); err != nil || !d.OK {
		t.Fatalf("client before revocation: Take=%+v, %v", d, err)
	}
	waitErr := make(chan error, 1)
	go func() {
		_, err := revoked.WaitMax(t.Context(), "api", 1, time.Hour)
		waitErr <- err
	}()
	waitFor(t, func() bool { return waitersOf(srv, "api") == 1 })

	cs.SetAllowed([]string{keptKP.Public})
	var se *locker.ServerError
	if err := <-waitErr; !errors.As(err, &se) || se.Msg != "client key not allowed" {
		t.Fatalf("held wait of a revoked key: %v, want error client key not allowed", err)
	}
	if d, err := revoked.Take(t.Context(), "free", 1); !errors.As(err, &se) || se.Msg != "client key not allowed" {
		t.Fatalf("revoked key on its open connection: Take=%+v, %v; want error client key not allowed", d, err)
	}
	if _, err := revoked.Ping(t.Context()); !errors.As(err, &se) {
		t.Fatalf("revoked key: Ping err=%v, want a server error", err)
	}
	if d, err := kept.Take(t.Context(), "free", 1); err != nil || !d.OK {
		t.Fatalf("kept client after the revocation: Take=%+v, %v", d, err)
	}
}
