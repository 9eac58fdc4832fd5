package locker

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// benchLiveKeys is how many keys made on demand the benchmarks keep live.
const benchLiveKeys = 200_000

// BenchmarkTemplateKeys compares a decision on a key made on demand, with
// benchLiveKeys live, to one on a configured key of the same limit, in one
// run, through the server's path (takeBytes); and reports the heap each
// live key takes (bytes/key), for each algorithm. "live" asks one live key
// again and again, as "conf" asks the configured key; "live-spread" asks
// every live key in turn, so most of its cost is cache misses.
func BenchmarkTemplateKeys(b *testing.B) {
	for _, alg := range []string{"", "/sliding", "/gcra"} {
		spec := "1000/1ms" + alg
		c := mustKeys(b, "conf="+spec, "t:*="+spec)
		now := time.Unix(1_800_000_000, 0)
		names := make([][]byte, benchLiveKeys)
		for i := range names {
			names[i] = []byte(fmt.Sprintf("t:%d", i))
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, k := range names {
			c.takeBytes(now, k, 1, true)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perKey := float64(after.HeapAlloc-before.HeapAlloc) / benchLiveKeys
		for _, key := range []string{"conf", "live", "live-spread"} {
			b.Run(spec+"/"+key, func(b *testing.B) {
				ns := now.UnixNano()
				k := []byte("conf")
				if key == "live" {
					k = names[len(names)/2]
				}
				i := 0
				b.ReportAllocs()
				for b.Loop() {
					ns += 1000
					if key == "live-spread" {
						k = names[i]
						i++
						if i == len(names) {
							i = 0
						}
					}
					if _, _, err := c.takeBytes(time.Unix(0, ns), k, 1, true); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(perKey, "bytes/key")
			})
		}
		runtime.KeepAlive(names)
	}
}
