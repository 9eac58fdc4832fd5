package peer

import (
	"testing"

	"github.com/lockerd/lockerd/locker"
)

// TestConfigDigestCoversTheWholeSpec gives members keys that differ only
// in algorithm, burst, a further limit or a template: each gives another
// digest, so members that disagree on them notice; the same spec written
// two ways gives the same digest.
func TestConfigDigestCoversTheWholeSpec(t *testing.T) {
	digest := func(specs ...string) uint64 {
		t.Helper()
		var keys []locker.KeyConfig
		for _, s := range specs {
			k, err := locker.ParseKeySpec(s)
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
		return configDigest(true, []string{"a", "b"}, keys)
	}
	base := digest("api=10/1s")
	for _, other := range [][]string{
		{"api=10/1s/sliding"},
		{"api=10/1s/gcra"},
		{"api=10/1s+100/1m"},
		{"api=10/1s", "t:*=10/1s"},
		{"api=11/1s"},
		{"api=10/2s"},
	} {
		if digest(other...) == base {
			t.Errorf("%v has the digest of api=10/1s", other)
		}
	}
	if digest("g=10/1s/gcra:2") == digest("g=10/1s/gcra:3") {
		t.Error("gcra bursts 2 and 3 have one digest")
	}
	if digest("api=10/1s/fixed") != base || digest("api=10/1000ms") != base {
		t.Error("one spec written two ways has two digests")
	}
}
