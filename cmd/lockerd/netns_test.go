package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The network namespace fault tests run each federation member as its own
// host: a namespace per member, joined by a veth pair to a bridge in a hub
// namespace, all created by the test and removed when it ends. The root
// namespace's interfaces and routes are never touched, and nothing routes
// the test's addresses (10.213.0.0/24, inside the namespaces only) anywhere
// else. Each member gets its own hammering client in its own namespace,
// which counts the go answers per window the member names; the test sums
// them per window over the members. A run killed before its cleanup leaves
// namespaces named lockerd-test-PID-*: "ip netns list" shows them and
// "ip netns del NAME" removes them.

// netnsKey is a key the tests configure on every member and hammer.
type netnsKey struct {
	name    string
	limit   int64
	window  time.Duration
	workers int // client goroutines per member
}

func (k netnsKey) spec() string { return fmt.Sprintf("%s=%d/%v", k.name, k.limit, k.window) }

// windowOf is the index of the window of k that contains t, as lockerd
// numbers them: window i is [i·T, (i+1)·T) since the Unix epoch.
func (k netnsKey) windowOf(t time.Time) int64 { return t.UnixNano() / int64(k.window) }

var netnsKeys = []netnsKey{
	{name: "api", limit: 100, window: 100 * time.Millisecond, workers: 3},
	{name: "small", limit: 5, window: 800 * time.Millisecond, workers: 1},
}

const (
	netnsMembers = 3
	// netnsVictim is the member each fault hits.
	netnsVictim = 1
	// netnsFault is how long a member stays cut off or frozen.
	netnsFault = 2 * time.Second
	// netnsSteady is how long the load runs before the fault and, at
	// least, after the cluster healed.
	netnsSteady = time.Second
	// netnsTimeout is how long a hammering request waits for its answer:
	// longer than a freeze, so that a frozen member's answers are counted
	// when it resumes.
	netnsTimeout = 3 * time.Second
	// netnsReadyTimeout bounds every wait for a member to be ready.
	netnsReadyTimeout = 15 * time.Second
)

// netnsFaultEvents is what a fault reports of itself.
type netnsFaultEvents struct {
	// loadUntil, if not zero, is a time before which the load must not
	// stop, so that the victim's clients are seen answering again.
	loadUntil time.Time
	// The victim decided nothing from quietFrom to quietTo: it was seen
	// stopped or dead at quietFrom, and resumed or started again no
	// earlier than quietTo. Both are zero when it kept running.
	quietFrom, quietTo time.Time
}

// netnsFaults are the faults, each applied to one member of a cluster
// under load. do returns when the fault is over (the member is reachable
// or running again).
var netnsFaults = []struct {
	name string
	do   func(t *testing.T, c *netnsCluster, victim int) netnsFaultEvents
}{
	{"cut", func(t *testing.T, c *netnsCluster, v int) netnsFaultEvents {
		end := time.Now().Add(netnsFault)
		c.net.setLink(t, v, false)
		// The victim hears no one, the others hear each other only.
		want := c.others(v, len(c.members)-2)
		want[v] = 0
		c.awaitPeersUp(t, end, want)
		time.Sleep(time.Until(end)) // the rest of the fault
		c.net.setLink(t, v, true)
		return netnsFaultEvents{}
	}},
	{"freeze", func(t *testing.T, c *netnsCluster, v int) netnsFaultEvents {
		end := time.Now().Add(netnsFault)
		c.members[v].lockerd.signal(t, syscall.SIGSTOP)
		c.members[v].lockerd.awaitStopped(t, end)
		ev := netnsFaultEvents{quietFrom: time.Now()}
		// The others see the victim down (it cannot answer itself).
		c.awaitPeersUp(t, end, c.others(v, len(c.members)-2))
		time.Sleep(time.Until(end)) // the rest of the fault
		ev.quietTo = time.Now()
		c.members[v].lockerd.signal(t, syscall.SIGCONT)
		return ev
	}},
	{"kill", func(t *testing.T, c *netnsCluster, v int) netnsFaultEvents {
		m := c.members[v]
		m.lockerd.signal(t, syscall.SIGKILL)
		killed := time.Now()
		m.lockerd.waitExit(t, 5*time.Second)
		// Dead from now until the new process starts.
		now := time.Now()
		ev := netnsFaultEvents{quietFrom: now, quietTo: now}
		c.start(t, v, fmt.Sprintf("m%d%s", v, c.restartSuffix))
		// Requests in flight to the killed process are lost: its clients
		// wait for them as long as their timeout before they send again.
		ev.loadUntil = killed.Add(c.requestTimeout() + netnsSteady)
		return ev
	}},
}

