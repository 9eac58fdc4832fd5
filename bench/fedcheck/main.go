// Command fedcheck measures how well a federation of real lockerd
// processes keeps one limit: it starts N lockerd processes on loopback
// that federate one key, hammers every member with client goroutines for
// a while, counts every go answer by the window its reply names, and
// reports the windows over the limit, the largest window, the grants over
// the limit and the utilization of the limit.
//
//	go build -o bin/ ./cmd/lockerd ./bench/fedcheck
//	bin/fedcheck -lockerd bin/lockerd -federation shared -key api=5/800ms -duration 6s
//
// Every run is bounded (-duration plus at most 20s of start-up and
// shutdown), and every process it starts is killed when it ends, also
// when fedcheck itself is killed (Linux: the parent-death signal).
// It exits 1 when a window went over the limit, 2 on a usage or set-up
// error, 0 otherwise.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
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

// options are the command-line settings.
type options struct {
	lockerd  string
	members  int
	clients  int
	mode     string
	key      string
	duration time.Duration
	jsonOut  bool
	logLevel string
	shift    time.Duration
	freeze   time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fedcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.lockerd, "lockerd", "bin/lockerd", "lockerd binary (go build -o bin/ ./cmd/lockerd)")
	fs.IntVar(&o.members, "members", 3, "lockerd processes in the federation")
	fs.IntVar(&o.clients, "clients", 4, "client goroutines per member, each with its own connection")
	fs.StringVar(&o.mode, "federation", "shared", "federation mode: shared or strict")
	fs.StringVar(&o.key, "key", "api=5/800ms", "the key, as NAME=LIMIT/WINDOW")
	fs.DurationVar(&o.duration, "duration", 6*time.Second, "how long to hammer (at most 1m)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as one JSON object")
	fs.StringVar(&o.logLevel, "log-level", "error", "log level of the lockerd processes (their log goes to stderr)")
	fs.DurationVar(&o.freeze, "freeze", 0, "if set, member 1 is frozen (SIGSTOP) this long a third into the run, then resumed")
	fs.DurationVar(&o.shift, "shift", 0, "if set, the load moves: every SHIFT only one member is hammered, in turn (0: all at once)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	name, limit, err := parseKey(o.key)
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "fedcheck:", err)
		return 2
	case o.members < 1 || o.members > 16 || o.clients < 1 || o.clients > 64:
		fmt.Fprintln(stderr, "fedcheck: -members must be 1..16 and -clients 1..64")
		return 2
	case o.duration <= 0 || o.duration > time.Minute:
		fmt.Fprintln(stderr, "fedcheck: -duration must be in (0, 1m]")
		return 2
	case o.mode != "shared" && o.mode != "strict":
		fmt.Fprintln(stderr, "fedcheck: -federation must be shared or strict")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, o.duration+20*time.Second)
	defer cancel()
	res, err := measure(ctx, o, name, limit, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "fedcheck:", err)
		return 2
	}
	if o.jsonOut {
		json.NewEncoder(stdout).Encode(res)
	} else {
		fmt.Fprintln(stdout, res)
	}
	if res.WindowsOver > 0 {
		return 1
	}
	return 0
}

// parseKey returns the name and limit of NAME=LIMIT/WINDOW.
func parseKey(s string) (string, int64, error) {
	name, rest, ok := strings.Cut(s, "=")
	lim, _, ok2 := strings.Cut(rest, "/")
	n, err := strconv.ParseInt(lim, 10, 64)
	if !ok || !ok2 || name == "" || err != nil || n < 1 {
		return "", 0, fmt.Errorf("-key %q is not NAME=LIMIT/WINDOW", s)
	}
	return name, n, nil
}

// result is what one run measured.
type result struct {
	Mode    string `json:"mode"`
	Key     string `json:"key"`
	Members int    `json:"members"`
	Clients int    `json:"clients_per_member"`
	Shift   string `json:"shift,omitempty"`
	Freeze  string `json:"freeze,omitempty"`
	// Windows is the number of windows with at least one grant.
	Windows int `json:"windows"`
	// Grants and Sorry count the answers; Errors the failed calls.
	Grants int64 `json:"grants"`
	Sorry  int64 `json:"sorry"`
	Errors int64 `json:"errors"`
	// WindowsOver is the number of windows that granted more than the
	// limit; MaxWindow the most grants in one window; Over the grants
	// above the limit, summed over the windows.
	WindowsOver int   `json:"windows_over"`
	MaxWindow   int64 `json:"max_window"`
	Over        int64 `json:"over"`
	// Utilization is the grants in the windows strictly between the first
	// and the last (which the run only partly covers) over the limit
	// times their number.
	Utilization float64 `json:"utilization"`
	// OverAt lists the windows over the limit, as "offset:grants", the
	// offset counted from the first window with a grant.
	OverAt []string `json:"over_at,omitempty"`
	limit  int64
}

func (r result) String() string {
	load := "even load"
	if r.Shift != "" {
		load = "load moving every " + r.Shift
	}
	if r.Freeze != "" {
		load += ", member 1 frozen " + r.Freeze
	}
	return fmt.Sprintf("%s %s, %d members x %d clients, %s: %d windows, %d grants, %d sorry, %d errors; "+
		"windows over the limit %d, max per window %d (limit %d, %.2fx), grants over %d (%.2f%% of grants); utilization %.1f%%",
		r.Mode, r.Key, r.Members, r.Clients, load, r.Windows, r.Grants, r.Sorry, r.Errors,
		r.WindowsOver, r.MaxWindow, r.limit, float64(r.MaxWindow)/float64(r.limit), r.Over,
		100*float64(r.Over)/float64(max(r.Grants, 1)), 100*r.Utilization) + overAt(r.OverAt)
}

