// Command scale measures what scale costs a lockerd process, with real
// lockerd processes on loopback, and prints a markdown table, one row per
// measurement with how it was measured (bench/run.sh puts it in
// bench/RESULTS.md):
//
//   - connected idle client connections (ZMTP handshakes done, then
//     silent): RSS per connection, and the decisions/s of 64 busy
//     goroutines (lockerctl bench) with them connected relative to a
//     twin lockerd without them, in alternating rounds;
//
//   - held waits: RSS per wait request the server holds;
//
//   - configured keys: start time, RSS, and the time and size of a
//     /metrics scrape and of a status request;
//
//   - keys made on demand (a template): RSS per live key at -live-keys
//     live keys, for each algorithm of -live-algs;
//
//   - federation: messages and bytes per second the three members of a
//     federation publish at full load, by the number of keys in use
//     (counted by a SUB socket subscribed to all three).
//
//     scale -bin DIR [-idle 1000,10000] [-waits 100000] [-keys 100000]
//     scale -bin DIR -steps ondemand -live-algs fixed,sliding,gcra -json FILE
//
// -steps picks the measurements (default all: idle,waits,keys,ondemand,fed);
// -json FILE also writes the figures of the keys made on demand as JSON
// lines, for bench/run.sh.
//
// DIR holds lockerd and lockerctl. It raises its open-file limit to the
// hard limit (lockerd inherits it) and stops every process it starts.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	bin      string
	idle     []int
	waits    int
	keys     int
	liveKeys int
	liveAlgs []string
	jsonOut  io.Writer // JSON lines of the keys made on demand, or nil
	fedKeys  []int
	d        time.Duration
	rounds   int
	work     string
	log      io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	idle := fs.String("idle", "1000,10000", "numbers of idle connections")
	fed := fs.String("fed-keys", "1,100,10000", "numbers of keys in use in the federation runs")
	fs.StringVar(&o.bin, "bin", "bin", "directory holding lockerd and lockerctl")
	fs.IntVar(&o.waits, "waits", 100000, "held waits")
	fs.IntVar(&o.keys, "keys", 100000, "configured keys")
	fs.IntVar(&o.liveKeys, "live-keys", 1000000, "keys made on demand")
	algs := fs.String("live-algs", "fixed,sliding,gcra", "algorithms of the keys made on demand")
	stepNames := fs.String("steps", "idle,waits,keys,ondemand,fed", "measurements to make")
	jsonPath := fs.String("json", "", "also write the figures of the keys made on demand to this file, as JSON lines")
	fs.DurationVar(&o.d, "d", 2*time.Second, "duration of each load run")
	fs.IntVar(&o.rounds, "rounds", 5, "alternating rounds of the idle-connection comparison")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if o.idle, err = ints(*idle); err == nil {
		o.fedKeys, err = ints(*fed)
	}
	var steps []func(context.Context, options, *table) error
	if err == nil {
		o.liveAlgs, err = names(*algs, "fixed", "sliding", "gcra")
	}
	if err == nil {
		steps, err = pickSteps(*stepNames)
	}
	if err != nil {
		fmt.Fprintln(stderr, "scale:", err)
		return 2
	}
	if *jsonPath != "" {
		f, err := os.Create(*jsonPath)
		if err != nil {
			fmt.Fprintln(stderr, "scale:", err)
			return 1
		}
		defer f.Close()
		o.jsonOut = f
	}
	o.log = stderr
	if err := raiseLimits(); err != nil {
		fmt.Fprintln(stderr, "scale:", err)
		return 1
	}
	o.work, err = os.MkdirTemp("", "lockerd-scale")
	if err != nil {
		fmt.Fprintln(stderr, "scale:", err)
		return 1
	}
	defer os.RemoveAll(o.work)
	t := &table{}
	for _, step := range steps {
		if err := step(ctx, o, t); err != nil {
			fmt.Fprintln(stderr, "scale:", err)
			return 1
		}
	}
	t.write(stdout)
	return 0
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive numbers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// allSteps are the measurements by name, in the order they run.
var allSteps = []struct {
	name string
	run  func(context.Context, options, *table) error
}{
	{"idle", idleConns},
	{"waits", heldWaits},
	{"keys", configuredKeys},
	{"ondemand", onDemandKeys},
	{"fed", federation},
}

