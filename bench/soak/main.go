// Command soak runs three federated lockerd processes under mixed take and
// wait load for a long time, restarts one of them every interval, and
// reports each process's resident memory and goroutine count per interval
// and every window in which the cluster granted more than the limit.
//
//	go build -o bin/ ./cmd/... ./bench/soak && bin/soak -duration 10m
//
// It exits 1 when a window went over the limit in strict mode, or when a
// process's memory or goroutine count kept growing.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lockerd/lockerd/bench/internal/benchmain"
	"github.com/lockerd/lockerd/locker"
)

func main() { benchmain.Main(run) }

type options struct {
	lockerd      string
	duration     time.Duration
	restartEvery time.Duration
	reportEvery  time.Duration
	limit        int64
	window       time.Duration
	mode         string
	clients      int
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.lockerd, "lockerd", "bin/lockerd", "lockerd binary")
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "how long to run")
	fs.DurationVar(&o.restartEvery, "restart-every", time.Minute, "restart one server (SIGKILL) this often")
	fs.DurationVar(&o.reportEvery, "report-every", time.Minute, "report memory and goroutines this often")
	fs.Int64Var(&o.limit, "limit", 100, "tokens per window of the key soak")
	fs.DurationVar(&o.window, "window", 100*time.Millisecond, "window of the key soak")
	fs.StringVar(&o.mode, "federation", "strict", "federation mode: strict or shared")
	fs.IntVar(&o.clients, "clients", 24, "client goroutines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := soak(ctx, o, stdout); err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return 1
	}
	return 0
}

// node is one lockerd process.
type node struct {
	id, bind, pub, metrics string
	args                   []string
	cmd                    *exec.Cmd
	exited                 chan struct{}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (n *node) start(bin string) error {
	n.cmd = exec.Command(bin, n.args...)
	n.cmd.Stdout, n.cmd.Stderr = io.Discard, io.Discard
	if err := n.cmd.Start(); err != nil {
		return err
	}
	n.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(n.cmd, n.exited)
	return nil
}

func (n *node) kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

func (n *node) stop() {
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(3 * time.Second):
		n.kill()
	}
}

// awaitHealthy waits until the process serves /healthz, so that a report
// right after a restart samples the new process.
func (n *node) awaitHealthy(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get("http://" + n.metrics + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %s", limit)
		}
		time.Sleep(20 * time.Millisecond) // a process starting up: nothing to await but its port
	}
}

// sample is one report of one process.
type sample struct {
	rssKiB     int64
	goroutines int64
}

func (n *node) sample() (sample, error) {
	var s sample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			s.rssKiB, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	resp, err := http.Get("http://" + n.metrics + "/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			s.goroutines = int64(f)
		}
	}
	return s, sc.Err()
}

// tally counts go decisions per window, cluster-wide.
type tally struct {
	mu      sync.Mutex
	grants  map[int64]int64
	over    map[int64]int64
	go_     int64
	sorry   int64
	errs    int64
	maxSeen int64
}

func (t *tally) add(d locker.Decision, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err != nil:
		t.errs++
	case d.OK:
		t.go_++
		t.grants[d.Window]++
		if d.Window > t.maxSeen {
			t.maxSeen = d.Window
		}
	default:
		t.sorry++
	}
}

// settle moves windows well in the past out of the live map, recording
// the ones over limit, so memory stays flat.
func (t *tally) settle(limit int64) (windows, fullWindows int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for w, n := range t.grants {
		if w >= t.maxSeen-50 {
			continue
		}
		if n > limit {
			t.over[w] = n
		}
		if n == limit {
			fullWindows++
		}
		windows++
		delete(t.grants, w)
	}
	return windows, fullWindows
}

func soak(ctx context.Context, o options, out io.Writer) error {
	if o.mode != "strict" && o.mode != "shared" {
		return fmt.Errorf("federation must be strict or shared, not %q", o.mode)
	}
	nodes, err := newNodes(o)
	if err != nil {
		return err
	}
	stopNodes, err := startNodes(nodes, o.lockerd)
	defer stopNodes()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	clients, closeClients, err := newClients(nodes, o.clients)
	defer closeClients()
	if err != nil {
		return err
	}
	t := &tally{grants: make(map[int64]int64), over: make(map[int64]int64)}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			drive(ctx, c, o.window, t)
		}()
	}

	m := &monitor{o: o, nodes: nodes, t: t, out: out, history: make(map[string][]sample)}
	if err := m.run(ctx); err != nil {
		return err
	}
	wg.Wait()
	t.mu.Lock()
	t.maxSeen += 100 // settle everything
	t.mu.Unlock()
	m.settle()
	return m.verdict()
}

// newNodes picks free loopback ports for three federated processes and
// builds their command lines.
func newNodes(o options) ([]*node, error) {
	nodes := make([]*node, 3)
	var pubs []string
	for i := range nodes {
		var ports [3]int
		for j := range ports {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			ports[j] = p
		}
		nodes[i] = &node{
			id:      fmt.Sprintf("soak-%d", i+1),
			bind:    fmt.Sprintf("tcp://127.0.0.1:%d", ports[0]),
			pub:     fmt.Sprintf("tcp://127.0.0.1:%d", ports[1]),
			metrics: fmt.Sprintf("127.0.0.1:%d", ports[2]),
		}
		pubs = append(pubs, nodes[i].pub)
	}
	key := fmt.Sprintf("soak=%d/%s", o.limit, o.window)
	for _, n := range nodes {
		n.args = []string{"--id", n.id, "--bind", n.bind, "--publish", n.pub, "--federation", o.mode,
			"--key", key, "--metrics-addr", n.metrics, "--log-level", "warn"}
		for _, p := range pubs {
			n.args = append(n.args, "--peer", p)
		}
	}
	return nodes, nil
}

