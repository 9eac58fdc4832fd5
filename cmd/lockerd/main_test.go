package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/curve"
	"github.com/lockerd/lockerd/locker/lockertest"
	"github.com/lockerd/lockerd/metrics"
	"github.com/lockerd/lockerd/peer"
	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"
)

var lockerdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lockerd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lockerdBin = filepath.Join(dir, "lockerd")
	if out, err := exec.Command("go", "build", "-o", lockerdBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback TCP port that nothing listens on.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var freeEndpoint = lockertest.FreeEndpoint

// syncBuffer is a bytes.Buffer safe for a process writing and a test
// reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a lockerd process.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error
}

// startLockerd starts the real binary with args and waits until it
// answers a ping on endpoint (if not empty). It is killed when the test
// ends if still running.
func startLockerd(tb testing.TB, endpoint string, args ...string) *proc {
	tb.Helper()
	return startCommand(tb, endpoint, exec.Command(lockerdBin, args...))
}

// startCommand starts cmd, a command that runs lockerd, as startLockerd
// does.
func startCommand(tb testing.TB, endpoint string, cmd *exec.Cmd) *proc {
	tb.Helper()
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	tb.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	if endpoint != "" {
		c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{endpoint}, Timeout: 200 * time.Millisecond, Attempts: 50})
		if err != nil {
			tb.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Ping(context.Background()); err != nil {
			tb.Fatalf("lockerd did not answer: %v\nstderr:\n%s", err, p.stderr.String())
		}
	}
	return p
}

// wait waits up to d for the process to exit and returns its status.
func (p *proc) wait(tb testing.TB, d time.Duration) int {
	tb.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		tb.Fatalf("lockerd still running after %v\nstderr:\n%s", d, p.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func TestBadFlagsExit2BeforeBinding(t *testing.T) {
	port := freePort(t)
	ep := "tcp://127.0.0.1:" + strconv.Itoa(port)
	dir := t.TempDir()
	badConf := filepath.Join(dir, "bad.conf")
	os.WriteFile(badConf, []byte("key = api=5/800ms\nfrobnicate = yes\n"), 0o644)
	badKeyConf := filepath.Join(dir, "badkey.conf")
	os.WriteFile(badKeyConf, []byte("key = api=0/1s\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"limit 0", []string{"--key", "api=0/1s"}, `limit "0"`},
		{"negative limit", []string{"--key", "api=-5/1s"}, `limit "-5"`},
		{"window 0", []string{"--key", "api=5/0s"}, "window 0s"},
		{"negative window", []string{"--key", "api=5/-1s"}, "window -1s"},
		{"bad name", []string{"--key", "a b=5/1s"}, "not allowed"},
		{"missing window", []string{"--key", "api=5"}, "missing /WINDOW"},
		{"duplicate key", []string{"--key", "api=5/1s", "--key", "api=6/1s"}, "given twice"},
		{"default twice", []string{"--key", "default=5/1s", "-n", "3"}, "use one"},
		{"limit flag 0", []string{"-n", "0"}, "--limit 0"},
		{"window flag", []string{"-w", "1500us"}, "--window"},
		{"unknown flag", []string{"--frobnicate"}, "unknown flag"},
		{"stray argument", []string{"serve"}, "unexpected argument"},
		{"bad bind", []string{"--bind", "localhost:7777"}, "want an endpoint"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
		{"negative max wait", []string{"--max-wait", "-1s"}, "negative"},
		{"no config file", []string{"-c", filepath.Join(dir, "missing.conf")}, "no such file"},
		{"unknown setting in file", []string{"-c", badConf}, "bad.conf:2: unknown setting"},
		{"bad key in file", []string{"-c", badKeyConf}, `limit "0"`},
		{"curve secret without clients", []string{"--curve-secret", badConf}, "needs --curve-clients"},
		{"peer without port", []string{"--publish", "tcp://127.0.0.1:" + strconv.Itoa(freePort(t)), "--peer", "tcp://127.0.0.1"}, `--peer "tcp://127.0.0.1": a tcp endpoint needs host and port`},
		{"peer on every interface", []string{"--publish", "tcp://127.0.0.1:" + strconv.Itoa(freePort(t)), "--peer", "tcp://*:7778"}, "--peer"},
		{"publish on a random port", []string{"--publish", "tcp://127.0.0.1:*"}, "--publish"},
		{"publish without port", []string{"--publish", "tcp://127.0.0.1"}, "--publish"},
		{"bind without port", []string{"--bind", "tcp://127.0.0.1"}, "needs host and port"},
		{"bind IPv6 without brackets", []string{"--bind", "tcp://::1:7777"}, "in brackets"},
		{"bind unknown transport", []string{"--bind", "udp://127.0.0.1:7777"}, "want tcp, ipc or inproc"},
		{"bad metrics address", []string{"--metrics-addr", "9777"}, "--metrics-addr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(t.Context(), append([]string{"--bind", ep, "--metrics-addr", ""}, tc.args...), &out, &errOut)
			lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
			if code != exitUsage || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and one line mentioning %q", code, errOut.String(), tc.want)
			}
			// Nothing was bound: the port is still free.
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				t.Fatalf("port bound after a usage error: %v", err)
			}
			l.Close()
		})
	}
}

func TestRunReturnsAfterCancel(t *testing.T) {
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var errOut syncBuffer
	ep := freeEndpoint(t)
	go func() {
		done <- run(ctx, []string{"--bind", ep, "--metrics-addr", "127.0.0.1:0", "--key", "api=5/1s"}, io.Discard, &errOut)
	}()
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 200 * time.Millisecond, Attempts: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Served: go, or sorry when an attempt that timed out on a loaded
	// machine was answered after all and its resend found the tokens
	// spent (a resent request may take tokens twice, never fewer).
	if _, err := c.Take(t.Context(), "api", 5); err != nil {
		t.Fatalf("Take: %v", err)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("run returned %d, want 0; stderr:\n%s", code, errOut.String())
		}
	case <-time.After(2 * time.Second):
		t.Fatal("run did not return within 2s of cancel")
	}
	c.Close()
	// The signal package's receiver starts with the first Notify (for
	// SIGHUP) and lives as long as the process; nothing else may remain.
	goleak.VerifyNone(t, before, goleak.IgnoreTopFunction("os/signal.signal_recv"))
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"--version"}, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "lockerd dev") {
		t.Fatalf("--version: %d %q", code, out.String())
	}
}

