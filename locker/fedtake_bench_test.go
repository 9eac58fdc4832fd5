package locker_test

import (
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// BenchmarkFederatedTake is one Counter decision on a federated key of
// one fixed window, configured ("conf") or made on demand ("live"), in
// strict and shared mode: the path through the key's federation state.
// 500 tokens per 1ms among 2 members, the clock 1µs on per take, so that
// windows roll over and takes are refused too. Once the key is made, no
// take allocates.
func BenchmarkFederatedTake(b *testing.B) {
	for _, strict := range []bool{true, false} {
		mode := "shared"
		if strict {
			mode = "strict"
		}
		for _, key := range []string{"conf", "t:1"} {
			name := mode + "/conf"
			if key != "conf" {
				name = mode + "/live"
			}
			b.Run(name, func(b *testing.B) {
				c := mustCounter(b, mustSpec(b, "conf=500/1ms"), mustSpec(b, "t:*=500/1ms"))
				if err := c.EnableFederation(locker.FederationConfig{Strict: strict, Members: 2, Rank: 0}); err != nil {
					b.Fatal(err)
				}
				ns := time.Unix(1_800_000_000, 0).UnixNano()
				for i := 0; i < 2000; i++ {
					ns += 1000
					c.TakeAt(time.Unix(0, ns), key, 1)
				}
				b.ReportAllocs()
				for b.Loop() {
					ns += 1000
					if _, err := c.TakeAt(time.Unix(0, ns), key, 1); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