// startNodes starts every node in turn. The returned function stops the
// ones that started, last first; it is valid also when err is not nil.
func startNodes(nodes []*node, bin string) (stop func(), err error) {
	var started []*node
	stop = func() {
		for i := len(started) - 1; i >= 0; i-- {
			started[i].stop()
		}
	}
	for _, n := range nodes {
		if err := n.start(bin); err != nil {
			return stop, fmt.Errorf("start %s: %w", bin, err)
		}
		started = append(started, n)
	}
	return stop, nil
}

// newClients makes one client per goroutine, spread over the nodes. The
// returned function closes the ones made, last first; it is valid also
// when err is not nil.
func newClients(nodes []*node, count int) (clients []*locker.Client, closeAll func(), err error) {
	closeAll = func() {
		for i := len(clients) - 1; i >= 0; i-- {
			clients[i].Close()
		}
	}
	for i := 0; i < count; i++ {
		n := nodes[i%len(nodes)]
		c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{n.bind}, Timeout: 300 * time.Millisecond, Attempts: 1})
		if err != nil {
			return clients, closeAll, err
		}
		clients = append(clients, c)
	}
	return clients, closeAll, nil
}

// drive mixes waits (3 in 10) and takes of the key soak until ctx ends,
// counting every answer in t.
func drive(ctx context.Context, c *locker.Client, window time.Duration, t *tally) {
	for ctx.Err() == nil {
		var d locker.Decision
		var err error
		if rand.IntN(10) < 3 {
			d, err = c.WaitMax(ctx, "soak", 1, window/2)
		} else {
			d, err = c.Take(ctx, "soak", 1)
		}
		if ctx.Err() != nil {
			return
		}
		t.add(d, err)
		if err != nil {
			select { // a server is restarting: do not spin
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// monitor restarts the nodes in turn, samples them and settles the tally
// while the load runs.
type monitor struct {
	o       options
	nodes   []*node
	t       *tally
	out     io.Writer
	start   time.Time
	history map[string][]sample
	next    int
	windows int64 // settled windows
	full    int64 // settled windows at the limit
}

// run restarts and reports on their tickers until ctx ends.
func (m *monitor) run(ctx context.Context) error {
	m.start = time.Now()
	restart := time.NewTicker(m.o.restartEvery)
	defer restart.Stop()
	report := time.NewTicker(m.o.reportEvery)
	defer report.Stop()
	fmt.Fprintf(m.out, "| minute | node | rss KiB | goroutines |\n|---|---|---|---|\n")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-restart.C:
			if err := m.restartNext(); err != nil {
				return err
			}
		case <-report.C:
			m.report()
		}
	}
}

// restartNext kills the next node in turn, starts it again and waits
// until it serves.
func (m *monitor) restartNext() error {
	n := m.nodes[m.next%len(m.nodes)]
	m.next++
	n.kill()
	if err := n.start(m.o.lockerd); err != nil {
		return fmt.Errorf("restart %s: %w", n.id, err)
	}
	if err := n.awaitHealthy(5 * time.Second); err != nil {
		return fmt.Errorf("restart %s: %w", n.id, err)
	}
	return nil
}

// report prints one row per node and settles the tally.
func (m *monitor) report() {
	at := time.Since(m.start).Round(time.Second)
	for _, n := range m.nodes {
		s, err := n.sample()
		if err != nil {
			fmt.Fprintf(m.out, "| %s | %s | (%v) | |\n", at, n.id, err)
			continue
		}
		m.history[n.id] = append(m.history[n.id], s)
		fmt.Fprintf(m.out, "| %s | %s | %d | %d |\n", at, n.id, s.rssKiB, s.goroutines)
	}
	m.settle()
}

func (m *monitor) settle() {
	w, f := m.t.settle(m.o.limit)
	m.windows, m.full = m.windows+w, m.full+f
}

// verdict prints the totals and the first windows over the limit, and
// returns an error naming every failure: windows over the limit in strict
// mode, or a node that kept growing.
func (m *monitor) verdict() error {
	t := m.t
	fmt.Fprintf(m.out, "\ngo %d, sorry %d, errors %d; %d windows, %d at the limit (%.1f%%), %d over the limit\n",
		t.go_, t.sorry, t.errs, m.windows, m.full, 100*float64(m.full)/float64(max(m.windows, 1)), len(t.over))
	var bad []string
	if len(t.over) > 0 && m.o.mode == "strict" {
		m.printOver()
		bad = append(bad, fmt.Sprintf("%d windows over the limit", len(t.over)))
	}
	for id, h := range m.history {
		if growing(h) {
			bad = append(bad, id+": memory or goroutines grew in every interval")
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// printOver prints the first ten windows over the limit.
func (m *monitor) printOver() {
	ws := make([]int64, 0, len(m.t.over))
	for w := range m.t.over {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i] < ws[j] })
	for _, w := range ws[:min(len(ws), 10)] {
		fmt.Fprintf(m.out, "window %d: %d grants, limit %d\n", w, m.t.over[w], m.o.limit)
	}
}

// growing reports whether the last samples rose steadily: RSS up by more
// than 10% from the second sample to the last with no fall in between, or
// goroutines likewise. The first sample is a warm-up.
func growing(h []sample) bool {
	if len(h) < 4 {
		return false
	}
	h = h[1:]
	rss, gor := true, true
	for i := 1; i < len(h); i++ {
		rss = rss && h[i].rssKiB >= h[i-1].rssKiB
		gor = gor && h[i].goroutines > h[i-1].goroutines
	}
	return (rss && h[len(h)-1].rssKiB > h[0].rssKiB*11/10) || gor
}