func TestPortInUseExits1(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := startLockerd(t, "", "--bind", "tcp://"+l.Addr().String(), "--metrics-addr", "")
	if code := p.wait(t, 5*time.Second); code != exitError || !strings.Contains(p.stderr.String(), "bind") {
		t.Fatalf("exit %d, stderr %q; want 1 and a bind error", code, p.stderr.String())
	}
}

// TestSIGTERMAnswersHeldWaits holds a wait, sends SIGTERM, and checks the
// wait is answered with sorry and the process exits 0 within a second.
func TestSIGTERMAnswersHeldWaits(t *testing.T) {
	ep := freeEndpoint(t)
	p := startLockerd(t, ep, "--bind", ep, "--metrics-addr", "", "--key", "api=1/1h")
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 5 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d, err := c.Take(t.Context(), "api", 1); err != nil || !d.OK {
		t.Fatalf("Take=%+v, %v", d, err)
	}
	type res struct {
		d   locker.Decision
		err error
	}
	got := make(chan res, 1)
	go func() {
		d, err := c.WaitMax(t.Context(), "api", 1, 20*time.Second)
		got <- res{d, err}
	}()
	waitFor(t, func() bool {
		st, err := c.Status(t.Context())
		return err == nil && st.Keys[0].Waiters == 1
	})
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	r := <-got
	if r.err != nil || r.d.OK {
		t.Fatalf("held wait got %+v, %v; want sorry", r.d, r.err)
	}
	// lockerd gives its sockets at most half a second to flush; the
	// bound here is wide, for a loaded machine: it catches a shutdown
	// that hangs, not one that is slow.
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	t.Logf("shutdown took %v", time.Since(start))
}