// TestNetnsFaults runs three lockerd members, each in its own network
// namespace, with clients hammering every member from inside its
// namespace, and hits one member with a fault: cut off from the others
// (its veth down) for 2s, frozen (SIGSTOP) for 2s, or killed (SIGKILL)
// and restarted under a new id. In strict mode no window may grant more
// than the limit over the cluster; in shared mode the over-admission is
// logged. In both, every member must answer again after the fault.
//
//	go test -race -count=1 -run TestNetns -v ./cmd/lockerd/
func TestNetnsFaults(t *testing.T) {
	ipBin := netnsSkip(t)
	nw := newNetnsNet(t, ipBin, netnsMembers)
	bins := netnsBuild(t)
	port := 7000
	for _, mode := range []string{"strict", "shared"} {
		t.Run(mode, func(t *testing.T) {
			for _, f := range netnsFaults {
				port += 10
				t.Run(f.name, func(t *testing.T) {
					runNetnsFault(t, nw, bins, mode, port, f.do)
				})
			}
		})
	}
}

// netnsSkip skips the test where it cannot create network namespaces and
// returns the path of ip.
func netnsSkip(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespace fault tests: not in -short")
	}
	if runtime.GOOS != "linux" {
		netnsCannot(t, "network namespace fault tests need Linux")
	}
	if os.Geteuid() != 0 {
		netnsCannot(t, "network namespace fault tests need root (ip netns add); CI runs them as root")
	}
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"} {
			if _, serr := os.Stat(p); serr == nil {
				return p
			}
		}
		netnsCannot(t, "network namespace fault tests need iproute2's ip: %v (scripts/deps installs iproute2)", err)
	}
	return ipBin
}

// netnsCannot skips the test because the machine cannot run it, or fails
// it when LOCKERD_NETNS_REQUIRED is set (in CI, for instance, where a
// skip would hide that the fault tests did not run).
func netnsCannot(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("LOCKERD_NETNS_REQUIRED") != "" {
		t.Fatalf("LOCKERD_NETNS_REQUIRED is set, but "+format, args...)
	}
	t.Skipf(format, args...)
}

// netnsBins are the programs the test runs in the namespaces.
type netnsBins struct{ lockerd, client string }

// netnsBuild builds lockerd and the test client once for the test run.
func netnsBuild(t *testing.T) netnsBins {
	t.Helper()
	dir := t.TempDir()
	b := netnsBins{lockerd: filepath.Join(dir, "lockerd"), client: filepath.Join(dir, "netnsclient")}
	for _, c := range [][]string{{b.lockerd, "."}, {b.client, "./testdata/netnsclient"}} {
		if out, err := exec.Command("go", "build", "-o", c[0], c[1]).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", c[1], err, out)
		}
	}
	return b
}

// netnsNet is the test network: a hub namespace holding a bridge, and one
// namespace per member whose eth0 is a veth pair with the hub, address
// 10.213.0.(i+1)/24.
type netnsNet struct {
	ipBin   string
	hub     string
	members []string // namespace names
	addrs   []string
}

