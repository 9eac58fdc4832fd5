package curve_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/curve"
	"github.com/lockerd/lockerd/locker/lockertest"
	zmq "github.com/pebbe/zmq4"
)

func mustKeyPair(tb testing.TB) curve.KeyPair {
	tb.Helper()
	kp, err := curve.NewKeyPair()
	if err != nil {
		tb.Skipf("no CURVE: %v", err)
	}
	return kp
}

func TestKeyFiles(t *testing.T) {
	kp := mustKeyPair(t)
	prefix := filepath.Join(t.TempDir(), "client")
	if err := curve.WriteKeyPair(prefix, kp); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret key mode=%v, want 0600", fi.Mode().Perm())
	}
	if err := curve.SecretKeyFileMode(prefix + ".key"); err != nil {
		t.Fatal(err)
	}
	if err := curve.WriteKeyPair(prefix, kp); err == nil {
		t.Fatal("WriteKeyPair overwrote an existing key")
	}
	pub, err := curve.ReadKey(prefix + ".pub")
	if err != nil || pub != kp.Public {
		t.Fatalf("ReadKey(pub)=%q, %v, want %q", pub, err, kp.Public)
	}
	sec, err := curve.ReadKey(prefix + ".key")
	if err != nil || sec != kp.Secret {
		t.Fatalf("ReadKey(key)=%q, %v", sec, err)
	}
	// A key given inline instead of a file name.
	if k, err := curve.ReadKey(kp.Public); err != nil || k != kp.Public {
		t.Fatalf("ReadKey(inline)=%q, %v", k, err)
	}
	os.Chmod(prefix+".key", 0o644)
	if err := curve.SecretKeyFileMode(prefix + ".key"); err == nil {
		t.Fatal("SecretKeyFileMode accepted a world-readable secret key")
	}
}

func TestReadAllowList(t *testing.T) {
	a, b := mustKeyPair(t), mustKeyPair(t)
	dir := t.TempDir()
	list := filepath.Join(dir, "clients.txt")
	os.WriteFile(list, []byte("# clients\n"+a.Public+"\n\n"+b.Public+"\n"), 0o644)
	keys, err := curve.ReadAllowList(list)
	if err != nil || len(keys) != 2 || keys[0] != a.Public || keys[1] != b.Public {
		t.Fatalf("ReadAllowList(file)=%v, %v", keys, err)
	}
	kd := filepath.Join(dir, "keys")
	os.Mkdir(kd, 0o755)
	os.WriteFile(filepath.Join(kd, "a.pub"), []byte(a.Public+"\n"), 0o644)
	os.WriteFile(filepath.Join(kd, "a.key"), []byte(a.Secret+"\n"), 0o600) // not a .pub: ignored
	keys, err = curve.ReadAllowList(kd)
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
			if keys, err := curve.ReadAllowList(p); err == nil {
				t.Fatalf("ReadAllowList=%v, want an error", keys)
			}
		})
	}
}

// TestServer checks that an allowed key is served and that an
// unknown key and a plaintext client get no answer at all.
func TestServer(t *testing.T) {
	serverKP, allowedKP, strangerKP := mustKeyPair(t), mustKeyPair(t), mustKeyPair(t)
	cs, err := curve.NewServer(serverKP.Secret, []string{allowedKP.Public})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cs.Close) // after the server stops: cleanups run last-in first-out
	ep := lockertest.NewServer(t, locker.Config{ID: "secure", Security: cs.Apply, ClientAllowed: cs.Allowed}).Endpoint
	if cs.PublicKey() != serverKP.Public {
		t.Fatalf("PublicKey()=%q, want %q", cs.PublicKey(), serverKP.Public)
	}

	client := func(kp *curve.KeyPair) *locker.Client {
		cfg := locker.ClientConfig{Endpoints: []string{ep}, Timeout: 300 * time.Millisecond, Attempts: 1}
		if kp != nil {
			sec, err := curve.Client(serverKP.Public, *kp)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Security = sec
		}
		return lockertest.NewClient(t, cfg)
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

// TestLeavesPlainSocketsAlone checks that a plaintext server in the
// same process keeps working while the authentication handler runs.
func TestLeavesPlainSocketsAlone(t *testing.T) {
	kp := mustKeyPair(t)
	cs, err := curve.NewServer(kp.Secret, []string{kp.Public})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ep := lockertest.NewServer(t, locker.Config{ID: "plain"}).Endpoint
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}, Timeout: time.Second, Attempts: 1})
	if id, err := c.Ping(t.Context()); err != nil || id != "plain" {
		t.Fatalf("Ping()=%q, %v", id, err)
	}
}

// TestRevokedKeyRefused connects two allowed CURVE clients, one of
// them with a wait held, then removes that one's key from the allow list:
// its open connection is refused from then on, its held wait included,
// while the other client is still served.
func TestRevokedKeyRefused(t *testing.T) {
	serverKP, keptKP, revokedKP := mustKeyPair(t), mustKeyPair(t), mustKeyPair(t)
	cs, err := curve.NewServer(serverKP.Secret, []string{keptKP.Public, revokedKP.Public})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cs.Close) // after the server stops
	srv := lockertest.NewServer(t, locker.Config{ID: "secure", Security: cs.Apply, ClientAllowed: cs.Allowed,
		Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}, {Name: "free", Limit: 1000, Window: time.Hour}}})
	ep := srv.Endpoint
	client := func(kp curve.KeyPair) *locker.Client {
		sec, err := curve.Client(serverKP.Public, kp)
		if err != nil {
			t.Fatal(err)
		}
		return lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}, Security: sec, Attempts: 1})
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
	lockertest.WaitFor(t, func() bool { return lockertest.Waiters(srv.Server, "api") == 1 })

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

// TestServerAllowed checks that Allowed follows the allow list as
// SetAllowed replaces it, and admits nobody once the Server is closed.
func TestServerAllowed(t *testing.T) {
	serverKP, a, b := mustKeyPair(t), mustKeyPair(t), mustKeyPair(t)
	cs, err := curve.NewServer(serverKP.Secret, []string{a.Public})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	check := func(when string, wantA, wantB bool) {
		t.Helper()
		if got := cs.Allowed(a.Public); got != wantA {
			t.Errorf("%s: Allowed(a)=%v, want %v", when, got, wantA)
		}
		if got := cs.Allowed(b.Public); got != wantB {
			t.Errorf("%s: Allowed(b)=%v, want %v", when, got, wantB)
		}
	}
	check("at start", true, false)
	if cs.Allowed("") {
		t.Error(`Allowed("") is true, want false: a connection without a key`)
	}
	cs.SetAllowed([]string{b.Public})
	check("after SetAllowed(b)", false, true)
	cs.Close()
	check("after Close", false, false)
}

// TestHandlerRestarts closes the only Server and makes a new one, many
// times: each Close stops the ZAP handler and each NewServer starts it
// again on the same inproc endpoint, which must be free by then.
func TestHandlerRestarts(t *testing.T) {
	kp := mustKeyPair(t)
	for i := 0; i < 20; i++ {
		cs, err := curve.NewServer(kp.Secret, []string{kp.Public})
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		cs.Close()
	}
}
