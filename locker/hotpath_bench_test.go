package locker

import (
	"testing"
	"time"
)

// BenchmarkHotPathDecision is what the server does per take request
// between receiving the body and sending the reply: parse, look the key
// up, decide, format. It must not allocate.
func BenchmarkHotPathDecision(b *testing.B) {
	c, err := NewCounter([]KeyConfig{{Name: "bench", Limit: MaxLimit, Window: time.Millisecond}})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("take bench 1")
	buf := make([]byte, 0, 64)
	now := time.Unix(1e9, 0)
	b.ReportAllocs()
	for b.Loop() {
		req, err := parseRequest(body)
		if err != nil {
			b.Fatal(err)
		}
		_, d, err := c.takeBytes(now, req.Key, req.N, true)
		if err != nil {
			b.Fatal(err)
		}
		buf = AppendDecision(buf[:0], d, false)
	}
}

// TestHotPathAllocs keeps the decision path at zero allocations.
func TestHotPathAllocs(t *testing.T) {
	c, err := NewCounter([]KeyConfig{{Name: "bench", Limit: MaxLimit, Window: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("take bench 1")
	buf := make([]byte, 0, 64)
	now := time.Unix(1e9, 0)
	got := testing.AllocsPerRun(100, func() {
		req, _ := parseRequest(body)
		_, d, _ := c.takeBytes(now, req.Key, req.N, true)
		buf = AppendDecision(buf[:0], d, false)
	})
	if got != 0 {
		t.Errorf("allocs per decision = %v, want 0", got)
	}
}
