package locker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// TestClientWakeups makes requests one at a time and in bursts, with
// pauses that let the client's loop fall asleep. A lost wake-up costs a
// request the loop's 100 ms tick, so 600 requests that each lost one would
// take a minute: the bound below leaves room for a slow machine but not
// for that.
func TestClientWakeups(t *testing.T) {
	c, err := locker.Dial(newBenchServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	for i := 0; i < 300; i++ {
		if _, err := c.Take(ctx, "bench", 1); err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
		if i%50 == 0 {
			time.Sleep(2 * time.Millisecond) // let the loop sleep
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
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("600 requests took %s: wake-ups are being lost", el)
	}
}