func TestConfigFileAndReload(t *testing.T) {
	ep := freeEndpoint(t)
	conf := filepath.Join(t.TempDir(), "lockerd.conf")
	write := func(text string) {
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("# test config\nkey = api=3/1h\nmax-waiters = 5\nid = \"from file\"\n")
	p := startLockerd(t, ep, "--bind", ep, "--metrics-addr", "", "-c", conf)
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 2 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if id, err := c.Ping(t.Context()); err != nil || id != "from file" {
		t.Fatalf("Ping=%q, %v; want the id from the file", id, err)
	}
	if d, err := c.Take(t.Context(), "api", 2); err != nil || !d.OK || d.Remaining != 1 {
		t.Fatalf("Take=%+v, %v; want go with 1 remaining", d, err)
	}
	limitOf := func(key string) (int64, int64) {
		st, err := c.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range st.Keys {
			if k.Name == key {
				return k.Limit, k.Granted
			}
		}
		return -1, -1
	}
	// Raise the limit and add a key: the 2 tokens granted stay granted.
	write("key = api=5/1h\nkey = new=1/1s\n")
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { l, _ := limitOf("new"); return l == 1 })
	if l, g := limitOf("api"); l != 5 || g != 2 {
		t.Fatalf("after reload api limit=%d granted=%d, want 5 and 2", l, g)
	}
	if d, err := c.Take(t.Context(), "api", 3); err != nil || !d.OK || d.Remaining != 0 {
		t.Fatalf("Take after reload=%+v, %v; want go with 0 remaining", d, err)
	}
	// An invalid file keeps the old configuration and says why.
	write("key = api=0/1h\n")
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(p.stderr.String(), "reload failed") })
	if l, _ := limitOf("api"); l != 5 {
		t.Fatalf("after invalid reload api limit=%d, want 5 kept", l)
	}
	if l, _ := limitOf("new"); l != 1 {
		t.Fatalf("after invalid reload the key new is gone")
	}
}

// TestSeedClientGetsExactlyLimit runs the seed design's Python client
// against lockerd: asking faster than the limit, it gets exactly LIMIT go
// in every window. Bare replies carry no window index, so each reply is
// placed in the epoch-aligned window that holds both the moment before it
// was sent and the moment after it came back; a window with a reply that
// straddles a boundary is not judged.
func TestSeedClientGetsExactlyLimit(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import zmq").Run(); err != nil {
		t.Skipf("no python3-zmq (%v): apt-get install python3-zmq", err)
	}
	const limit, window = 5, 400 * time.Millisecond
	ep := freeEndpoint(t)
	startLockerd(t, ep, "--bind", ep, "--metrics-addr", "", "-n", strconv.Itoa(limit), "-w", window.String())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "testdata/seed_client.py", ep, "150", "0.02").Output()
	if err != nil {
		t.Fatalf("seed client: %v", err)
	}
	gos, asked := map[int64]int{}, map[int64]int{}
	straddled := map[int64]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var t0, t1 int64
		var reply string
		if _, err := fmt.Sscan(sc.Text(), &t0, &t1, &reply); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		if reply != "go" && reply != "sorry" {
			t.Fatalf("reply %q, want a bare go or sorry", reply)
		}
		k0, k1 := t0/int64(window), t1/int64(window)
		if k0 != k1 {
			straddled[k0], straddled[k1] = true, true
			continue
		}
		asked[k0]++
		if reply == "go" {
			gos[k0]++
		}
	}
	judged := 0
	for k, n := range asked {
		if straddled[k] || n < limit+1 || asked[k-1] == 0 || asked[k+1] == 0 {
			continue // first, last or ambiguous window
		}
		judged++
		if gos[k] != limit {
			t.Errorf("window %d: %d go out of %d requests, want exactly %d", k, gos[k], n, limit)
		}
	}
	if judged < 3 {
		t.Fatalf("only %d windows could be judged", judged)
	}
	t.Logf("%d windows judged", judged)
}

