package locker_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// lockServer runs an in-process server that grants locks at once.
func lockServer(tb testing.TB, cfg locker.LockTableConfig) (*lockertest.Server, *locker.Client) {
	tb.Helper()
	cfg.NoGrace = true
	srv := lockertest.NewServer(tb, locker.Config{Locks: cfg})
	return srv, lockertest.NewClient(tb, locker.ClientConfig{Endpoints: []string{srv.Endpoint}})
}

// waitersOfLock returns the owners queued for the lock name.
func waitersOfLock(tb testing.TB, c *locker.Client, name string) []string {
	tb.Helper()
	ls, err := c.Locks(context.Background(), name)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		for _, w := range l.Waiters {
			out = append(out, w.Owner)
		}
	}
	return out
}

// TestClientLockTryLockUnlock: a held lock refuses TryLock with who holds
// it; once unlocked it is granted again, with a higher fence.
func TestClientLockTryLockUnlock(t *testing.T) {
	_, c := lockServer(t, locker.LockTableConfig{})
	ctx := context.Background()
	l, err := c.Lock(ctx, "nightly", locker.LockOptions{Owner: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Name() != "nightly" || l.Fence() <= 0 {
		t.Fatalf("lease %s fence %d", l.Name(), l.Fence())
	}
	_, err = c.TryLock(ctx, "nightly", locker.LockOptions{Owner: "second"})
	var busy *locker.LockBusyError
	if !errors.Is(err, locker.ErrLockBusy) || !errors.As(err, &busy) || busy.Owner != "first" || busy.Holders != 1 || busy.FreeIn <= 0 {
		t.Fatalf("TryLock of a held lock: %v, want busy held by first", err)
	}
	ls, err := c.Locks(ctx, "")
	if err != nil || len(ls) != 1 || len(ls[0].Holders) != 1 || ls[0].Holders[0].Owner != "first" || ls[0].Holders[0].Fence != l.Fence() || ls[0].Mode != "exclusive" {
		t.Fatalf("Locks: %+v %v", ls, err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err == nil {
		t.Fatal("second Unlock: no error")
	}
	l2, err := c.TryLock(ctx, "nightly", locker.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Unlock(ctx)
	if l2.Fence() <= l.Fence() {
		t.Fatalf("fence %d after %d", l2.Fence(), l.Fence())
	}
	if ls, _ := c.Locks(ctx, "nightly"); ls[0].Holders[0].Owner != locker.DefaultLockOwner() {
		t.Fatalf("default owner %q, want %q", ls[0].Holders[0].Owner, locker.DefaultLockOwner())
	}
}

// TestClientLockFIFO: waiters get the lock in the order they asked, each
// with a higher fence.
func TestClientLockFIFO(t *testing.T) {
	_, c := lockServer(t, locker.LockTableConfig{})
	ctx := context.Background()
	first, err := c.Lock(ctx, "q", locker.LockOptions{Owner: "holder"})
	if err != nil {
		t.Fatal(err)
	}
	owners := []string{"w0", "w1", "w2", "w3"}
	got := make(chan *locker.Lease, len(owners))
	for i, o := range owners {
		go func() {
			l, err := c.Lock(ctx, "q", locker.LockOptions{Owner: o})
			if err != nil {
				t.Error(err)
				got <- nil
				return
			}
			got <- l
		}()
		// Queue them one after the other.
		lockertest.WaitFor(t, func() bool { return len(waitersOfLock(t, c, "q")) == i+1 })
	}
	if w := waitersOfLock(t, c, "q"); len(w) != 4 || w[0] != "w0" || w[3] != "w3" {
		t.Fatalf("queue %v", w)
	}
	prev := first.Fence()
	next := first
	for _, want := range owners {
		if err := next.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		next = <-got
		if next == nil {
			t.FailNow()
		}
		ls, _ := c.Locks(ctx, "q")
		if h := ls[0].Holders[0]; h.Owner != want || h.Fence != next.Fence() || next.Fence() <= prev {
			t.Fatalf("holder %+v (fence %d after %d), want %s", h, next.Fence(), prev, want)
		}
		prev = next.Fence()
	}
	next.Unlock(ctx)
}

// TestClientLockCancelLeavesQueue: a Lock whose context ends withdraws
// its queued acquisition, so the lock goes to the next waiter.
func TestClientLockCancelLeavesQueue(t *testing.T) {
	_, c := lockServer(t, locker.LockTableConfig{})
	ctx := context.Background()
	held, err := c.Lock(ctx, "q", locker.LockOptions{Owner: "holder"})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Lock(cctx, "q", locker.LockOptions{Owner: "quitter"})
		errc <- err
	}()
	lockertest.WaitFor(t, func() bool { return len(waitersOfLock(t, c, "q")) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Lock: %v", err)
	}
	lockertest.WaitFor(t, func() bool { return len(waitersOfLock(t, c, "q")) == 0 })
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := c.TryLock(ctx, "q", locker.LockOptions{})
	if err != nil {
		t.Fatalf("after the holder left and the waiter quit: %v", err)
	}
	l.Unlock(ctx)
}

// TestClientLockContextDeadlineBusy: a Lock that runs out of time says
// both that its context ended and who holds the lock, once the server
// answered that it is busy. The server holds an acquisition at most 20ms,
// so it answers many times within the second Lock has (a hold as long as
// the context would race its end on a loaded machine).
func TestClientLockContextDeadlineBusy(t *testing.T) {
	_, c := lockServer(t, locker.LockTableConfig{MaxWait: 20 * time.Millisecond})
	held, err := c.Lock(context.Background(), "q", locker.LockOptions{Owner: "holder"})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = c.Lock(ctx, "q", locker.LockOptions{})
	var busy *locker.LockBusyError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &busy) || busy.Owner != "holder" {
		t.Fatalf("Lock past its deadline: %v, want DeadlineExceeded and busy held by holder", err)
	}
}

// TestClientLeaseRenews: a lease outlives its TTL while renewed.
func TestClientLeaseRenews(t *testing.T) {
	_, c := lockServer(t, locker.LockTableConfig{})
	ctx := context.Background()
	l, err := c.Lock(ctx, "r", locker.LockOptions{TTL: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first := l.Deadline()
	// Await three renewals, each moving the lease end on.
	for end := first; ; {
		lockertest.WaitFor(t, func() bool { return l.Deadline().After(end) || l.Err() != nil })
		if l.Err() != nil {
			t.Fatalf("lease lost while renewing: %v", l.Err())
		}
		if end = l.Deadline(); end.Sub(first) > 300*time.Millisecond {
			break
		}
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClientLeaseRevokedAndBroken: a revocation reaches the holder
// through its renewals and ends the lease; a break loses it at once.
func TestClientLeaseRevokedAndBroken(t *testing.T) {
	_, c := lockServer(t, locker.LockTableConfig{})
	ctx := context.Background()
	l, err := c.Lock(ctx, "rev", locker.LockOptions{TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.RevokeLock(ctx, "rev"); n != 1 || err != nil {
		t.Fatalf("RevokeLock: %d %v", n, err)
	}
	<-l.Revoked()
	<-l.Lost()
	if !errors.Is(l.Err(), locker.ErrLeaseRevoked) || time.Now().Before(l.Deadline()) {
		t.Fatalf("revoked lease lost with %v before its end %v", l.Err(), l.Deadline())
	}
	l2, err := c.Lock(ctx, "rev", locker.LockOptions{TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n, fence, err := c.BreakLock(ctx, "rev")
	if n != 1 || fence <= l2.Fence() || err != nil {
		t.Fatalf("BreakLock: %d %d %v (lease fence %d)", n, fence, err, l2.Fence())
	}
	<-l2.Lost()
	if !errors.Is(l2.Err(), locker.ErrLeaseBroken) {
		t.Fatalf("broken lease lost with %v", l2.Err())
	}
	if err := l2.Unlock(ctx); !errors.Is(err, locker.ErrLeaseBroken) {
		t.Fatalf("Unlock of a broken lease: %v", err)
	}
}

// TestClientLeaseLostWhenServerGone: with no server to renew it, a lease
// reports itself lost, and not before its own end.
func TestClientLeaseLostWhenServerGone(t *testing.T) {
	srv := lockertest.NewServer(t, locker.Config{Locks: locker.LockTableConfig{NoGrace: true}})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{srv.Endpoint}, Timeout: 100 * time.Millisecond})
	l, err := c.Lock(context.Background(), "gone", locker.LockOptions{TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	<-l.Lost()
	if now := time.Now(); !errors.Is(l.Err(), locker.ErrLeaseExpired) || now.Before(l.Deadline()) {
		t.Fatalf("lost with %v at %v, lease end %v", l.Err(), now, l.Deadline())
	}
}

// TestClientLockSemaphoreAndReaders: a lock of capacity 3 holds three
// shared holders and refuses a fourth; an exclusive request waits for
// all of them and keeps later readers out (first come, first served).
func TestClientLockSemaphoreAndReaders(t *testing.T) {
	_, c := lockServer(t, locker.LockTableConfig{Locks: []locker.LockSpec{{Name: "lic", Capacity: 3}}})
	ctx := context.Background()
	var held []*locker.Lease
	for range 3 {
		l, err := c.TryLock(ctx, "lic", locker.LockOptions{Shared: true})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	if _, err := c.TryLock(ctx, "lic", locker.LockOptions{Shared: true}); !errors.Is(err, locker.ErrLockBusy) {
		t.Fatalf("fourth shared holder: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var writer *locker.Lease
	go func() {
		defer wg.Done()
		var err error
		if writer, err = c.Lock(ctx, "lic", locker.LockOptions{Owner: "writer"}); err != nil {
			t.Error(err)
		}
	}()
	lockertest.WaitFor(t, func() bool { return len(waitersOfLock(t, c, "lic")) == 1 })
	held[0].Unlock(ctx)
	if _, err := c.TryLock(ctx, "lic", locker.LockOptions{Shared: true}); !errors.Is(err, locker.ErrLockBusy) {
		t.Fatalf("a reader overtook a queued writer: %v", err)
	}
	held[1].Unlock(ctx)
	held[2].Unlock(ctx)
	wg.Wait()
	if writer == nil {
		t.FailNow()
	}
	ls, _ := c.Locks(ctx, "lic")
	if ls[0].Mode != "exclusive" || len(ls[0].Holders) != 1 || ls[0].Capacity != 3 {
		t.Fatalf("after the readers: %+v", ls)
	}
	writer.Unlock(ctx)
}

// TestClientLockRefused: a federated server's refusal is a ServerError.
func TestClientLockRefused(t *testing.T) {
	srv := lockertest.NewServer(t, locker.Config{Federated: true})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{srv.Endpoint}})
	_, err := c.Lock(context.Background(), "x", locker.LockOptions{})
	var se *locker.ServerError
	if !errors.As(err, &se) || se.Msg != "locks are served by a single lockerd, not a federation" {
		t.Fatalf("Lock on a federated server: %v", err)
	}
	if _, err := c.Lock(context.Background(), "bad name", locker.LockOptions{}); err == nil {
		t.Fatal("a bad lock name was sent")
	}
}

// TestClientLockGrantAfterGiveUpReleased: a caller that gives up just as
// its acquisition is granted leaves the lock free: either the abandon
// withdrew it, or the client releases the grant that crossed it. The
// race is run many times; a lease left behind would hold the lock for its
// whole minute.
func TestClientLockGrantAfterGiveUpReleased(t *testing.T) {
	_, c := lockServer(t, locker.LockTableConfig{})
	ctx := context.Background()
	for range 20 {
		held, err := c.Lock(ctx, "race", locker.LockOptions{Owner: "holder"})
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		got := make(chan *locker.Lease, 1)
		go func() {
			l, _ := c.Lock(cctx, "race", locker.LockOptions{TTL: time.Minute, Owner: "quitter"})
			got <- l
		}()
		lockertest.WaitFor(t, func() bool { return len(waitersOfLock(t, c, "race")) == 1 })
		go held.Unlock(ctx)
		cancel()
		if l := <-got; l != nil {
			l.Unlock(ctx) // granted before it gave up: an ordinary release
		}
		lockertest.WaitFor(t, func() bool {
			ls, err := c.Locks(ctx, "race")
			return err == nil && len(ls) == 0
		})
	}
}

// TestClientLeaseAfterLongWait: a lease granted after a wait longer than
// its TTL is renewed before Lock returns, so its end is not counted from
// a request sent long before the grant.
func TestClientLeaseAfterLongWait(t *testing.T) {
	_, c := lockServer(t, locker.LockTableConfig{})
	ctx := context.Background()
	held, err := c.Lock(ctx, "slow", locker.LockOptions{Owner: "holder"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *locker.Lease, 1)
	go func() {
		l, err := c.Lock(ctx, "slow", locker.LockOptions{TTL: 100 * time.Millisecond})
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	lockertest.WaitFor(t, func() bool { return len(waitersOfLock(t, c, "slow")) == 1 })
	queued := time.Now()
	<-time.After(300 * time.Millisecond) // the scenario: a wait of three TTLs, not a synchronization
	held.Unlock(ctx)
	l := <-got
	if l == nil {
		t.FailNow()
	}
	defer l.Unlock(ctx)
	if end := l.Deadline(); !end.After(queued.Add(300 * time.Millisecond)) {
		t.Fatalf("lease end %v counted from the acquisition sent before %v", end, queued)
	}
}

// TestClientLeaseChannelsAfterLoss: Lost and Revoked, first asked for
// after the loss or revocation, return closed channels.
func TestClientLeaseChannelsAfterLoss(t *testing.T) {
	_, c := lockServer(t, locker.LockTableConfig{})
	ctx := context.Background()
	l, err := c.Lock(ctx, "late", locker.LockOptions{TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.RevokeLock(ctx, "late"); n != 1 || err != nil {
		t.Fatalf("RevokeLock: %d %v", n, err)
	}
	lockertest.WaitFor(t, func() bool { return l.Err() != nil })
	for name, ch := range map[string]<-chan struct{}{"Lost": l.Lost(), "Revoked": l.Revoked()} {
		select {
		case <-ch:
		default:
			t.Errorf("%s not closed after the revoked lease ended (%v)", name, l.Err())
		}
	}
}

// TestClientLeaseCostsNoGoroutine: a lease waiting for its first renewal
// runs no goroutine of its own.
func TestClientLeaseCostsNoGoroutine(t *testing.T) {
	_, c := lockServer(t, locker.LockTableConfig{})
	ctx := context.Background()
	before := runtime.NumGoroutine()
	var leases []*locker.Lease
	for i := range 100 {
		l, err := c.Lock(ctx, "g"+strconv.Itoa(i), locker.LockOptions{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	if n := runtime.NumGoroutine() - before; n >= 50 {
		t.Errorf("100 leases added %d goroutines", n)
	}
	for _, l := range leases {
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestClientLockLoneQueuedHandedOff: a lone caller sends its acquisition
// itself; when the server queues it, the caller hands it to the loop,
// which delivers the grant when the holder (another client) releases.
func TestClientLockLoneQueuedHandedOff(t *testing.T) {
	srv, holder := lockServer(t, locker.LockTableConfig{})
	c := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{srv.Endpoint}})
	ctx := context.Background()
	held, err := holder.Lock(ctx, "q", locker.LockOptions{Owner: "holder"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *locker.Lease, 1)
	go func() {
		l, err := c.Lock(ctx, "q", locker.LockOptions{Owner: "lone"})
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	lockertest.WaitFor(t, func() bool {
		return locker.ClientHandoffs(c) == 1 && len(waitersOfLock(t, holder, "q")) == 1
	})
	if n := locker.ClientDirect(c); n != 1 {
		t.Fatalf("%d calls sent directly, want the acquisition", n)
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l := <-got
	if l == nil {
		t.FailNow()
	}
	if l.Fence() <= held.Fence() {
		t.Errorf("fence %d after the holder's %d", l.Fence(), held.Fence())
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
