package locker

import (
	"fmt"
	"runtime"
	"sort"
	"testing"
	"time"
)

// BenchmarkTemplateDecision1M compares, in one run and for each algorithm,
// a decision on a key made on demand while 1,000,000 keys made on demand
// are live ("live": one of them asked again and again) to one on a
// configured key of the same limit ("conf"), through the server's path
// (takeBytes), and reports the heap each live key takes (bytes/key).
// "conf" and "live" report each one's ns/op and allocs/op. "rN/pairs"
// (three rounds) alternates the two in blocks of pairBlock decisions,
// conf then live, and reports the median over the pairs of live/conf
// (the time of a live block over that of the conf block just before it)
// and each one's median ns per decision: on a loaded machine a pause or
// a change of load falls on both blocks of a pair alike. Both keys are
// warmed first, so neither decision allocates; every decision must be a
// go (the clock moves 2µs a take, half the limit), so that each algorithm
// does its whole work. bench/run.sh reports the ratios. "sweep-batch" is
// one batch of the server's sweep (SweepSomeAt of sweepBatch keys) among
// the million keys, none of them idle: the longest a sweep holds the loop
// up; "sweep-all" is one SweepAt over them all, for comparison.
func BenchmarkTemplateDecision1M(b *testing.B) {
	for _, alg := range []string{"fixed", "sliding", "gcra"} {
		b.Run(alg, func(b *testing.B) { templateDecision1M(b, alg) })
	}
}

// pairBlock is how many decisions on one key make a block of a pair in
// BenchmarkTemplateDecision1M: enough that reading the clock costs little
// beside them, few enough that a block takes some tens of µs.
const pairBlock = 256

// medianOf sorts v and returns its median (0 when empty).
func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func templateDecision1M(b *testing.B, alg string) {
	const live = 1_000_000
	spec := "1000/1ms/" + alg
	c := mustKeys(b, "conf="+spec, "t:*="+spec)
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
	keys := map[string][]byte{"conf": []byte("conf"), "live": []byte(fmt.Sprintf("t:%d", live/2))}
	ns := now.UnixNano()
	take := func(b *testing.B, key []byte) {
		ns += 2000
		_, d, err := c.takeBytes(time.Unix(0, ns), key, 1, true)
		if err != nil {
			b.Fatal(err)
		}
		if !d.OK {
			b.Fatalf("%s: sorry at %d ns", key, ns)
		}
	}
	// Grow a sliding key's ring to what the run needs, so that the
	// rounds measure decisions, not the ring's first growth.
	for i := 0; i < 2000; i++ {
		take(b, keys["conf"])
		take(b, keys["live"])
	}
	for _, name := range []string{"conf", "live"} {
		b.Run(name, func(b *testing.B) {
			key := keys[name]
			b.ReportAllocs()
			for b.Loop() {
				take(b, key)
			}
			if c.LiveKeys() != live {
				b.Fatalf("%d live keys after the run, want %d", c.LiveKeys(), live)
			}
			b.ReportMetric(perKey, "bytes/key")
		})
	}
	for round := 1; round <= 3; round++ {
		b.Run(fmt.Sprintf("r%d/pairs", round), func(b *testing.B) {
			// Room for the pairs of a few seconds, made before the
			// loop so that the loop allocates nothing of its own.
			const maxPairs = 1 << 18
			conf, liv, ratio := make([]float64, 0, maxPairs), make([]float64, 0, maxPairs), make([]float64, 0, maxPairs)
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				for range pairBlock {
					take(b, keys["conf"])
				}
				t1 := time.Now()
				for range pairBlock {
					take(b, keys["live"])
				}
				t2 := time.Now()
				if len(conf) < maxPairs {
					a, l := float64(t1.Sub(t0)), float64(t2.Sub(t1))
					conf, liv, ratio = append(conf, a/pairBlock), append(liv, l/pairBlock), append(ratio, l/a)
				}
			}
			b.ReportMetric(medianOf(ratio), "live/conf")
			b.ReportMetric(medianOf(conf), "conf-ns/decision")
			b.ReportMetric(medianOf(liv), "live-ns/decision")
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