// TestConcurrentClientsExactLimitPerWindow has 8 clients hammer a real
// lockerd for about 20 windows and counts go and sorry per WINDOW field.
func TestConcurrentClientsExactLimitPerWindow(t *testing.T) {
	const limit, window, windows = 5, 50 * time.Millisecond, 20
	ep := freeEndpoint(t)
	startLockerd(t, ep, "--bind", ep, "--metrics-addr", "", "--key", fmt.Sprintf("api=%d/%s", limit, window))
	var mu sync.Mutex
	gos, sorries := map[int64]int{}, map[int64]int{}
	ctx, cancel := context.WithTimeout(t.Context(), windows*window)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 2 * time.Second, Attempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				d, err := c.Take(ctx, "api", 1)
				if err != nil {
					return
				}
				mu.Lock()
				if d.OK {
					gos[d.Window]++
				} else {
					sorries[d.Window]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Whether the clients keep a window busy depends on how the machine
	// schedules them; what must hold whatever it does: no window grants
	// more than the limit, and a window that said sorry to a request for
	// one token had granted exactly the limit.
	full := 0
	for k, n := range gos {
		if n > limit {
			t.Errorf("window %d: %d go, more than the limit %d", k, n, limit)
		}
	}
	for k := range sorries {
		if gos[k] != limit {
			t.Errorf("window %d: sorry after %d go, want exactly %d", k, gos[k], limit)
		}
		full++
	}
	if full == 0 {
		t.Fatalf("no window was ever full in %d windows of %s: %v go per window", windows, window, gos)
	}
	t.Logf("%d windows full, %d windows seen", full, len(gos))
}

// TestClientSurvivesKillAndRestart kills lockerd with SIGKILL under a
// client and starts it again on the same endpoint: the client's requests
// go on being answered.
func TestClientSurvivesKillAndRestart(t *testing.T) {
	ep := freeEndpoint(t)
	args := []string{"--bind", ep, "--metrics-addr", "", "--key", "api=1000000/1s"}
	p := startLockerd(t, ep, args...)
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 200 * time.Millisecond, Attempts: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	answered, failed := 0, []error{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := c.Take(ctx, "api", 1)
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					answered++
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return answered }
	waitFor(t, func() bool { return count() > 100 })
	p.cmd.Process.Kill()
	p.wait(t, 5*time.Second)
	before := count()
	startLockerd(t, ep, args...)
	waitFor(t, func() bool { return count() > before+100 })
	close(stop)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d requests failed across the restart, first: %v", len(failed), failed[0])
	}
}

// TestClientStartedBeforeServer sends a request before lockerd runs.
func TestClientStartedBeforeServer(t *testing.T) {
	ep := freeEndpoint(t)
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 300 * time.Millisecond, Attempts: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan error, 1)
	go func() {
		d, err := c.Take(t.Context(), "default", 1)
		if err == nil && !d.OK {
			err = errors.New("sorry")
		}
		got <- err
	}()
	startLockerd(t, "", "--bind", ep, "--metrics-addr", "")
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("Take: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no answer after the server started")
	}
}

var waitFor = lockertest.WaitFor

func TestCurveFlags(t *testing.T) {
	dir := t.TempDir()
	server, client, stranger := filepath.Join(dir, "server"), filepath.Join(dir, "clients", "c1"), filepath.Join(dir, "stranger")
	os.Mkdir(filepath.Join(dir, "clients"), 0o755)
	kps := writeKeyPairs(t, server, client, stranger)
	ep := freeEndpoint(t)
	args := []string{"--bind", ep, "--metrics-addr", "", "--curve-secret", server + ".key", "--curve-clients", filepath.Join(dir, "clients")}
	startLockerd(t, "", args...)
	ping := func(kp curve.KeyPair, withCurve bool) error {
		cfg := locker.ClientConfig{Endpoints: []string{ep}, Timeout: 500 * time.Millisecond, Attempts: 4}
		if withCurve {
			sec, err := curve.Client(kps[server].Public, kp)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Security = sec
		}
		c, err := locker.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Ping(t.Context())
		return err
	}
	if err := ping(kps[client], true); err != nil {
		t.Fatalf("allowed client: %v", err)
	}
	if err := ping(kps[stranger], true); !errors.Is(err, locker.ErrTimeout) {
		t.Fatalf("unknown key: %v, want no answer", err)
	}
	if err := ping(curve.KeyPair{}, false); !errors.Is(err, locker.ErrTimeout) {
		t.Fatalf("plaintext: %v, want no answer", err)
	}
	// A public key file with a line of 100 KiB is refused naming its
	// line, not with "token too long".
	huge := filepath.Join(dir, "huge.pub")
	os.WriteFile(huge, []byte("# a comment\n"+strings.Repeat("k", 100<<10)+"\n"), 0o644)
	var hugeOut bytes.Buffer
	if code := run(t.Context(), []string{"--bind", freeEndpoint(t), "--metrics-addr", "", "--curve-secret", server + ".key", "--curve-clients", huge}, io.Discard, &hugeOut); code != exitUsage || !strings.Contains(hugeOut.String(), "huge.pub:2: curve: a CURVE key is 40 Z85 characters, got 102400") {
		t.Fatalf("huge .pub: exit %d, %q; want 2 naming the line", code, hugeOut.String())
	}
	// A secret key others can read is refused before anything binds.
	os.Chmod(server+".key", 0o644)
	var errOut bytes.Buffer
	if code := run(t.Context(), append(args[:0:0], "--bind", freeEndpoint(t), "--metrics-addr", "", "--curve-secret", server+".key", "--curve-clients", client+".pub"), io.Discard, &errOut); code != exitUsage || !strings.Contains(errOut.String(), "readable by others") {
		t.Fatalf("world-readable secret: exit %d, %q; want 2", code, errOut.String())
	}
}