// pickSteps returns the steps named in s (separated by commas), in the
// order of allSteps.
func pickSteps(s string) ([]func(context.Context, options, *table) error, error) {
	var known []string
	for _, st := range allSteps {
		known = append(known, st.name)
	}
	want, err := names(s, known...)
	if err != nil {
		return nil, err
	}
	var out []func(context.Context, options, *table) error
	for _, st := range allSteps {
		for _, w := range want {
			if w == st.name {
				out = append(out, st.run)
				break
			}
		}
	}
	return out, nil
}

// names splits s at commas and checks each name is one of known.
func names(s string, known ...string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		ok := false
		for _, k := range known {
			ok = ok || f == k
		}
		if !ok {
			return nil, fmt.Errorf("%q: want some of %s, separated by commas", s, strings.Join(known, ","))
		}
		out = append(out, f)
	}
	return out, nil
}

// table is the markdown the program prints.
type table struct{ rows [][4]string }

func (t *table) row(what, figure, target, how string) {
	t.rows = append(t.rows, [4]string{what, figure, target, how})
}

func (t *table) write(w io.Writer) {
	fmt.Fprintln(w, "| measurement | figure | target | how it was measured |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r[0], r[1], r[2], r[3])
	}
}

// raiseLimits raises the open-file limit to the hard limit, for the idle
// connections, and the stack limit (which bounds the size of a command
// line to a quarter of it) to 64 MiB if it may, for 100k --key flags.
// The lockerd processes started inherit both.
func raiseLimits() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_STACK, &l); err != nil {
		return err
	}
	if want := uint64(64 << 20); l.Cur < want && l.Max >= want {
		l.Cur = want
		return syscall.Setrlimit(syscall.RLIMIT_STACK, &l)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// proc is a lockerd process.
type proc struct {
	cmd     *exec.Cmd
	ep      string
	started time.Duration // from exec to its first pong
}

// startLockerd runs lockerd with args on a free port and waits until it
// answers a ping.
func startLockerd(o options, name string, args ...string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	ep := "tcp://127.0.0.1:" + strconv.Itoa(port)
	all := append([]string{"--id", name, "--bind", ep, "--log-level", "warn"}, args...)
	cmd := exec.Command(filepath.Join(o.bin, "lockerd"), all...)
	logf, err := os.Create(filepath.Join(o.work, name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, ep: ep}
	for deadline := t0.Add(60 * time.Second); time.Now().Before(deadline); {
		if _, err := request(ep, "ping", 100*time.Millisecond); err == nil {
			p.started = time.Since(t0)
			return p, nil
		}
		if cmd.ProcessState != nil {
			break
		}
	}
	p.stop()
	b, _ := os.ReadFile(filepath.Join(o.work, name+".log"))
	return nil, fmt.Errorf("lockerd %s did not answer: %s", name, b)
}

func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// rss is the process's resident set in bytes.
func (p *proc) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// request sends body on a new REQ socket and returns the reply.
func request(ep, body string, timeout time.Duration) (string, error) {
	s, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		return "", err
	}
	defer s.Close()
	s.SetLinger(0)
	s.SetRcvtimeo(timeout)
	if err := s.Connect(ep); err != nil {
		return "", err
	}
	if _, err := s.Send(body, 0); err != nil {
		return "", err
	}
	return s.Recv(0)
}

// benchRate runs lockerctl bench with c goroutines for o.d and returns
// its decisions/s.
func benchRate(ctx context.Context, o options, ep, key string, c int) (float64, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(o.bin, "lockerctl"), "bench", "-k", key,
		"-c", strconv.Itoa(c), "-d", o.d.String(), "--json", "-s", ep).Output()
	if err != nil {
		return 0, fmt.Errorf("lockerctl bench: %w", err)
	}
	var s struct {
		Rate   float64 `json:"decisions_per_second"`
		Errors int64   `json:"errors"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return 0, fmt.Errorf("lockerctl bench: %w", err)
	}
	if s.Errors > 0 {
		return 0, fmt.Errorf("lockerctl bench: %d errors", s.Errors)
	}
	return s.Rate, nil
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func logf(o options, format string, args ...any) {
	fmt.Fprintf(o.log, "scale: "+format+"\n", args...)
}
