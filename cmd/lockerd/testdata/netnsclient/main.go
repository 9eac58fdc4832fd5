// Command netnsclient is the client side of lockerd's network namespace
// fault tests (cmd/lockerd/netns_test.go). The test runs it inside a
// member's namespace with "ip netns exec", so that it reaches the member
// over that namespace's own network. It lives under testdata so that
// "go build ./..." and "go vet ./..." leave it out; the test builds it.
//
//	netnsclient ready -server EP -metrics HOST:PORT -peers N -timeout D
//
// waits until the server answers, /readyz answers 200 (when -metrics is
// given) and the server's status counts at least N peers up (exactly N
// with -exact); it prints "ready" and exits 0, or exits 1 with the last
// reason when the timeout passes first.
//
//	netnsclient hammer -server EP -key NAME -workers N [-key ... -workers ...]
//
// sends take requests back to back from N goroutines per key, prints
// "started" once its client is connected, and stops sending when its
// standard input is closed. Requests in flight are then answered (or time
// out) before it prints, per key, one line per window the server named,
// and a summary line:
//
//	w KEY WINDOW GO ANSWERS
//	e KEY ERRORS
//
// GO counts the go answers and ANSWERS every answer (go or sorry) labelled
// with that window; ERRORS counts requests that got no answer in time.
//
//	netnsclient record -server EP -key NAME -workers N [-key ... -workers ...] [-pace D]
//
// takes as hammer does, but after a sorry a worker pauses for the
// RETRY_MS the server named (at most D), and after an error for D, as a
// client that honours the protocol would; once stdin is closed and the
// requests in flight are done it prints every answer, in no order:
//
//	a KEY RESULT SEND RECV WINDOW
//
// RESULT is g (go), s (sorry), e (an error answer) or l (no answer in
// time); SEND is the system clock in Unix ns just before the request was
// handed to the client, RECV just after its answer came back (or the
// request failed), so the server decided it between the two; WINDOW is
// the window the answer named (0 without one).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockerd/lockerd/locker"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// keyLoad is one key to hammer and its goroutine count.
type keyLoad struct {
	name    string
	workers int
}

// keyLoads collects repeated -key and -workers flags: each -workers
// applies to the -key given before it.
type keyLoads []keyLoad

func (k *keyLoads) String() string { return fmt.Sprint(*k) }

func (k *keyLoads) Set(s string) error {
	*k = append(*k, keyLoad{name: s, workers: 1})
	return nil
}

type workersFlag struct{ k *keyLoads }

func (w workersFlag) String() string { return "" }

func (w workersFlag) Set(s string) error {
	if len(*w.k) == 0 {
		return errors.New("-workers before any -key")
	}
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil || n < 1 || n > 64 {
		return fmt.Errorf("bad -workers %q: want 1..64", s)
	}
	(*w.k)[len(*w.k)-1].workers = n
	return nil
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: netnsclient ready|hammer|record [flags]")
		return 2
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "lockerd endpoint")
	metricsAddr := fs.String("metrics", "", "ready: lockerd's metrics HOST:PORT")
	peers := fs.Int("peers", 0, "ready: peers that must be up")
	exact := fs.Bool("exact", false, "ready: exactly -peers peers up, no more")
	timeout := fs.Duration("timeout", 10*time.Second, "ready: how long to wait; hammer: how long one request may wait for its answer")
	var keys keyLoads
	fs.Var(&keys, "key", "hammer: key to take from (repeatable)")
	fs.Var(workersFlag{&keys}, "workers", "hammer: goroutines for the -key before it")
	pace := fs.Duration("pace", 100*time.Millisecond, "record: longest pause after a sorry, the pause after an error")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *server == "" {
		fmt.Fprintln(stderr, "netnsclient: -server is required")
		return 2
	}
	var err error
	switch args[0] {
	case "ready":
		err = ready(*server, *metricsAddr, *peers, *exact, *timeout)
		if err == nil {
			fmt.Fprintln(stdout, "ready")
		}
	case "hammer":
		if len(keys) == 0 {
			fmt.Fprintln(stderr, "netnsclient: hammer needs a -key")
			return 2
		}
		err = hammer(*server, keys, *timeout, stdin, stdout)
	case "record":
		if len(keys) == 0 {
			fmt.Fprintln(stderr, "netnsclient: record needs a -key")
			return 2
		}
		err = record(*server, keys, *timeout, *pace, stdin, stdout)
	default:
		fmt.Fprintf(stderr, "netnsclient: unknown mode %q\n", args[0])
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "netnsclient:", err)
		return 1
	}
	return 0
}