// newNetnsNet creates the namespaces, with names unique to this run, and
// removes them when the test ends. It skips the test if the first
// namespace cannot be created.
func newNetnsNet(t *testing.T, ipBin string, n int) *netnsNet {
	t.Helper()
	var r [3]byte
	rand.Read(r[:])
	prefix := fmt.Sprintf("lockerd-test-%d-%s", os.Getpid(), hex.EncodeToString(r[:]))
	nw := &netnsNet{ipBin: ipBin, hub: prefix + "-hub"}
	if out, err := exec.Command(ipBin, "netns", "add", nw.hub).CombinedOutput(); err != nil {
		netnsCannot(t, "cannot create a network namespace (needs root with CAP_SYS_ADMIN): ip netns add: %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { nw.delete(t, nw.hub) })
	nw.ip(t, "-n", nw.hub, "link", "add", "br0", "type", "bridge")
	nw.ip(t, "-n", nw.hub, "link", "set", "br0", "up")
	for i := range n {
		ns := fmt.Sprintf("%s-m%d", prefix, i)
		addr := fmt.Sprintf("10.213.0.%d", i+1)
		nw.ip(t, "netns", "add", ns)
		t.Cleanup(func() { nw.delete(t, ns) })
		nw.members = append(nw.members, ns)
		nw.addrs = append(nw.addrs, addr)
		// Created in the hub and moved straight into the member's
		// namespace: no interface ever exists in the root namespace.
		veth := fmt.Sprintf("m%d", i)
		nw.ip(t, "-n", nw.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		nw.ip(t, "-n", nw.hub, "link", "set", veth, "master", "br0")
		nw.ip(t, "-n", nw.hub, "link", "set", veth, "up")
		nw.ip(t, "-n", ns, "link", "set", "lo", "up")
		nw.ip(t, "-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		nw.ip(t, "-n", ns, "link", "set", "eth0", "up")
	}
	return nw
}

func (nw *netnsNet) ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(nw.ipBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

func (nw *netnsNet) delete(t *testing.T, ns string) {
	if out, err := exec.Command(nw.ipBin, "netns", "del", ns).CombinedOutput(); err != nil {
		t.Errorf("ip netns del %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
}

// setLink takes member i's veth down or up on the hub side: the member
// is cut off from the others, while its clients, in its namespace, still
// reach it.
func (nw *netnsNet) setLink(t *testing.T, i int, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	nw.ip(t, "-n", nw.hub, "link", "set", fmt.Sprintf("m%d", i), state)
}

// command returns a command running bin with args in namespace ns.
func (nw *netnsNet) command(ns, bin string, args ...string) *exec.Cmd {
	return exec.Command(nw.ipBin, append([]string{"netns", "exec", ns, bin}, args...)...)
}

// netnsProc is a process started by the test. "ip netns exec" execs the
// program in place, so signals to the process reach the program itself.
type netnsProc struct {
	name   string
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error
}

// netnsStartProc starts cmd and kills it when the test ends if it is
// still running.
func netnsStartProc(t *testing.T, name string, cmd *exec.Cmd) *netnsProc {
	t.Helper()
	p := &netnsProc{name: name, cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	return p
}

func (p *netnsProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *netnsProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v: %v\nstderr:\n%s", p.name, sig, err, p.stderr.String())
	}
}

// awaitStopped waits until every thread of the process is stopped (state
// T in /proc), and fails the test if that is not seen before deadline.
func (p *netnsProc) awaitStopped(t *testing.T, deadline time.Time) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid)
	var last string
	for time.Now().Before(deadline) {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		last = ""
		for _, task := range tasks {
			b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
			if err != nil {
				continue // the thread ended
			}
			// The state follows the command name, which is in parentheses.
			if i := bytes.LastIndexByte(b, ')'); i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				last = fmt.Sprintf("thread %s: %s", task.Name(), bytes.TrimSpace(b))
				break
			}
		}
		if last == "" {
			return
		}
		time.Sleep(time.Millisecond) // polling /proc: there is no event to await
	}
	t.Fatalf("%s not stopped by %v: %s", p.name, deadline.Format(time.StampMilli), last)
}

func (p *netnsProc) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		t.Fatalf("%s still running %v after SIGKILL", p.name, d)
	}
}

// netnsMember is one lockerd of a cluster.
type netnsMember struct {
	ns, addr           string
	bind, pub, metrics string
	lockerd            *netnsProc
}

// netnsCluster is three lockerd members on the test network.
type netnsCluster struct {
	net     *netnsNet
	bins    netnsBins
	mode    string
	keys    []string // --key specs
	members []*netnsMember
	// restartSuffix is appended to the id of a member the kill fault
	// restarts: a restarted member joins under a new id unless it is "".
	restartSuffix string
	// clientTimeout is how long a client's request waits for its answer;
	// if zero, netnsTimeout.
	clientTimeout time.Duration
}

// requestTimeout is how long a client's request waits for its answer.
func (c *netnsCluster) requestTimeout() time.Duration {
	if c.clientTimeout != 0 {
		return c.clientTimeout
	}
	return netnsTimeout
}

// newNetnsCluster describes a cluster with one member in each namespace
// of nw, on ports from port, serving keys; start starts the members.
func newNetnsCluster(nw *netnsNet, bins netnsBins, mode string, port int, keys []string) *netnsCluster {
	c := &netnsCluster{net: nw, bins: bins, mode: mode, keys: keys}
	for i, ns := range nw.members {
		a := nw.addrs[i]
		c.members = append(c.members, &netnsMember{ns: ns, addr: a,
			bind:    fmt.Sprintf("tcp://%s:%d", a, port),
			pub:     fmt.Sprintf("tcp://%s:%d", a, port+1),
			metrics: fmt.Sprintf("%s:%d", a, port+2)})
	}
	return c
}

// start starts member i's lockerd under id.
func (c *netnsCluster) start(t *testing.T, i int, id string) {
	t.Helper()
	m := c.members[i]
	args := []string{"--bind", m.bind, "--publish", m.pub, "--metrics-addr", m.metrics,
		"--federation", c.mode, "--id", id, "--heartbeat", "100ms", "--log-level", "error"}
	for _, k := range c.keys {
		args = append(args, "--key", k)
	}
	for _, o := range c.members {
		args = append(args, "--peer", o.pub)
	}
	m.lockerd = netnsStartProc(t, id, c.net.command(m.ns, c.bins.lockerd, args...))
}

// awaitReady waits until every member answers, serves /readyz and hears
// every other member. The client asks from inside each member's namespace.
func (c *netnsCluster) awaitReady(t *testing.T) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(c.members))
	for i, m := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := c.net.command(m.ns, c.bins.client, "ready", "-server", m.bind, "-metrics", m.metrics,
				"-peers", strconv.Itoa(len(c.members)-1), "-timeout", netnsReadyTimeout.String())
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("member %d: %v: %s\nlockerd stderr:\n%s", i, err, bytes.TrimSpace(out), m.lockerd.stderr.String())
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// awaitPeersUp waits until each member i in want counts exactly want[i]
// peers up, and fails the test if that is not seen before deadline: the
// fault did not happen, or the members did not notice it.
func (c *netnsCluster) awaitPeersUp(t *testing.T, deadline time.Time, want map[int]int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(c.members))
	for i, n := range want {
		m := c.members[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := c.net.command(m.ns, c.bins.client, "ready", "-server", m.bind, "-peers", strconv.Itoa(n), "-exact",
				"-timeout", time.Until(deadline).String())
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("member %d did not see the fault: %v: %s", i, err, bytes.TrimSpace(out))
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// others maps every member but v to n.
func (c *netnsCluster) others(v, n int) map[int]int {
	m := map[int]int{}
	for i := range c.members {
		if i != v {
			m[i] = n
		}
	}
	return m
}

// netnsHammer is a hammering client in a member's namespace.
type netnsHammer struct {
	proc  *netnsProc
	stdin io.WriteCloser
	lines chan string // stdout, closed at EOF
	// readErr is the error reading stdout ended with, if any; set
	// before lines is closed.
	readErr error
}

func (c *netnsCluster) startHammer(t *testing.T, i int) *netnsHammer {
	t.Helper()
	var args []string
	for _, k := range netnsKeys {
		args = append(args, "-key", k.name, "-workers", strconv.Itoa(k.workers))
	}
	return c.startClient(t, i, "hammer", args...)
}

// startClient starts the test client in member i's namespace in mode
// (hammer or record) against the member, with args after the common ones,
// and waits until it says it started.
func (c *netnsCluster) startClient(t *testing.T, i int, mode string, args ...string) *netnsHammer {
	t.Helper()
	m := c.members[i]
	args = append([]string{mode, "-server", m.bind, "-timeout", c.requestTimeout().String()}, args...)
	cmd := c.net.command(m.ns, c.bins.client, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Not cmd.StdoutPipe: the process's Wait, which runs as soon as it
	// starts, would close that pipe when the client exits, losing the
	// end of a report longer than the pipe's buffer. This pipe ends at
	// EOF, once the client exited and everything it wrote was read.
	stdout, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	h := &netnsHammer{stdin: stdin, lines: make(chan string, 64)}
	h.proc = netnsStartProc(t, fmt.Sprintf("client of member %d", i), cmd)
	w.Close()
	go func() {
		defer close(h.lines)
		defer stdout.Close()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		h.readErr = sc.Err()
	}()
	select {
	case l, ok := <-h.lines:
		if !ok || l != "started" {
			t.Fatalf("client of member %d: got %q, want started\nstderr:\n%s", i, l, h.proc.stderr.String())
		}
	case <-time.After(netnsReadyTimeout):
		t.Fatalf("client of member %d did not start\nstderr:\n%s", i, h.proc.stderr.String())
	}
	return h
}

// netnsWindow is what one member's client saw in one window of a key.
type netnsWindow struct{ grants, answers int64 }

// netnsReport is one client's counts: key → window → counts, and key →
// requests without an answer.
type netnsReport struct {
	windows map[string]map[int64]netnsWindow
	errors  map[string]int64
}

// output closes the client's stdin and returns what it printed after
// "started", once it exited.
func (h *netnsHammer) output(t *testing.T) []string {
	t.Helper()
	h.stdin.Close()
	var out []string
	deadline := time.After(netnsTimeout + 10*time.Second)
	for {
		var l string
		var ok bool
		select {
		case l, ok = <-h.lines:
		case <-deadline:
			t.Fatalf("%s: no report\nstderr:\n%s", h.proc.name, h.proc.stderr.String())
		}
		if !ok {
			break
		}
		out = append(out, l)
	}
	if h.readErr != nil {
		t.Fatalf("%s: reading its output: %v", h.proc.name, h.readErr)
	}
	<-h.proc.exited
	if h.proc.err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", h.proc.name, h.proc.err, h.proc.stderr.String())
	}
	return out
}

// stop closes the client's stdin and reads its report.
func (h *netnsHammer) stop(t *testing.T) netnsReport {
	t.Helper()
	r := netnsReport{windows: map[string]map[int64]netnsWindow{}, errors: map[string]int64{}}
	for _, l := range h.output(t) {
		f := strings.Fields(l)
		switch {
		case len(f) == 5 && f[0] == "w":
			w, err1 := strconv.ParseInt(f[2], 10, 64)
			g, err2 := strconv.ParseInt(f[3], 10, 64)
			a, err3 := strconv.ParseInt(f[4], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				t.Fatalf("%s: bad line %q", h.proc.name, l)
			}
			if r.windows[f[1]] == nil {
				r.windows[f[1]] = map[int64]netnsWindow{}
			}
			r.windows[f[1]][w] = netnsWindow{grants: g, answers: a}
		case len(f) == 3 && f[0] == "e":
			n, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				t.Fatalf("%s: bad line %q", h.proc.name, l)
			}
			r.errors[f[1]] = n
		default:
			t.Fatalf("%s: unexpected line %q", h.proc.name, l)
		}
	}
	return r
}

// runNetnsFault runs one cluster in mode on ports from port, applies the
// fault to member netnsVictim under load, and checks and logs the counts.
func runNetnsFault(t *testing.T, nw *netnsNet, bins netnsBins, mode string, port int,
	fault func(*testing.T, *netnsCluster, int) netnsFaultEvents) {
	var keys []string
	for _, k := range netnsKeys {
		keys = append(keys, k.spec())
	}
	c := newNetnsCluster(nw, bins, mode, port, keys)
	c.restartSuffix = "-restarted"
	for i := range c.members {
		c.start(t, i, fmt.Sprintf("m%d", i))
	}
	c.awaitReady(t)

	hammers := make([]*netnsHammer, len(c.members))
	for i := range hammers {
		hammers[i] = c.startHammer(t, i)
	}
	time.Sleep(netnsSteady) // load before the fault
	faultStart := time.Now()
	ev := fault(t, c, netnsVictim)
	faultEnd := time.Now()
	c.awaitReady(t)
	healed := time.Now()
	loadUntil := netnsLater(ev.loadUntil, healed.Add(netnsSteady))
	time.Sleep(time.Until(loadUntil)) // load after the fault
	reports := make([]netnsReport, len(hammers))
	for i, h := range hammers {
		reports[i] = h.stop(t)
	}
	for i, m := range c.members {
		if !m.lockerd.running() {
			t.Errorf("member %d exited: %v\nstderr:\n%s", i, m.lockerd.err, m.lockerd.stderr.String())
		}
	}
	t.Logf("%s: fault %v, healed (every member ready) %v after it ended",
		mode, faultEnd.Sub(faultStart).Round(time.Millisecond), healed.Sub(faultEnd).Round(time.Millisecond))
	for _, k := range netnsKeys {
		checkNetnsKey(t, mode, k, reports, faultStart, healed)
	}
}

// netnsLater returns the later of a and b.
func netnsLater(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// checkNetnsKey sums the grants of key k per window over the members'
// reports, logs the figures and checks them: in strict mode no window over
// the limit; in every mode each member answered after the cluster healed.
func checkNetnsKey(t *testing.T, mode string, k netnsKey, reports []netnsReport, faultStart, healed time.Time) {
	t.Helper()
	sum := map[int64]int64{}
	var errs int64
	for i, r := range reports {
		errs += r.errors[k.name]
		after := int64(0)
		for w, c := range r.windows[k.name] {
			sum[w] += c.grants
			if w > k.windowOf(healed) {
				after += c.answers
			}
		}
		if after == 0 {
			t.Errorf("%s: member %d answered nothing after the cluster healed", k.spec(), i)
		}
	}
	ws := make([]int64, 0, len(sum))
	for w := range sum {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(a, b int) bool { return ws[a] < ws[b] })
	if len(ws) < 3 {
		t.Fatalf("%s: answers in only %d windows", k.spec(), len(ws))
	}
	// The first and last windows were partly outside the load.
	first, last := ws[0]+1, ws[len(ws)-1]-1
	faultFirst, faultLast := k.windowOf(faultStart), k.windowOf(healed)
	var grants, faultGrants, overTokens, overWindows, maxGrants int64
	for w := first; w <= last; w++ {
		n := sum[w]
		grants += n
		if w >= faultFirst && w <= faultLast {
			faultGrants += n
		}
		maxGrants = max(maxGrants, n)
	}
	// Over the limit counts every window, the partial ones too.
	var over []string
	for _, w := range ws {
		if n := sum[w]; n > k.limit {
			overWindows++
			overTokens += n - k.limit
			per := make([]string, len(reports))
			for i, r := range reports {
				per[i] = strconv.FormatInt(r.windows[k.name][w].grants, 10)
			}
			over = append(over, fmt.Sprintf("window %d (%+dms from the fault): %d grants (members %s)",
				w, time.Unix(0, w*int64(k.window)).Sub(faultStart).Milliseconds(), n, strings.Join(per, "+")))
		}
	}
	full := last - first + 1
	faultWindows := min(faultLast, last) - max(faultFirst, first) + 1
	t.Logf("%s %s: %d windows, %d over the limit (%d tokens over, %.2f%% of grants), max %d per window, "+
		"utilisation %.1f%% (%.1f%% in the %d windows from the fault to healed), %d client errors",
		mode, k.spec(), full, overWindows, overTokens, 100*float64(overTokens)/float64(max(grants, 1)), maxGrants,
		100*float64(grants)/float64(full*k.limit),
		100*float64(faultGrants)/float64(max(faultWindows, 1)*k.limit), faultWindows, errs)
	for _, o := range over {
		t.Logf("  over: %s", o)
	}
	if grants == 0 {
		t.Errorf("%s: no grants at all", k.spec())
	}
	if mode == "strict" && overWindows > 0 {
		t.Errorf("%s: strict mode granted more than the limit in %d windows:\n%s", k.spec(), overWindows, strings.Join(over, "\n"))
	}
}
