package locker_test

import (
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// BenchmarkAlgorithmTake is one Counter decision on a key of each
// algorithm, in the same run so that they can be compared: 500 tokens per
// 1ms, the clock advancing 1µs per take (half the takes are refused, and
// windows roll over). Once the key has seen its limit, no take allocates.
func BenchmarkAlgorithmTake(b *testing.B) {
	for _, spec := range []string{
		"k=500/1ms",
		"k=500/1ms/sliding",
		"k=500/1ms/gcra",
		"k=500/1ms/gcra:1",
		"k=500/1ms/sliding+5000/1s/gcra",
	} {
		b.Run(spec[2:], func(b *testing.B) {
			k, err := locker.ParseKeySpec(spec)
			if err != nil {
				b.Fatal(err)
			}
			c := mustCounter(b, k)
			ns := time.Unix(1_800_000_000, 0).UnixNano()
			for i := 0; i < 2000; i++ { // grow a sliding ring to its limit
				ns += 1000
				c.TakeAt(time.Unix(0, ns), "k", 1)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				ns += 1000
				if _, err := c.TakeAt(time.Unix(0, ns), "k", 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
