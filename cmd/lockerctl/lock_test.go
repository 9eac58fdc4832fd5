package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
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
	"github.com/lockerd/lockerd/locker/lockertest"
)

// The tests of lockerctl lock run real lockerd and lockerctl processes.

var (
	lockerdOnce sync.Once
	lockerdBin  string
	lockerdErr  error
)

// lockerdBinary builds cmd/lockerd once for the tests that need a real
// server process.
func lockerdBinary(tb testing.TB) string {
	tb.Helper()
	lockerdOnce.Do(func() {
		lockerdBin = filepath.Join(filepath.Dir(ctlBin), "lockerd")
		out, err := exec.Command("go", "build", "-o", lockerdBin, "../lockerd").CombinedOutput()
		if err != nil {
			lockerdErr = fmt.Errorf("go build ../lockerd: %v\n%s", err, out)
		}
	})
	if lockerdErr != nil {
		tb.Fatal(lockerdErr)
	}
	return lockerdBin
}

// lockerdProc is a running lockerd.
type lockerdProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startLockerd runs lockerd on endpoint with args (and no metrics
// endpoint) until the test ends, and waits until it answers.
func startLockerd(tb testing.TB, endpoint string, args ...string) *lockerdProc {
	tb.Helper()
	args = append([]string{"--bind", endpoint, "--metrics-addr="}, args...)
	p := &lockerdProc{cmd: exec.Command(lockerdBinary(tb), args...), exited: make(chan struct{})}
	var stderr strings.Builder
	p.cmd.Stderr = &stderr
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	tb.Cleanup(func() { p.cmd.Process.Kill(); <-p.exited })
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{endpoint}, Timeout: 200 * time.Millisecond, Attempts: 50})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Ping(context.Background()); err != nil {
		tb.Fatalf("lockerd did not answer: %v", err)
	}
	return p
}

// ctlProc is a running lockerctl whose stdout lines are read as they
// come.
type ctlProc struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, closed at its end
	stderr *strings.Builder
	mu     *sync.Mutex
	done   chan struct{}
	code   int
}

