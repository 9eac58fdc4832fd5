package locker_test

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/lockerd/lockerd/locker"
)

// BenchmarkClientLockCycle measures acquire-and-release cycles through
// the Go client against an in-process server on loopback: one goroutine;
// 64 goroutines each on its own lock; 16 goroutines contending for one
// lock (the server hands it over from one to the next in its queue).
//
//	go test -run '^$' -bench ClientLockCycle -benchtime 5000x ./locker/
func BenchmarkClientLockCycle(b *testing.B) {
	for _, bc := range []struct {
		name       string
		goroutines int
		shared     bool // all on one lock
	}{
		{"1", 1, false},
		{"64-own-locks", 64, false},
		{"16-one-lock", 16, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, c := lockServer(b, locker.LockTableConfig{})
			ctx := context.Background()
			per := b.N / bc.goroutines
			b.ResetTimer()
			var wg sync.WaitGroup
			for g := range bc.goroutines {
				name := "own-" + strconv.Itoa(g)
				if bc.shared {
					name = "one"
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range per {
						l, err := c.Lock(ctx, name, locker.LockOptions{})
						if err != nil {
							b.Error(err)
							return
						}
						if err := l.Unlock(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
