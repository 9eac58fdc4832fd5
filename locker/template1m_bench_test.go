package locker

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkTemplateDecision1M compares, in one run, a decision on a key
// made on demand while 1,000,000 keys made on demand are live ("live":
// one of them asked again and again) to one on a configured key of the
// same limit ("conf"), through the server's path (takeBytes), and reports
// the heap each live key takes (bytes/key). Neither decision allocates
// once the key exists. "sweep-batch" is one batch of the
// server's sweep (SweepSomeAt of sweepBatch keys) among the million keys,
// none of them idle: the longest a sweep holds the loop up; "sweep-all" is
// one SweepAt over them all, for comparison.
func BenchmarkTemplateDecision1M(b *testing.B) {
	const live = 1_000_000
	c := mustKeys(b, "conf=1000/1ms", "t:*=1000/1ms")
	now := time.Unix(1_800_000_000, 0)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var k []byte
	for i := 0; i < live; i++ {
		k = fmt.Appendf(k[:0], "t:%d", i)
		if _, _, err := c.takeBytes(now, k, 1, true); err != nil {
			b.Fatal(err)
		}
	}
	if n := c.LiveKeys(); n != live {
		b.Fatalf("%d live keys, want %d", n, live)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := float64(after.HeapAlloc-before.HeapAlloc) / live
	for _, name := range []string{"conf", "live"} {
		b.Run(name, func(b *testing.B) {
			key := []byte("conf")
			if name == "live" {
				key = []byte(fmt.Sprintf("t:%d", live/2))
			}
			ns := now.UnixNano()
			b.ReportAllocs()
			for b.Loop() {
				ns += 1000
				if _, _, err := c.takeBytes(time.Unix(0, ns), key, 1, true); err != nil {
					b.Fatal(err)
				}
			}
			if c.LiveKeys() != live {
				b.Fatalf("%d live keys after the run, want %d", c.LiveKeys(), live)
			}
			b.ReportMetric(perKey, "bytes/key")
		})
	}
	b.Run("sweep-batch", func(b *testing.B) {
		for b.Loop() {
			if n, _ := c.SweepSomeAt(now, nil, sweepBatch); n != 0 {
				b.Fatalf("swept %d keys in use", n)
			}
		}
	})
	b.Run("sweep-all", func(b *testing.B) {
		for b.Loop() {
			if n := c.SweepAt(now, nil); n != 0 {
				b.Fatalf("swept %d keys in use", n)
			}
		}
	})
}