// startCtl starts lockerctl with args; it is killed when the test ends.
func startCtl(tb testing.TB, args ...string) *ctlProc {
	tb.Helper()
	p := &ctlProc{cmd: exec.Command(ctlBin, args...), lines: make(chan string, 64), stderr: &strings.Builder{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "LOCKER_SERVER=")
	p.cmd.Stderr = lockedWriter{p.mu, p.stderr}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		err := p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		if ee, ok := err.(*exec.ExitError); ok && p.code < 0 {
			p.code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
		close(p.done)
	}()
	tb.Cleanup(func() {
		// SIGTERM first, which lockerctl passes on to its command's
		// process group: a command outliving it would hold stdout open.
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (p *ctlProc) errText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// line returns the next stdout line, failing the test after 30 s.
func (p *ctlProc) line(tb testing.TB) string {
	tb.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			<-p.done
			tb.Fatalf("lockerctl ended (exit %d) without the line; stderr %q", p.code, p.errText())
		}
		return l
	case <-time.After(30 * time.Second):
		tb.Fatalf("no line from lockerctl in 30 s; stderr %q", p.errText())
	}
	return ""
}

// wait returns the exit status, failing the test after 30 s.
func (p *ctlProc) wait(tb testing.TB) int {
	tb.Helper()
	for range p.lines {
	}
	select {
	case <-p.done:
		return p.code
	case <-time.After(30 * time.Second):
		tb.Fatalf("lockerctl still running after 30 s; stderr %q", p.errText())
	}
	return -1
}

// lockState returns the listing of name from ep.
func lockState(tb testing.TB, ep, name string) locker.LockState {
	tb.Helper()
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	ls, err := c.Locks(context.Background(), name)
	if err != nil {
		tb.Fatal(err)
	}
	if len(ls) == 0 {
		return locker.LockState{Name: name}
	}
	return ls[0]
}

// journal is a file that critical sections append "enter FENCE MODE" and
// "leave FENCE MODE" lines to.
type journalLine struct {
	enter bool
	fence int64
	mode  string
}

func readJournal(tb testing.TB, path string) []journalLine {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var out []journalLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 || (f[0] != "enter" && f[0] != "leave") {
			tb.Fatalf("journal line %q", l)
		}
		fence, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || fence <= 0 {
			tb.Fatalf("journal line %q: fence %v", l, err)
		}
		out = append(out, journalLine{enter: f[0] == "enter", fence: fence, mode: f[2]})
	}
	return out
}

// section is a critical section that records its entry and exit.
const section = `echo "enter $LOCKER_FENCE $MODE" >> "$J"; i=0; while [ $i -lt 200 ]; do i=$((i+1)); done; echo "leave $LOCKER_FENCE $MODE" >> "$J"`

// TestLockProcessesContend: processes contending for one lock through
// lockerctl lock never overlap beyond what the lock allows, every one
// runs, and fences increase in the order of entry. A mutex, a semaphore
// of 3 (shared holders) and a read/write lock of capacity 4.
func TestLockProcessesContend(t *testing.T) {
	ep := freeEndpoint(t)
	startLockerd(t, ep, "--lock-grace=0", "--lock", "sem=3", "--lock", "rw=4")
	for _, tc := range []struct {
		name    string
		lock    string
		shared  func(i int) bool
		maxIn   int
		readers int
	}{
		{"mutex", "mutex", func(int) bool { return false }, 1, 0},
		{"semaphore of 3", "sem", func(int) bool { return true }, 3, 16},
		{"readers and writers", "rw", func(i int) bool { return i%4 != 0 }, 4, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := filepath.Join(t.TempDir(), "journal")
			var procs []*ctlProc
			for i := range 16 {
				args := []string{"lock", tc.lock, "-s", ep, "--ttl", "10s", "--max-wait", "60s"}
				mode := "exclusive"
				if tc.shared(i) {
					args, mode = append(args, "--shared"), "shared"
				}
				args = append(args, "--", "sh", "-c", "MODE="+mode+" J="+j+"; "+section)
				procs = append(procs, startCtl(t, args...))
			}
			for i, p := range procs {
				if code := p.wait(t); code != 0 {
					t.Fatalf("process %d: exit %d, stderr %q", i, code, p.errText())
				}
			}
			lines := readJournal(t, j)
			if len(lines) != 32 {
				t.Fatalf("%d journal lines, want 32 (16 sections)", len(lines))
			}
			inside := map[int64]string{}
			// Fences are given in grant order: an exclusive holder's is
			// above every fence before it; shared holders granted together
			// may enter in any order, above every exclusive fence before.
			var last, lastExclusive int64
			seen := map[int64]bool{}
			maxIn, readers := 0, 0
			for _, l := range lines {
				if !l.enter {
					if _, ok := inside[l.fence]; !ok {
						t.Fatalf("leave %d without enter", l.fence)
					}
					delete(inside, l.fence)
					continue
				}
				if seen[l.fence] {
					t.Fatalf("fence %d entered twice", l.fence)
				}
				seen[l.fence] = true
				if l.fence <= lastExclusive || l.mode == "exclusive" && l.fence <= last {
					t.Fatalf("%s fence %d entered after %d (last exclusive %d)", l.mode, l.fence, last, lastExclusive)
				}
				last = max(last, l.fence)
				if l.mode == "exclusive" {
					lastExclusive = l.fence
				}
				for f, m := range inside {
					if l.mode == "exclusive" || m == "exclusive" {
						t.Fatalf("%s %d entered while %s %d was inside", l.mode, l.fence, m, f)
					}
				}
				inside[l.fence] = l.mode
				maxIn = max(maxIn, len(inside))
				if l.mode == "shared" {
					readers++
				}
			}
			if maxIn > tc.maxIn || readers != tc.readers {
				t.Fatalf("%d inside at once (at most %d allowed), %d shared sections (want %d)", maxIn, tc.maxIn, readers, tc.readers)
			}
			t.Logf("at most %d inside at once", maxIn)
		})
	}
}

// TestLockHolderKilled: when the holder lockerctl is killed with
// SIGKILL, the next waiter holds the lock once the lease has run out:
// within the TTL (plus scheduling) of the kill.
func TestLockHolderKilled(t *testing.T) {
	ep := freeEndpoint(t)
	startLockerd(t, ep, "--lock-grace=0")
	const ttl = time.Second
	holder := startCtl(t, "lock", "k", "-s", ep, "--ttl", ttl.String(), "--", "sh", "-c", "echo $$; exec sleep 60")
	pgid, err := strconv.Atoi(holder.line(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) }) // the orphaned command
	waiter := startCtl(t, "lock", "k", "-s", ep, "--ttl", "5s", "--", "echo", "got it")
	lockertest.WaitFor(t, func() bool { return len(lockState(t, ep, "k").Waiters) == 1 })
	killed := time.Now()
	holder.cmd.Process.Signal(syscall.SIGKILL)
	if l := waiter.line(t); l != "got it" {
		t.Fatalf("waiter printed %q", l)
	}
	took := time.Since(killed)
	t.Logf("the next waiter held the lock %v after the holder was killed (TTL %v)", took.Round(time.Millisecond), ttl)
	if code := waiter.wait(t); code != 0 {
		t.Fatalf("waiter exit %d", code)
	}
	// Generous: the machine is shared; the figure is in the log.
	if took > ttl+2*time.Second {
		t.Fatalf("the waiter got the lock %v after the kill, TTL %v", took, ttl)
	}
}

