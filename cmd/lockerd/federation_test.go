package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// windowCounter counts the go answers per window, cluster wide.
type windowCounter struct {
	mu        sync.Mutex
	perWindow map[int64]int64
	errs      int
}

// hammer sends take requests to each endpoint from workers goroutines
// until ctx is done. The client timeout is long, so that the answers of a
// frozen server are still counted when it resumes.
func (w *windowCounter) hammer(ctx context.Context, tb testing.TB, endpoints []string, workers int, key string) *sync.WaitGroup {
	tb.Helper()
	w.perWindow = map[int64]int64{}
	var wg sync.WaitGroup
	for _, ep := range endpoints {
		c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 5 * time.Second, Attempts: 1})
		if err != nil {
			tb.Fatal(err)
		}
		for i := 0; i < workers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					d, err := c.Take(ctx, key, 1)
					w.mu.Lock()
					if err != nil {
						w.errs++
					} else if d.OK {
						w.perWindow[d.Window]++
					}
					w.mu.Unlock()
				}
			}()
		}
		wg.Add(1)
		go func() { defer wg.Done(); <-ctx.Done(); c.Close() }()
	}
	return &wg
}

// TestFederationStrictFaults runs three real lockerd processes in strict
// mode under load on all of them, kills one with SIGKILL and restarts
// it, then freezes another with SIGSTOP for 2s: no window ever grants
// more than the limit cluster wide.
func TestFederationStrictFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level federation test")
	}
	const limit = 100
	key := fmt.Sprintf("api=%d/100ms", limit)
	binds := []string{freeEndpoint(t), freeEndpoint(t), freeEndpoint(t)}
	pubs := []string{freeEndpoint(t), freeEndpoint(t), freeEndpoint(t)}
	args := func(i int) []string {
		a := []string{"--bind", binds[i], "--metrics-addr", "", "--key", key, "--id", fmt.Sprintf("n%d", i),
			"--publish", pubs[i], "--federation", "strict", "--log-level", "warn"}
		for _, p := range pubs {
			a = append(a, "--peer", p)
		}
		return a
	}
	procs := make([]*proc, 3)
	for i := range procs {
		procs[i] = startLockerd(t, binds[i], args(i)...)
	}
	// Wait until every member hears the other two.
	waitFor(t, func() bool {
		for _, ep := range binds {
			c, err := locker.Dial(ep)
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Status(context.Background())
			c.Close()
			if err != nil || strings.Count(string(st.Raw), `"up":true`) != 2 {
				return false
			}
		}
		return true
	})

	var wc windowCounter
	ctx, cancel := context.WithCancel(context.Background())
	wg := wc.hammer(ctx, t, binds, 4, "api")
	defer func() { cancel(); wg.Wait() }()
	phase := func(name string, d time.Duration) {
		time.Sleep(d) // the load runs meanwhile; nothing is awaited
		wc.mu.Lock()
		n := 0
		for _, v := range wc.perWindow {
			n += int(v)
		}
		wc.mu.Unlock()
		t.Logf("after %s: %d grants so far", name, n)
	}
	phase("steady load", time.Second)
	procs[1].cmd.Process.Signal(syscall.SIGKILL)
	procs[1].wait(t, 5*time.Second)
	phase("n1 killed", 300*time.Millisecond)
	procs[1] = startLockerd(t, binds[1], args(1)...)
	phase("n1 restarted", time.Second)
	procs[2].cmd.Process.Signal(syscall.SIGSTOP)
	phase("n2 frozen", 2*time.Second)
	procs[2].cmd.Process.Signal(syscall.SIGCONT)
	phase("n2 resumed", time.Second)
	cancel()
	wg.Wait()

	wc.mu.Lock()
	defer wc.mu.Unlock()
	var ws []int64
	var total int64
	for k, n := range wc.perWindow {
		ws = append(ws, k)
		total += n
		if n > limit {
			t.Errorf("window %d: %d grants, above the limit %d", k, n, limit)
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i] < ws[j] })
	if len(ws) < 10 {
		t.Fatalf("grants in only %d windows", len(ws))
	}
	span := ws[len(ws)-1] - ws[0] + 1
	t.Logf("%d grants in %d windows (%.0f%% of %d per window), %d client errors (killed or frozen server)",
		total, span, 100*float64(total)/float64(span*limit), limit, wc.errs)
}