// ready polls the server until it is ready or the timeout passes.
func ready(server, metricsAddr string, peers int, exact bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{server}, Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		return err
	}
	defer c.Close()
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	check := func() error {
		st, err := c.Status(ctx)
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		var doc struct {
			Federation struct {
				PeersUp int `json:"peers_up"`
			} `json:"federation"`
		}
		if err := json.Unmarshal(st.Raw, &doc); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		if up := doc.Federation.PeersUp; up < peers || exact && up != peers {
			return fmt.Errorf("%d peers up, want %d", up, peers)
		}
		if metricsAddr == "" {
			return nil
		}
		resp, err := hc.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return nil
	}
	// Each check waits for answers; the pause between checks only keeps a
	// not yet ready server from being polled in a tight loop.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		case <-tick.C:
		}
	}
}

// counts is what one key's workers saw.
type counts struct {
	mu      sync.Mutex
	grants  map[int64]int64 // go answers per window
	answers map[int64]int64 // go and sorry answers per window
	errors  int64
}

// connect makes a client of server, one attempt per request, and pings
// it once, so that "started" means connected and answered.
func connect(server string, timeout time.Duration) (*locker.Client, error) {
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{server}, Timeout: timeout, Attempts: 1})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("ping: %w", err)
	}
	return c, nil
}

// hammer takes from each key back to back until stdin is closed.
func hammer(server string, keys keyLoads, timeout time.Duration, stdin io.Reader, stdout io.Writer) error {
	c, err := connect(server, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	all := make([]*counts, len(keys))
	for i, k := range keys {
		cs := &counts{grants: map[int64]int64{}, answers: map[int64]int64{}}
		all[i] = cs
		for range k.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// No context: a request in flight when stdin closes is
				// still answered and counted.
				for !stop.Load() {
					d, err := c.Take(context.Background(), k.name, 1)
					cs.mu.Lock()
					switch {
					case err != nil:
						cs.errors++
					case d.OK:
						cs.grants[d.Window]++
						cs.answers[d.Window]++
					default:
						cs.answers[d.Window]++
					}
					cs.mu.Unlock()
				}
			}()
		}
	}
	fmt.Fprintln(stdout, "started")
	io.Copy(io.Discard, bufio.NewReader(stdin))
	stop.Store(true)
	wg.Wait()
	for i, k := range keys {
		cs := all[i]
		ws := make([]int64, 0, len(cs.answers))
		for w := range cs.answers {
			ws = append(ws, w)
		}
		sort.Slice(ws, func(a, b int) bool { return ws[a] < ws[b] })
		for _, w := range ws {
			fmt.Fprintf(stdout, "w %s %d %d %d\n", k.name, w, cs.grants[w], cs.answers[w])
		}
		fmt.Fprintf(stdout, "e %s %d\n", k.name, cs.errors)
	}
	return nil
}

// answer is one request of record and what came back.
type answer struct {
	result     byte // g, s, e or l
	send, recv int64
	window     int64
}

// record takes from each key, pacing as the server asks, until stdin is
// closed, and prints every answer.
func record(server string, keys keyLoads, timeout, pace time.Duration, stdin io.Reader, stdout io.Writer) error {
	c, err := connect(server, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	n := 0
	for _, k := range keys {
		n += k.workers
	}
	all := make([][]answer, n) // one slice per worker, in key order
	i := 0
	for _, k := range keys {
		for range k.workers {
			wg.Add(1)
			go func(mine *[]answer) {
				defer wg.Done()
				for !stop.Load() {
					// No context: a request in flight when stdin
					// closes is still answered and recorded.
					send := time.Now().UnixNano()
					d, err := c.Take(context.Background(), k.name, 1)
					a := answer{send: send, recv: time.Now().UnixNano(), window: d.Window}
					var se *locker.ServerError
					var pause time.Duration
					switch {
					case errors.As(err, &se):
						a.result, pause = 'e', pace
					case err != nil:
						a.result = 'l'
					case d.OK:
						a.result = 'g'
					default:
						a.result, pause = 's', min(d.RetryAfter, pace)
					}
					*mine = append(*mine, a)
					// The load's own pacing, not a wait for an event.
					time.Sleep(pause)
				}
			}(&all[i])
			i++
		}
	}
	fmt.Fprintln(stdout, "started")
	io.Copy(io.Discard, bufio.NewReader(stdin))
	stop.Store(true)
	wg.Wait()
	w := bufio.NewWriter(stdout)
	i = 0
	for _, k := range keys {
		for range k.workers {
			for _, a := range all[i] {
				fmt.Fprintf(w, "a %s %c %d %d %d\n", k.name, a.result, a.send, a.recv, a.window)
			}
			i++
		}
	}
	return w.Flush()
}