// TestLockLostWhileRunning: a lease broken while COMMAND runs makes
// lockerctl send COMMAND SIGTERM, then SIGKILL after --kill-grace, and
// exit 3.
func TestLockLostWhileRunning(t *testing.T) {
	ep := freeEndpoint(t)
	startLockerd(t, ep, "--lock-grace=0")
	for _, tc := range []struct {
		name, script, last string
	}{
		{"command stops on SIGTERM", `trap 'echo term; exit 0' TERM; echo ready; while :; do sleep 0.05; done`, "term"},
		{"command ignores SIGTERM", `trap '' TERM; echo ready; while :; do sleep 0.05; done`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startCtl(t, "lock", "lost", "-s", ep, "--ttl", "600ms", "--kill-grace", "300ms", "--", "sh", "-c", tc.script)
			if l := p.line(t); l != "ready" {
				t.Fatalf("command printed %q", l)
			}
			if code, out, errOut := runCtl(t, t.Context(), "unlock", "--force", "lost", "-s", ep); code != exitGo || !strings.HasPrefix(out, "broken lost: 1 holders") {
				t.Fatalf("unlock --force: %d %q %q", code, out, errOut)
			}
			if tc.last != "" {
				if l := p.line(t); l != tc.last {
					t.Fatalf("command printed %q, want %q", l, tc.last)
				}
			}
			if code := p.wait(t); code != exitLeaseLost || !strings.Contains(p.errText(), "lease broken") {
				t.Fatalf("exit %d, stderr %q; want 3 and lease broken", code, p.errText())
			}
			if st := lockState(t, ep, "lost"); len(st.Holders) != 0 {
				t.Fatalf("still held: %+v", st)
			}
		})
	}
}

// TestLockRevokeAndSignals: a revocation reaches COMMAND as SIGTERM; a
// signal to lockerctl is passed on to COMMAND; lockerctl exits with
// COMMAND's status and releases the lock.
func TestLockRevokeAndSignals(t *testing.T) {
	ep := freeEndpoint(t)
	startLockerd(t, ep, "--lock-grace=0")
	script := `trap 'echo term; exit 9' TERM; trap 'echo int; exit 8' INT; echo ready; while :; do sleep 0.05; done`
	for _, tc := range []struct {
		name string
		poke func(t *testing.T, p *ctlProc)
		last string
		code int
	}{
		{"revoke", func(t *testing.T, p *ctlProc) {
			if code, out, _ := runCtl(t, t.Context(), "revoke", "r", "-s", ep); code != exitGo || out != "revoking r: 1 holders asked to release\n" {
				t.Fatalf("revoke: %d %q", code, out)
			}
		}, "term", 9},
		{"SIGINT", func(t *testing.T, p *ctlProc) { p.cmd.Process.Signal(syscall.SIGINT) }, "int", 8},
		{"SIGTERM", func(t *testing.T, p *ctlProc) { p.cmd.Process.Signal(syscall.SIGTERM) }, "term", 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startCtl(t, "lock", "r", "-s", ep, "--ttl", "600ms", "--", "sh", "-c", script)
			if l := p.line(t); l != "ready" {
				t.Fatalf("command printed %q", l)
			}
			tc.poke(t, p)
			if l := p.line(t); l != tc.last {
				t.Fatalf("command printed %q, want %q", l, tc.last)
			}
			if code := p.wait(t); code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, p.errText())
			}
			if st := lockState(t, ep, "r"); len(st.Holders) != 0 {
				t.Fatalf("still held after exit: %+v", st)
			}
		})
	}
}