func overAt(at []string) string {
	if len(at) == 0 {
		return ""
	}
	return "; over in windows " + strings.Join(at, " ")
}

// proc is one lockerd process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// stop kills p and waits for it.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func measure(ctx context.Context, o options, name string, limit int64, stderr io.Writer) (result, error) {
	binds, err := freeEndpoints(2 * o.members)
	if err != nil {
		return result{}, err
	}
	pubs := binds[o.members:]
	binds = binds[:o.members]
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	for i := range binds {
		args := []string{"--bind", binds[i], "--metrics-addr", "", "--key", o.key, "--id", fmt.Sprintf("m%d", i),
			"--publish", pubs[i], "--federation", o.mode, "--log-level", o.logLevel}
		for _, p := range pubs {
			args = append(args, "--peer", p)
		}
		cmd := exec.Command(o.lockerd, args...)
		cmd.Stderr = stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return result{}, err
		}
		p := &proc{cmd: cmd, exited: make(chan struct{})}
		go func() { cmd.Wait(); close(p.exited) }()
		procs = append(procs, p)
	}
	if err := awaitPeers(ctx, binds, procs); err != nil {
		return result{}, err
	}
	hammerCtx, stop := context.WithTimeout(ctx, o.duration)
	defer stop()
	if o.freeze > 0 && len(procs) > 1 {
		go freeze(hammerCtx, procs[1], o.duration/3, o.freeze)
	}
	h, err := hammer(hammerCtx, binds, o.clients, name, o.shift)
	if err != nil {
		return result{}, err
	}
	if ctx.Err() != nil {
		return result{}, errors.New("interrupted")
	}
	r := h.result(limit)
	r.Mode, r.Key, r.Members, r.Clients = o.mode, o.key, o.members, o.clients
	if o.shift > 0 {
		r.Shift = o.shift.String()
	}
	if o.freeze > 0 {
		r.Freeze = o.freeze.String()
	}
	return r, nil
}

// freeze stops p with SIGSTOP after a delay, and resumes it after d or
// when ctx is done, whichever comes first.
func freeze(ctx context.Context, p *proc, after, d time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(after):
	}
	p.cmd.Process.Signal(syscall.SIGSTOP)
	defer p.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// freeEndpoints returns n tcp endpoints on 127.0.0.1 that were free a
// moment ago.
func freeEndpoints(n int) ([]string, error) {
	var out []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, "tcp://"+l.Addr().String())
	}
	return out, nil
}

// awaitPeers waits until every member reports every other one up, for at
// most 10s.
func awaitPeers(ctx context.Context, binds []string, procs []*proc) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var clients []*locker.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, ep := range binds {
		c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 200 * time.Millisecond, Attempts: 1})
		if err != nil {
			return err
		}
		clients = append(clients, c)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := 0
		for i, c := range clients {
			select {
			case <-procs[i].exited:
				return fmt.Errorf("lockerd %d exited: %v", i, procs[i].cmd.ProcessState)
			default:
			}
			st, err := c.Status(ctx)
			if err == nil && strings.Count(string(st.Raw), `"up":true`) == len(binds)-1 {
				ready++
			}
		}
		if ready == len(clients) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("members did not all hear each other within 10s (%d of %d ready)", ready, len(clients))
		case <-tick.C:
		}
	}
}

// hammered holds the answers of one run.
type hammered struct {
	mu                  sync.Mutex
	perWindow           map[int64]int64
	grants, sorry, errs int64
}

// hammer sends take requests for key to each endpoint from clients
// goroutines each until ctx is done; with shift > 0, only to member i
// during the i-th of every len(binds) periods of shift.
func hammer(ctx context.Context, binds []string, clients int, key string, shift time.Duration) (*hammered, error) {
	h := &hammered{perWindow: make(map[int64]int64)}
	var wg sync.WaitGroup
	defer wg.Wait()
	start := time.Now()
	active := func(i int) bool {
		return shift <= 0 || int(time.Since(start)/shift)%len(binds) == i
	}
	for m, ep := range binds {
		for i := 0; i < clients; i++ {
			c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: time.Second, Attempts: 1})
			if err != nil {
				return nil, err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				for ctx.Err() == nil {
					if !active(m) {
						time.Sleep(time.Millisecond) // idle until this member's turn
						continue
					}
					d, err := c.Take(ctx, key, 1)
					h.add(d, err, ctx.Err() != nil)
				}
			}()
		}
	}
	return h, nil
}

func (h *hammered) add(d locker.Decision, err error, ending bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err != nil:
		if !ending {
			h.errs++
		}
	case d.OK:
		h.grants++
		h.perWindow[d.Window]++
	default:
		h.sorry++
	}
}

// result summarises the run for a key of the given limit.
func (h *hammered) result(limit int64) result {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := result{Grants: h.grants, Sorry: h.sorry, Errors: h.errs, Windows: len(h.perWindow), limit: limit}
	var ws []int64
	for k, n := range h.perWindow {
		ws = append(ws, k)
		r.MaxWindow = max(r.MaxWindow, n)
		if n > limit {
			r.WindowsOver++
			r.Over += n - limit
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i] < ws[j] })
	for _, k := range ws {
		if n := h.perWindow[k]; n > limit {
			r.OverAt = append(r.OverAt, fmt.Sprintf("%d:%d", k-ws[0], n))
		}
	}
	if len(ws) >= 3 {
		var sum int64
		first, last := ws[0]+1, ws[len(ws)-1]-1
		for k := first; k <= last; k++ {
			sum += h.perWindow[k]
		}
		r.Utilization = float64(sum) / float64(limit*(last-first+1))
	}
	return r
}