// TestShutdownUnderLoadAnswersEveryWait holds many waits while clients
// hammer the server, then stops it: every held wait is answered.
func TestShutdownUnderLoadAnswersEveryWait(t *testing.T) {
	const waiters = 200
	ep := freeEndpoint(t)
	p := startLockerd(t, ep, "--bind", ep, "--metrics-addr", "", "--key", "held=1/1h", "--key", "busy=1000000/1s")
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 10 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Take(t.Context(), "held", 1)
	answers := make(chan error, waiters)
	for i := 0; i < waiters; i++ {
		go func() {
			d, err := c.WaitMax(t.Context(), "held", 1, 20*time.Second)
			if err == nil && d.OK {
				err = errors.New("go for an exhausted key")
			}
			answers <- err
		}()
	}
	load, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for load.Err() == nil {
				c.Take(load, "busy", 1)
			}
		}()
	}
	waitFor(t, func() bool {
		st, err := c.Status(t.Context())
		if err != nil {
			return false
		}
		for _, k := range st.Keys {
			if k.Name == "held" {
				return k.Waiters == waiters
			}
		}
		return false
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	for i := 0; i < waiters; i++ {
		if err := <-answers; err != nil {
			t.Fatalf("held wait %d: %v", i, err)
		}
	}
	stop()
	wg.Wait()
	if code := p.wait(t, 2*time.Second); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
}

// TestProbesWithASilentPeer: /healthz answers as soon as the loop runs;
// /readyz waits for the peers, and gives up waiting for a silent one
// after ten heartbeats.
func TestProbesWithASilentPeer(t *testing.T) {
	ep, pub, silent := freeEndpoint(t), freeEndpoint(t), freeEndpoint(t)
	maddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	start := time.Now()
	startLockerd(t, ep, "--bind", ep, "--metrics-addr", maddr, "--publish", pub, "--peer", pub, "--peer", silent,
		"--heartbeat", "300ms")
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + maddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, func() bool { code, _ := get("/healthz"); return code == http.StatusOK })
	code, body := get("/readyz")
	if time.Since(start) < 2*time.Second && (code != http.StatusServiceUnavailable || !strings.Contains(body, "0 of 1 peers heard")) {
		t.Fatalf("/readyz with a silent peer = %d %q, want 503 naming the peers", code, body)
	}
	waitFor(t, func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	if el := time.Since(start); el < 3*time.Second {
		t.Fatalf("/readyz ready after %v, before ten heartbeats of 300ms", el)
	}
}

// TestREQStartedBeforeServer is the seed's situation: a plain REQ socket
// connects and sends its one request while nothing listens, and lockerd
// starts afterwards. ZeroMQ queues the request on the connecting side, so
// that first request, sent once and never retried, gets its reply.
func TestREQStartedBeforeServer(t *testing.T) {
	ep := freeEndpoint(t)
	req, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	req.SetLinger(0)
	if err := req.Connect(ep); err != nil {
		t.Fatal(err)
	}
	if _, err := req.Send("take default", 0); err != nil {
		t.Fatalf("send before the server runs: %v", err)
	}
	startLockerd(t, "", "--bind", ep, "--metrics-addr", "")
	poller := zmq.NewPoller()
	poller.Add(req, zmq.POLLIN)
	polled, err := poller.Poll(15 * time.Second)
	if err != nil || len(polled) == 0 {
		t.Fatalf("no reply within 15s of starting lockerd (err %v)", err)
	}
	reply, err := req.Recv(0)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := locker.ParseReply([]byte(reply)); err != nil || r.Kind != locker.ReplyGo || !r.Full {
		t.Fatalf("reply %q (%+v, %v), want go for the first take of the key default", reply, r, err)
	}
}

// TestFederationEndStopsLockerd makes the federation end while lockerd
// serves, in each way it can (an error, a panic, a return nobody asked
// for): lockerd answers its held waits sorry, as at shutdown, and exits
// 1 naming the federation, instead of serving on alone.
func TestFederationEndStopsLockerd(t *testing.T) {
	tests := []struct {
		name string
		end  func() error
		want string
	}{
		{"error", func() error { return errors.New("peer: recv: injected") }, "lockerd: federation: peer: recv: injected"},
		{"panic", func() error { panic("injected") }, "lockerd: federation: panic: injected"},
		{"return", func() error { return nil }, "lockerd: federation: stopped while lockerd was serving"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fail := make(chan struct{})
			endNodeOn(t, fail, tc.end)
			ep, pub := freeEndpoint(t), freeEndpoint(t)
			var errOut syncBuffer
			done := make(chan int, 1)
			go func() {
				done <- run(t.Context(), []string{"--bind", ep, "--metrics-addr", "", "--key", "api=1/1h",
					"--publish", pub, "--peer", pub}, io.Discard, &errOut)
			}()
			c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 5 * time.Second, Attempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The member grants nothing in the window it started in
			// (its fence) and at most 1 in the hour: either way the
			// take is answered and the wait below is held.
			if _, err := c.Take(t.Context(), "api", 1); err != nil {
				t.Fatalf("Take: %v", err)
			}
			held := make(chan error, 1)
			go func() {
				d, err := c.WaitMax(t.Context(), "api", 1, 20*time.Second)
				if err == nil && d.OK {
					err = errors.New("go for an exhausted key")
				}
				held <- err
			}()
			waitFor(t, func() bool {
				st, err := c.Status(t.Context())
				return err == nil && st.Keys[0].Waiters == 1
			})
			close(fail)
			if err := <-held; err != nil {
				t.Fatalf("held wait: %v, want sorry", err)
			}
			select {
			case code := <-done:
				if code != exitError || !strings.Contains(errOut.String(), tc.want) {
					t.Fatalf("exit %d, stderr:\n%s\nwant 1 and %q", code, errOut.String(), tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("lockerd still serving 10s after its federation ended; stderr:\n%s", errOut.String())
			}
		})
	}
}

// endNodeOn makes the federation node of the run calls of the test end
// by end once fail is closed, after it is ready; the real node runs
// meanwhile, and stops with lockerd's context.
func endNodeOn(tb testing.TB, fail <-chan struct{}, end func() error) {
	realRun := runNode
	tb.Cleanup(func() { runNode = realRun })
	runNode = func(n *peer.Node, ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- realRun(n, ctx) }()
		select {
		case <-n.Ready():
		case err := <-errc:
			return err
		}
		select {
		case <-fail:
			return end()
		case <-ctx.Done():
			return <-errc
		}
	}
}

// TestFederationBindFailureExits1 starts a member whose publish endpoint
// is taken: it exits 1 naming the federation, without serving requests.
func TestFederationBindFailureExits1(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pub := "tcp://" + l.Addr().String()
	p := startLockerd(t, "", "--bind", freeEndpoint(t), "--metrics-addr", "", "--publish", pub, "--peer", pub)
	code := p.wait(t, 10*time.Second)
	if stderr := p.stderr.String(); code != exitError || !strings.Contains(stderr, "lockerd: federation: peer: bind") || strings.Contains(stderr, "msg=serving") {
		t.Fatalf("exit %d, stderr:\n%s\nwant 1, a federation bind error and no serving", code, stderr)
	}
}

// TestMetricsBindFailureBeforeServing takes the metrics port: lockerd
// exits 1 before it says it serves, and never binds its request endpoint.
func TestMetricsBindFailureBeforeServing(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := freePort(t)
	p := startLockerd(t, "", "--bind", "tcp://127.0.0.1:"+strconv.Itoa(port), "--metrics-addr", l.Addr().String())
	code := p.wait(t, 10*time.Second)
	if stderr := p.stderr.String(); code != exitError || !strings.Contains(stderr, "lockerd: metrics:") || strings.Contains(stderr, "msg=serving") {
		t.Fatalf("exit %d, stderr:\n%s\nwant 1, a metrics error and no serving", code, stderr)
	}
	if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
		t.Fatalf("request port still bound: %v", err)
	} else {
		l.Close()
	}
}

