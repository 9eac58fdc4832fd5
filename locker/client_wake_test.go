package locker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// TestClientWakeups makes requests one at a time and in bursts, with
// pauses that let the client's loop fall asleep, and counts the times the
// loop found a call queued after sleeping its whole timeout: each is a
// lost wake-up that cost a request the loop's tick. A call that comes just
// as a tick ends is counted too, so a few are allowed; lost wake-ups are
// one per sleep, hundreds here.
func TestClientWakeups(t *testing.T) {
	c, err := locker.Dial(newBenchServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for i := 0; i < 300; i++ {
		if _, err := c.Take(ctx, "bench", 1); err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
		if i%50 == 0 {
			// Let the loop sleep its whole tick, with nothing pending.
			ticks := locker.ClientTicks(c)
			lockertest.WaitFor(t, func() bool { return locker.ClientTicks(c) > ticks })
		}
	}
	for burst := 0; burst < 10; burst++ {
		var wg sync.WaitGroup
		errs := make(chan error, 30)
		for g := 0; g < 30; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Take(ctx, "bench", 1); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("burst %d: %v", burst, err)
		}
	}
	if n := locker.ClientLateWakeups(c); n > 3 {
		t.Errorf("the loop found a call queued after a full tick %d times in 600 requests: wake-ups are being lost", n)
	}
}