// TestLockExitStatuses: the lock not granted within --max-wait (1), no
// server (2), bad arguments (2), COMMAND's own status, and the
// environment COMMAND gets.
func TestLockExitStatuses(t *testing.T) {
	ep := freeEndpoint(t)
	startLockerd(t, ep, "--lock-grace=0")
	holder := startCtl(t, "lock", "held", "-s", ep, "--owner", "the-holder", "--", "sh", "-c", "echo ready; exec sleep 60")
	if l := holder.line(t); l != "ready" {
		t.Fatalf("holder printed %q", l)
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"lock", "held", "--max-wait", "200ms", "-s", ep, "--", "true"}, exitNotLocked, "", "not granted"},
		{[]string{"lock", "held", "-n", "-s", ep, "--", "true"}, exitNotLocked, "", "oldest the-holder"},
		{[]string{"lock", "free", "-s", ep, "--", "sh", "-c", "echo $LOCKER_LOCK $((LOCKER_FENCE > 0)); exit 5"}, 5, "free 1\n", ""},
		{[]string{"lock", "free", "-s", freeEndpoint(t), "--timeout", "200ms", "--", "true"}, exitError, "", "no answer"},
		{[]string{"lock", "free", "-s", ep}, exitError, "", "missing -- COMMAND"},
		{[]string{"lock", "-s", ep, "--", "true"}, exitError, "", "missing NAME"},
		{[]string{"lock", "bad name", "-s", ep, "--", "true"}, exitError, "", "key name"},
		{[]string{"lock", "free", "-s", ep, "--", "/nonexistent/command"}, exitError, "", "no such file"},
		{[]string{"unlock", "held", "-s", ep}, exitError, "", "--force"},
	} {
		cmd := exec.Command(ctlBin, tc.args...)
		cmd.Env = append(os.Environ(), "LOCKER_SERVER=")
		var errOut strings.Builder
		cmd.Stderr = &errOut
		out, err := cmd.Output()
		if code := exitCode(t, err); code != tc.code || string(out) != tc.stdout || !strings.Contains(errOut.String(), tc.stderr) {
			t.Errorf("lockerctl %v: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, out, errOut.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
	if st := lockState(t, ep, "free"); len(st.Holders)+len(st.Waiters) != 0 {
		t.Fatalf("free left held: %+v", st)
	}
}

// TestLockRestartGrace: after lockerd restarts while a lock is held, no
// one holds the lock before the old lease could have ended (the grace
// period), and fences after the restart are above those before.
func TestLockRestartGrace(t *testing.T) {
	ep := freeEndpoint(t)
	const maxTTL = 2 * time.Second
	args := []string{"--lock-max-ttl", maxTTL.String()}
	first := startLockerd(t, ep, append(args, "--lock-grace=0")...)
	holder := startCtl(t, "lock", "g", "-s", ep, "--ttl", maxTTL.String(), "--", "sh", "-c", "echo $LOCKER_FENCE; exec sleep 60")
	before, err := strconv.ParseInt(holder.line(t), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	first.cmd.Process.Signal(syscall.SIGKILL)
	<-first.exited
	startLockerd(t, ep, args...) // the default grace period: --lock-max-ttl
	waiter := startCtl(t, "lock", "g", "-s", ep, "--max-wait", "30s", "--", "sh", "-c", "echo $LOCKER_FENCE")
	after, err := strconv.ParseInt(waiter.line(t), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	granted := time.Since(killed)
	t.Logf("granted %v after the old server was killed (max TTL %v); fence %d before, %d after", granted.Round(time.Millisecond), maxTTL, before, after)
	if granted < maxTTL {
		t.Fatalf("granted %v after the restart, before the old lease (max %v) could have ended", granted, maxTTL)
	}
	if after <= before {
		t.Fatalf("fence %d after the restart, %d before", after, before)
	}
	if code := waiter.wait(t); code != 0 {
		t.Fatalf("waiter exit %d: %q", code, waiter.errText())
	}
	// The old holder learns its lease is gone at its next renewal.
	if code := holder.wait(t); code != exitLeaseLost {
		t.Fatalf("old holder exit %d, want 3; stderr %q", code, holder.errText())
	}
}

// TestLocksListing: lockerctl locks shows holders with owner and fence,
// and waiters, as a table and as JSON.
func TestLocksListing(t *testing.T) {
	ep := freeEndpoint(t)
	startLockerd(t, ep, "--lock-grace=0", "--lock", "lic=2")
	if code, out, _ := runCtl(t, t.Context(), "locks", "-s", ep); code != exitGo || out != "no live locks\n" {
		t.Fatalf("empty listing: %d %q", code, out)
	}
	holder := startCtl(t, "lock", "lic", "--shared", "--owner", "web1", "-s", ep, "--", "sh", "-c", "echo $LOCKER_FENCE; exec sleep 60")
	fence := holder.line(t)
	waiter := startCtl(t, "lock", "lic", "--owner", "writer", "-s", ep, "--", "true")
	lockertest.WaitFor(t, func() bool { return len(lockState(t, ep, "lic").Waiters) == 1 })
	code, out, errOut := runCtl(t, t.Context(), "locks", "-s", ep)
	if code != exitGo {
		t.Fatalf("locks: %d %q", code, errOut)
	}
	for _, want := range []string{"lic   shared  2    1        1", "holder    web1    shared", fence, "waiter 1  writer  exclusive"} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCtl(t, t.Context(), "locks", "lic", "--json", "-s", ep)
	if code != exitGo || !strings.Contains(out, `"owner":"web1","fence":`+fence+`,"mode":"shared"`) || !strings.Contains(out, `"owner":"writer","mode":"exclusive"`) {
		t.Fatalf("locks --json: %d %q", code, out)
	}
	holder.cmd.Process.Signal(syscall.SIGTERM)
	if code := waiter.wait(t); code != 0 {
		t.Fatalf("writer exit %d", code)
	}
}
