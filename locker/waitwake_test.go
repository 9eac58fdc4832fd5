package locker

import (
	"testing"
	"time"
)

// TestNextWakeFollowsAlgorithm checks that the server loop sleeps until
// the tokens of a queue's head come back, as the key's algorithm says,
// not until the next boundary of a fixed window: for a gcra key paced one
// token every 100ms, a wait held 80ms after a take wakes the loop 20ms
// later, where the window edge is 920ms away.
func TestNextWakeFollowsAlgorithm(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	tests := []struct {
		spec  string
		taken time.Duration // one token taken at base+taken
		now   time.Duration
		n     int64
		want  time.Duration
	}{
		{"k=10/1s/gcra:1", 0, 80 * time.Millisecond, 1, 20 * time.Millisecond},
		{"k=10/1s/gcra:1", 0, 80*time.Millisecond + 500*time.Microsecond, 1, 20 * time.Millisecond}, // 19.5ms, rounded up
		{"k=1/1s/sliding", 960 * time.Millisecond, 1010 * time.Millisecond, 1, pollInterval},
		{"k=1/1s/sliding", 960 * time.Millisecond, 1930 * time.Millisecond, 1, 30 * time.Millisecond},
		{"k=1/1s", 0, 970 * time.Millisecond, 1, 30 * time.Millisecond},
		{"k=2/1s/sliding+1/100ms/sliding", 0, 10 * time.Millisecond, 1, pollInterval},
		{"k=2/1s/sliding+1/100ms/sliding", 0, 90 * time.Millisecond, 1, 10 * time.Millisecond},
		// the later part: the 60ms one could grant, the gcra one in 30ms
		{"k=1/60ms/sliding+10/1s/gcra:1", 0, 70 * time.Millisecond, 1, 30 * time.Millisecond},
		// N above the key's smallest limit: wake now, to answer error
		{"k=2/1s/sliding+1/100ms/sliding", 0, 90 * time.Millisecond, 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			k, err := ParseKeySpec(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewServer(Config{Keys: []KeyConfig{k}})
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := s.counter.TakeAt(base.Add(tc.taken), "k", 1); !d.OK {
				t.Fatalf("first take refused: %+v", d)
			}
			now := base.Add(tc.now)
			s.enqueue([]byte("k"), "k", waiter{n: tc.n, deadline: now.Add(time.Hour)})
			if got := s.nextWake(now); got != tc.want {
				t.Fatalf("nextWake %v, want %v", got, tc.want)
			}
		})
	}
}
