package locker_test

import (
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// BenchmarkHeldWaitMemory starts a server with its clock stopped, spends
// its key, holds heldWaits wait requests on it, and reports the Go heap
// they keep per held wait (queue included), with the two ordinary
// envelopes: a REQ socket's (routing id and empty delimiter; sent here
// from a DEALER as ["", body], which the server cannot tell apart) and a
// DEALER's with an 8-byte request id and a delimiter. Run it with:
//
//	go test -run '^$' -bench BenchmarkHeldWaitMemory -benchtime 3x ./locker/
func BenchmarkHeldWaitMemory(b *testing.B) {
	const heldWaits = 5000
	for _, form := range []struct {
		name string
		env  func(i uint64) []any
	}{
		{"REQ envelope", func(uint64) []any { return []any{""} }},
		{"DEALER request id", func(i uint64) []any {
			var id [8]byte
			binary.BigEndian.PutUint64(id[:], i)
			return []any{id[:], ""}
		}},
	} {
		b.Run(form.name, func(b *testing.B) {
			var sum float64
			for b.Loop() {
				sum += heldWaitBytes(b, heldWaits, form.env)
			}
			b.ReportMetric(sum/float64(b.N), "bytes/wait")
		})
	}
}

// heldWaitBytes holds n waits with the envelopes env makes on a fresh
// server and returns the heap they keep, per wait.
func heldWaitBytes(b *testing.B, n int, env func(i uint64) []any) float64 {
	clock := &fakeClock{}
	clock.Set(time.Unix(1_800_000_000, 0))
	srv, stop := startServer(b, locker.Config{Endpoints: []string{"tcp://127.0.0.1:*"}, Now: clock.Now,
		MaxWaiters: n, Keys: []locker.KeyConfig{{Name: "api", Limit: 1, Window: time.Hour}}})
	defer stop()
	d := mustDealer(b, srv.Endpoints()[0])
	d.SetSndhwm(0)
	if _, err := d.SendMessage("", "take api"); err != nil {
		b.Fatal(err)
	}
	if _, err := d.RecvMessage(0); err != nil {
		b.Fatal(err)
	}
	before := heapInUse()
	for j := uint64(0); j < uint64(n); j++ {
		if _, err := d.SendMessage(append(env(j), "wait api 1 600000")...); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, func() bool { return lockertest.Waiters(srv, "api") == int64(n) })
	return float64(int64(heapInUse())-int64(before)) / float64(n)
}

// heapInUse returns the bytes of live Go heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
