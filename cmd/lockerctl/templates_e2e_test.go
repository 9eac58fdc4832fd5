package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// TestTemplateTenantsEndToEnd runs a real lockerd with --key
// 'tenant:*=3/1s' and has 1000 distinct tenants take until sorry through
// the Go client: in the window of each tenant's sorry exactly 3 were
// granted to that tenant, and no window of any tenant has more.
func TestTemplateTenantsEndToEnd(t *testing.T) {
	ep := freeEndpoint(t)
	startLockerd(t, ep, "--key", "tenant:*=3/1s")
	c, err := locker.NewClient(locker.ClientConfig{Endpoints: []string{ep}, Timeout: 5 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const tenants, workers = 1000, 16
	var wg sync.WaitGroup
	errs := make(chan error, tenants)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs <- tenantTakes(t.Context(), c, fmt.Sprintf("tenant:%d", i))
			}
		}()
	}
	for i := 0; i < tenants; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// tenantTakes takes one token of key at a time until sorry, and checks
// the windows of the replies: exactly 3 granted in the sorry's window,
// no more than 3 in any.
func tenantTakes(ctx context.Context, c *locker.Client, key string) error {
	granted := map[int64]int{}
	for i := 0; i < 20; i++ {
		d, err := c.Take(ctx, key, 1)
		if err != nil {
			return fmt.Errorf("%s: %v", key, err)
		}
		if !d.OK {
			if granted[d.Window] != 3 {
				return fmt.Errorf("%s: sorry in window %d after %d granted in it, want 3", key, d.Window, granted[d.Window])
			}
			return nil
		}
		if granted[d.Window]++; granted[d.Window] > 3 {
			return fmt.Errorf("%s: %d granted in window %d, above the limit 3", key, granted[d.Window], d.Window)
		}
		if want := int64(3 - granted[d.Window]); d.Remaining != want {
			return fmt.Errorf("%s: go with %d remaining after %d granted, want %d", key, d.Remaining, granted[d.Window], want)
		}
	}
	return fmt.Errorf("%s: no sorry in 20 takes", key)
}

// TestMaxKeysEndToEnd runs a real lockerd with --max-keys 10: ten
// tenants are granted, the eleventh gets an error that names the cap
// (lockerctl exits 2, never 0), and the ten keep answering.
func TestMaxKeysEndToEnd(t *testing.T) {
	t.Setenv("LOCKER_SERVER", "")
	ep := freeEndpoint(t)
	startLockerd(t, ep, "--key", "tenant:*=3/1h", "--max-keys", "10")
	s := "--server=" + ep
	for i := 0; i < 10; i++ {
		if code, out, errOut := runCtl(t, t.Context(), "probe", "-k", "tenant:"+strconv.Itoa(i), s); code != exitGo || !strings.HasPrefix(out, "go 2 ") {
			t.Fatalf("tenant %d: exit %d, %q %q", i, code, out, errOut)
		}
	}
	code, out, errOut := runCtl(t, t.Context(), "probe", "-k", "tenant:10", s)
	if code != exitError || out != "" || !strings.Contains(errOut, "too many live keys made on demand (--max-keys 10)") {
		t.Fatalf("eleventh tenant: exit %d, stdout %q, stderr %q; want exit %d and the cap named", code, out, errOut, exitError)
	}
	if code, out, _ := runCtl(t, t.Context(), "probe", "-k", "tenant:0", s); code != exitGo || !strings.HasPrefix(out, "go 1 ") {
		t.Fatalf("a live tenant after the refusal: exit %d, %q", code, out)
	}
	if code, out, _ := runCtl(t, t.Context(), "status", "-k", "tenant:10", s); code != exitGo || !strings.Contains(out, "not live") {
		t.Fatalf("status of the refused tenant: exit %d, %q", code, out)
	}
}

// TestSlidingAndGCRAThroughLockerctl runs a real lockerd with a sliding
// key and a gcra key of burst 1, and checks the fields of lockerctl probe
// and wait against each algorithm's definition: a sliding go's RESET_MS
// is the window, its sorry's RETRY_MS at most the window; a gcra:1 go
// leaves nothing and its RESET_MS is the spacing, its sorry's RETRY_MS at
// most the spacing; wait is granted after a sorry; N above the burst is an
// error that names it.
func TestSlidingAndGCRAThroughLockerctl(t *testing.T) {
	t.Setenv("LOCKER_SERVER", "")
	ep := freeEndpoint(t)
	startLockerd(t, ep, "--key", "s=2/3s/sliding", "--key", "g=2/4s/gcra:1")
	s := "--server=" + ep
	type fields struct {
		word string
		a, b int64 // REMAINING RESET_MS for go, RETRY_MS WINDOW for sorry
	}
	ctl := func(args ...string) (int, fields) {
		t.Helper()
		code, out, errOut := runCtl(t, t.Context(), append(args, s)...)
		f := strings.Fields(out)
		if code == exitError || len(f) < 3 {
			t.Fatalf("lockerctl %v: exit %d, %q %q", args, code, out, errOut)
		}
		a, _ := strconv.ParseInt(f[1], 10, 64)
		b, _ := strconv.ParseInt(f[2], 10, 64)
		return code, fields{f[0], a, b}
	}
	if _, f := ctl("probe", "-k", "s"); f != (fields{"go", 1, 3000}) {
		t.Fatalf("first sliding probe: %+v, want go 1 3000", f)
	}
	if _, f := ctl("probe", "-k", "s"); f != (fields{"go", 0, 3000}) {
		t.Fatalf("second sliding probe: %+v, want go 0 3000", f)
	}
	if code, f := ctl("probe", "-k", "s"); code != exitSorry || f.word != "sorry" || f.a < 1 || f.a > 3000 {
		t.Fatalf("third sliding probe: exit %d %+v, want sorry with RETRY_MS in 1..3000", code, f)
	}
	if code, f := ctl("wait", "-k", "s"); code != exitGo || f.word != "go" || f.b != 3000 || f.a > 1 {
		t.Fatalf("sliding wait: exit %d %+v, want go with RESET_MS 3000", code, f)
	}
	if _, f := ctl("probe", "-k", "g"); f != (fields{"go", 0, 2000}) {
		t.Fatalf("first gcra:1 probe: %+v, want go 0 2000 (burst 1, a token back every 2000ms)", f)
	}
	if code, f := ctl("probe", "-k", "g"); code != exitSorry || f.word != "sorry" || f.a < 1 || f.a > 2000 {
		t.Fatalf("second gcra:1 probe: exit %d %+v, want sorry with RETRY_MS in 1..2000", code, f)
	}
	if code, f := ctl("wait", "-k", "g"); code != exitGo || f != (fields{"go", 0, 2000}) {
		t.Fatalf("gcra:1 wait: exit %d %+v, want go 0 2000", code, f)
	}
	code, _, errOut := runCtl(t, t.Context(), "probe", "-k", "g", "-n", "2", s)
	if code != exitError || !strings.Contains(errOut, "N 2 above the limit 1 of key g (the burst of its limit 2/4s/gcra:1)") {
		t.Fatalf("N above the burst: exit %d, %q", code, errOut)
	}
}
