package locker_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// BenchmarkClientAlgorithms is a take through one Go client shared by 64
// goroutines, on a key of each algorithm of one server, in one run, so
// that the algorithms compare on the same loaded machine: decisions per
// second of sliding and gcra against fixed. The algorithms take turns, in
// three rounds (r1/fixed, r1/sliding, r1/gcra, r2/fixed, ...), so that a
// change of the machine's load falls on each alike. The limits are far
// above what the loop can grant in a window, so every reply is a go.
func BenchmarkClientAlgorithms(b *testing.B) {
	keys := []locker.KeyConfig{
		mustSpec(b, "fixed=1000000000/1ms"),
		mustSpec(b, "sliding=100000/1ms/sliding"),
		mustSpec(b, "gcra=1000000000/1ms/gcra"),
	}
	srv := lockertest.NewServer(b, locker.Config{Keys: keys})
	c, err := locker.Dial(srv.Endpoint)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const goroutines = 64
	for round := 1; round <= 3; round++ {
		for _, k := range keys {
			b.Run(fmt.Sprintf("r%d/%s", round, k.Name), func(b *testing.B) {
				b.SetParallelism(max(1, goroutines/runtime.GOMAXPROCS(0)))
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := c.Take(ctx, k.Name, 1); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