// TestMetricsFloodLeavesDescriptors runs lockerd with few file
// descriptors, holds hundreds of idle connections to its metrics port,
// and checks that new ZeroMQ clients are still served: the metrics
// server holds at most metrics.MaxConns of them.
func TestMetricsFloodLeavesDescriptors(t *testing.T) {
	const nofile, flood, clients = 80, 300, 10
	ep := freeEndpoint(t)
	maddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	// sh sets both the soft and the hard limit, so the Go runtime in
	// lockerd cannot raise it.
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n `+strconv.Itoa(nofile)+` && exec "$0" "$@"`,
		lockerdBin, "--bind", ep, "--metrics-addr", maddr)
	p := startCommand(t, ep, cmd)
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
		if err != nil {
			t.Skipf("cannot count descriptors: %v", err)
		}
		return len(ents)
	}
	before := fds()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < flood; i++ {
		c, err := net.Dial("tcp", maddr)
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	// The flood is in: lockerd holds as many as it will. before may
	// still count the connection of startLockerd's ping, which lockerd
	// closes in its own time.
	waitFor(t, func() bool { return fds() >= before-1+metrics.MaxConns })
	var cs []*locker.Client
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for i := 0; i < clients; i++ {
		c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 3 * time.Second, Attempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		if _, err := c.Ping(t.Context()); err != nil {
			t.Fatalf("new client %d while the metrics port is flooded: %v (lockerd holds %d descriptors of %d)\nstderr:\n%s",
				i, err, fds(), nofile, p.stderr.String())
		}
	}
	if n := fds(); n > before+metrics.MaxConns+clients+2 {
		t.Errorf("lockerd holds %d descriptors, want at most %d", n, before+metrics.MaxConns+clients+2)
	}
}

// TestFederationSubscriberPanicEndsNode panics in the federation's SUB
// goroutine: the node's Run returns an error, which stops lockerd
// cleanly (see TestFederationEndStopsLockerd), instead of crashing the
// process with its held waits unanswered.
func TestFederationSubscriberPanicEndsNode(t *testing.T) {
	counter, err := locker.NewCounter([]locker.KeyConfig{{Name: "api", Limit: 5, Window: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	pub := freeEndpoint(t)
	n, err := peer.New(peer.Config{ID: "a", Publish: pub, Peers: []string{pub, freeEndpoint(t)},
		SubSecurity: func(*zmq.Socket) error { panic("injected") }}, counter)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := n.Run(ctx); err == nil || !strings.Contains(err.Error(), "subscriber panic: injected") {
		t.Fatalf("Run=%v, want the subscriber's panic as an error", err)
	}
}

// TestPeerWithoutPortExits2 runs the command line that used to start a
// member unable to reach its peer, serving its full limit alone: lockerd
// exits 2 with one line naming the flag, and binds nothing.
func TestPeerWithoutPortExits2(t *testing.T) {
	bindPort, pubPort := freePort(t), freePort(t)
	p := startLockerd(t, "", "--bind", "tcp://127.0.0.1:"+strconv.Itoa(bindPort), "--metrics-addr", "",
		"--publish", "tcp://127.0.0.1:"+strconv.Itoa(pubPort), "--peer", "tcp://127.0.0.1")
	code := p.wait(t, 10*time.Second)
	lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
	if code != exitUsage || len(lines) != 1 || !strings.Contains(lines[0], `--peer "tcp://127.0.0.1": a tcp endpoint needs host and port`) {
		t.Fatalf("exit %d, stderr %q; want 2 and one line naming --peer", code, p.stderr.String())
	}
	for _, port := range []int{bindPort, pubPort} {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("port %d bound after a usage error: %v", port, err)
		}
		l.Close()
	}
}
