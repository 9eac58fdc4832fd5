package locker_test

import (
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// BenchmarkCounterTake is one decision of the counter, with the clock
// advancing 1µs per take through 1 ms windows so that windows roll over.
func BenchmarkCounterTake(b *testing.B) {
	c := mustCounter(b, locker.KeyConfig{Name: "api", Limit: 500, Window: time.Millisecond})
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		ns := time.Unix(1_800_000_000, 0).UnixNano()
		for b.Loop() {
			ns += 1000
			if _, err := c.TakeAt(time.Unix(0, ns), "api", 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		now := time.Unix(1_800_000_000, 0)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.TakeAt(now, "api", 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("unknown-key", func(b *testing.B) {
		b.ReportAllocs()
		now := time.Unix(1_800_000_000, 0)
		for b.Loop() {
			c.TakeAt(now, "nope", 1)
		}
	})
}

// BenchmarkParseRequest parses the common request forms.
func BenchmarkParseRequest(b *testing.B) {
	for _, body := range []string{"take api", "wait some-key 3 1500", "let me go"} {
		b.Run(body, func(b *testing.B) {
			buf := []byte(body)
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := locker.ParseRequest(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendDecision formats full go and sorry replies into a
// reused buffer.
func BenchmarkAppendDecision(b *testing.B) {
	decisions := map[string]locker.Decision{
		"go":    {OK: true, Remaining: 123456, Reset: 812 * time.Millisecond, Window: 2244384793},
		"sorry": {Reset: 812 * time.Millisecond, RetryAfter: 812 * time.Millisecond, Window: 2244384793},
	}
	for name, d := range decisions {
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			for b.Loop() {
				buf = locker.AppendDecision(buf[:0], d, false)
			}
		})
	}
}
