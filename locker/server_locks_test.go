package locker_test

import (
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// mustDEALER returns a DEALER socket connected to ep, closed when the test
// ends.
func mustDEALER(tb testing.TB, ep string) *zmq.Socket {
	tb.Helper()
	d, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		tb.Fatal(err)
	}
	d.SetLinger(0)
	d.SetRcvtimeo(10 * time.Second)
	if err := d.Connect(ep); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// lockReply parses a lock reply, failing the test on a bad one.
func lockReply(tb testing.TB, body string) locker.LockReply {
	tb.Helper()
	r, err := locker.ParseLockReply([]byte(body))
	if err != nil {
		tb.Fatalf("lock reply %q: %v", body, err)
	}
	return r
}

// listing returns the lock listing of name ("" for all) over s.
func listing(tb testing.TB, s *zmq.Socket, name string) []struct {
	Name    string `json:"name"`
	Holders []struct {
		Owner string `json:"owner"`
		Fence uint64 `json:"fence"`
	} `json:"holders"`
	Waiters []struct {
		Owner string `json:"owner"`
	} `json:"waiters"`
} {
	tb.Helper()
	body := "locks"
	if name != "" {
		body += " " + name
	}
	r := roundTrip(tb, s, body)
	var doc struct {
		Locks []struct {
			Name    string `json:"name"`
			Holders []struct {
				Owner string `json:"owner"`
				Fence uint64 `json:"fence"`
			} `json:"holders"`
			Waiters []struct {
				Owner string `json:"owner"`
			} `json:"waiters"`
		} `json:"locks"`
	}
	if err := json.Unmarshal([]byte(r), &doc); err != nil {
		tb.Fatalf("listing %q: %v", r, err)
	}
	return doc.Locks
}

// TestLockServerVerbs serves the lock verbs from the server's own socket:
// a grant, a refusal naming the holder, an acquisition held and granted
// by a release, renewal, and the listing.
func TestLockServerVerbs(t *testing.T) {
	var clk fakeClock
	clk.Set(time.Unix(1_800_000_000, 0))
	_, ep := newTestServer(t, locker.Config{Now: clk.Now, Locks: locker.LockTableConfig{NoGrace: true}})
	req := mustREQ(t, ep)
	d := mustDEALER(t, ep)

	first := lockReply(t, roundTrip(t, req, "acquire job exclusive 10000 0 alice"))
	if first.Status != locker.LockGranted || first.Lease != 10*time.Second {
		t.Fatalf("first acquire: %+v, want locked with 10 s", first)
	}
	busy := lockReply(t, roundTrip(t, req, "acquire job exclusive 10000 0 bob"))
	if busy.Status != locker.LockBusy || busy.Owner != "alice" || busy.Holders != 1 || busy.Free != 10*time.Second {
		t.Fatalf("second acquire: %+v, want busy held by alice, free in 10 s", busy)
	}
	send(t, d, 7, "acquire job exclusive 5000 20000 carol")
	lockertest.WaitFor(t, func() bool {
		l := listing(t, req, "job")
		return len(l) == 1 && len(l[0].Waiters) == 1 && l[0].Waiters[0].Owner == "carol"
	})
	clk.Set(clk.Now().Add(4 * time.Second))
	renewed := lockReply(t, roundTrip(t, req, "renew job "+strconv.FormatUint(first.Fence, 10)))
	if renewed.Status != locker.LockGranted || renewed.Lease != 10*time.Second {
		t.Fatalf("renew: %+v, want locked with 10 s", renewed)
	}
	if r := lockReply(t, roundTrip(t, req, "release job "+strconv.FormatUint(first.Fence, 10))); r.Status != locker.LockReleased || r.Fence != first.Fence {
		t.Fatalf("release: %+v", r)
	}
	id, body := recv(t, d)
	second := lockReply(t, body)
	if id != 7 || second.Status != locker.LockGranted || second.Fence <= first.Fence || second.Lease != 5*time.Second {
		t.Fatalf("held acquire answered %d %+v, want id 7 locked with a higher fence than %d", id, second, first.Fence)
	}
	if r := lockReply(t, roundTrip(t, req, "release job "+strconv.FormatUint(first.Fence, 10))); r.Status != locker.LockLost {
		t.Fatalf("second release of the old fence: %+v, want lost", r)
	}
	l := listing(t, req, "")
	if len(l) != 1 || len(l[0].Holders) != 1 || l[0].Holders[0].Owner != "carol" || l[0].Holders[0].Fence != second.Fence {
		t.Fatalf("listing %+v, want job held by carol", l)
	}
	// Take still works beside the locks.
	if r := roundTrip(t, req, "take default"); !strings.HasPrefix(r, "go ") {
		t.Fatalf("take: %q", r)
	}
}

// TestLockServerLeaseEndsOnItsClock: a holder that does not renew loses
// the lock at its lease end by the server's clock, and the next waiter
// gets it then, without any request to wake the loop.
func TestLockServerLeaseEndsOnItsClock(t *testing.T) {
	var clk fakeClock
	start := time.Unix(1_800_000_000, 0)
	clk.Set(start)
	_, ep := newTestServer(t, locker.Config{Now: clk.Now, Locks: locker.LockTableConfig{NoGrace: true}})
	req := mustREQ(t, ep)
	d := mustDEALER(t, ep)
	held := lockReply(t, roundTrip(t, req, "acquire job exclusive 1000 0 dies"))
	send(t, d, 1, "acquire job exclusive 1000 60000 next")
	lockertest.WaitFor(t, func() bool { l := listing(t, req, "job"); return len(l[0].Waiters) == 1 })
	clk.Set(start.Add(999 * time.Millisecond))
	if l := listing(t, req, "job"); len(l[0].Holders) != 1 || l[0].Holders[0].Owner != "dies" {
		t.Fatalf("before the lease end: %+v", l)
	}
	clk.Set(start.Add(time.Second))
	_, body := recv(t, d)
	if r := lockReply(t, body); r.Status != locker.LockGranted || r.Fence <= held.Fence {
		t.Fatalf("waiter got %q, want locked above fence %d", body, held.Fence)
	}
	if r := lockReply(t, roundTrip(t, req, "renew job "+strconv.FormatUint(held.Fence, 10))); r.Status != locker.LockLost {
		t.Fatalf("renewal after the lease end: %+v, want lost", r)
	}
}

// TestLockServerGrace: a server grants no lock before its grace period
// ends, and queues acquisitions that can wait for it.
func TestLockServerGrace(t *testing.T) {
	var clk fakeClock
	start := time.Unix(1_800_000_000, 0)
	clk.Set(start)
	_, ep := newTestServer(t, locker.Config{Now: clk.Now, Locks: locker.LockTableConfig{MaxTTL: 10 * time.Second, MaxWait: time.Minute}})
	req := mustREQ(t, ep)
	d := mustDEALER(t, ep)
	if r := lockReply(t, roundTrip(t, req, "acquire job exclusive 0 0")); r.Status != locker.LockBusy || r.Free != 10*time.Second {
		t.Fatalf("acquire in the grace period: %+v, want busy, free in 10 s", r)
	}
	send(t, d, 1, "acquire job exclusive 0 30000")
	lockertest.WaitFor(t, func() bool { l := listing(t, req, "job"); return len(l) == 1 && len(l[0].Waiters) == 1 })
	clk.Set(start.Add(4 * time.Second))
	if st := lockStatusOf(t, req); !st.Served || st.Live != 1 || st.Waiters != 1 || st.GraceMS != 6000 {
		t.Fatalf("status in the grace period: %+v", st)
	}
	clk.Set(start.Add(10 * time.Second))
	if _, body := recv(t, d); lockReply(t, body).Status != locker.LockGranted {
		t.Fatalf("after the grace period: %q, want locked", body)
	}
	if st := lockStatusOf(t, req); st.Holders != 1 || st.Waiters != 0 || st.GraceMS != 0 {
		t.Fatalf("status after the grace period: %+v", st)
	}
}

// lockStatusOf returns the locks field of a status reply over s.
func lockStatusOf(tb testing.TB, s *zmq.Socket) (st struct {
	Served                 bool
	Live, Holders, Waiters int
	GraceMS                int64 `json:"grace_ms"`
}) {
	tb.Helper()
	var doc struct {
		Locks *struct {
			Served                 bool
			Live, Holders, Waiters int
			GraceMS                int64 `json:"grace_ms"`
		}
	}
	r := roundTrip(tb, s, "status")
	if err := json.Unmarshal([]byte(r), &doc); err != nil || doc.Locks == nil {
		tb.Fatalf("status %q: no locks field (%v)", r, err)
	}
	return *doc.Locks
}

// TestLockServerAbandon: abandon withdraws the acquisition held with the
// same envelope, and no other.
func TestLockServerAbandon(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{Locks: locker.LockTableConfig{NoGrace: true}})
	req := mustREQ(t, ep)
	d := mustDEALER(t, ep)
	roundTrip(t, req, "acquire job")
	send(t, d, 7, "acquire job exclusive 0 60000 seven")
	send(t, d, 8, "acquire job exclusive 0 60000 eight")
	lockertest.WaitFor(t, func() bool { return len(listing(t, req, "job")[0].Waiters) == 2 })
	send(t, d, 7, "abandon job")
	if id, body := recv(t, d); id != 7 || body != "abandoned 1" {
		t.Fatalf("abandon: %d %q, want 7 \"abandoned 1\"", id, body)
	}
	send(t, d, 7, "abandon job")
	if id, body := recv(t, d); id != 7 || body != "abandoned 0" {
		t.Fatalf("second abandon: %d %q, want 7 \"abandoned 0\"", id, body)
	}
	if w := listing(t, req, "job")[0].Waiters; len(w) != 1 || w[0].Owner != "eight" {
		t.Fatalf("waiters %+v, want only eight", w)
	}
}

// TestLockServerAnswersHeldAtShutdown: queued acquisitions are answered
// busy when the server stops, like held waits.
func TestLockServerAnswersHeldAtShutdown(t *testing.T) {
	srv, stop := startServer(t, locker.Config{Endpoints: []string{"tcp://127.0.0.1:*"}, Locks: locker.LockTableConfig{NoGrace: true}})
	ep := srv.Endpoints()[0]
	req := mustREQ(t, ep)
	d := mustDEALER(t, ep)
	roundTrip(t, req, "acquire job")
	send(t, d, 3, "acquire job exclusive 0 60000")
	lockertest.WaitFor(t, func() bool { return len(listing(t, req, "job")[0].Waiters) == 1 })
	stop()
	if id, body := recv(t, d); id != 3 || lockReply(t, body).Status != locker.LockBusy {
		t.Fatalf("at shutdown: %d %q, want 3 busy", id, body)
	}
}

// TestLockServerRefusals: the errors of the lock verbs, a federated
// server, and an acquisition too large to hold.
func TestLockServerRefusals(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{Locks: locker.LockTableConfig{NoGrace: true, MaxLocks: 1}})
	_, fed := newTestServer(t, locker.Config{Federated: true, Locks: locker.LockTableConfig{NoGrace: true}})
	req, fedReq := mustREQ(t, ep), mustREQ(t, fed)
	roundTrip(t, req, "acquire one")
	long := strings.Repeat("x", 64)
	for _, tc := range []struct {
		sock       *zmq.Socket
		body, want string
	}{
		{req, "acquire", "error missing lock name"},
		{req, "acquire a$b", "error bad key name: 1 to 128 characters of A-Za-z0-9_.:/-"},
		{req, "acquire two", "error too many live locks"},
		{req, "renew one", "error missing fence"},
		{req, "acquire one both", "error MODE must be exclusive or shared"},
		{req, "acquire one exclusive 0 1000 " + long + " x", "error too many arguments"},
		{fedReq, "acquire one", "error locks are served by a single lockerd, not a federation"},
		{fedReq, "locks", "error locks are served by a single lockerd, not a federation"},
	} {
		if got := roundTrip(t, tc.sock, tc.body); got != tc.want {
			t.Errorf("%.40q: got %q, want %q", tc.body, got, tc.want)
		}
	}
	if st := lockStatusOf(t, fedReq); st.Served {
		t.Fatalf("a federated server's status says it serves locks: %+v", st)
	}
	// The held-bytes bound of held waits applies to acquisitions.
	d := mustDEALER(t, ep)
	pad := strings.Repeat("p", locker.MaxHeldBytes)
	if _, err := d.SendMessage(pad, "", "acquire one exclusive 0 1000"); err != nil {
		t.Fatal(err)
	}
	msg, err := d.RecvMessage(0)
	if err != nil || msg[len(msg)-1] != "error request too large to hold: more than 512 bytes of envelope and body" {
		t.Fatalf("large acquire: %q %v", msg, err)
	}
}

// lockObs records what a LockObserver is told.
type lockObs struct {
	mu  sync.Mutex
	got map[string]int
}

func (o *lockObs) ObserveRequest(string, locker.Outcome, time.Duration) {}

func (o *lockObs) ObserveLock(label string, out locker.LockOutcome, held time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got[label+" "+out.String()]++
}

func (o *lockObs) count(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.got[k]
}

// TestLockServerObserverLabels: locks are labelled by configured names
// and templates, and "other" for names made on demand; the stats count
// holders and waiters under the same labels.
func TestLockServerObserverLabels(t *testing.T) {
	obs := &lockObs{got: map[string]int{}}
	srv, ep := newTestServer(t, locker.Config{Observer: obs, Locks: locker.LockTableConfig{NoGrace: true,
		Locks: []locker.LockSpec{{Name: "licence", Capacity: 2}, {Name: "job:", Template: true, Capacity: 1}}}})
	req := mustREQ(t, ep)
	d := mustDEALER(t, ep)
	roundTrip(t, req, "acquire licence shared")
	roundTrip(t, req, "acquire job:nightly")
	f := lockReply(t, roundTrip(t, req, "acquire made-up-name")).Fence
	roundTrip(t, req, "acquire job:nightly exclusive 0 0")
	send(t, d, 1, "acquire job:nightly exclusive 0 60000")
	lockertest.WaitFor(t, func() bool { return len(listing(t, req, "job:nightly")[0].Waiters) == 1 })
	roundTrip(t, req, "release made-up-name "+strconv.FormatUint(f, 10))
	for k, want := range map[string]int{"licence granted": 1, "job:* granted": 1, "job:* busy": 1, "other granted": 1, "other released": 1} {
		if got := obs.count(k); got != want {
			t.Errorf("observed %q %d times, want %d", k, got, want)
		}
	}
	stats, live := srv.LockStats()
	byLabel := map[string]locker.ServerLockStats{}
	for _, s := range stats {
		byLabel[s.Label] = s
	}
	if live != 2 || byLabel["licence"].Holders != 1 || byLabel["job:*"].Holders != 1 || byLabel["job:*"].Waiters != 1 || byLabel["other"].Holders != 0 || len(byLabel) != 3 {
		t.Fatalf("stats %+v live %d", stats, live)
	}
}

// TestLockServerManyNamesMemoryReturns: 100k distinct lock names
// acquired and released leave the table empty and the heap where it
// started.
func TestLockServerManyNamesMemoryReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("100k round trips")
	}
	srv, ep := newTestServer(t, locker.Config{Locks: locker.LockTableConfig{NoGrace: true}})
	d := mustDEALER(t, ep)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const n, batch = 100_000, 1000
	before := heap()
	fences := make([]uint64, n)
	// Every name is held at once, then every one released.
	for _, verb := range []string{"acquire", "release"} {
		for i := 0; i < n; i += batch {
			for j := i; j < i+batch; j++ {
				body := "acquire lock-" + strconv.Itoa(j) + " exclusive 60000 0"
				if verb == "release" {
					body = "release lock-" + strconv.Itoa(j) + " " + strconv.FormatUint(fences[j], 10)
				}
				send(t, d, uint64(j), body)
			}
			for range batch {
				id, body := recv(t, d)
				r := lockReply(t, body)
				switch {
				case verb == "acquire" && r.Status == locker.LockGranted:
					fences[id] = r.Fence
				case verb == "release" && r.Status == locker.LockReleased:
				default:
					t.Fatalf("%s: %q", verb, body)
				}
			}
		}
		if verb == "acquire" {
			if _, live := srv.LockStats(); live != n {
				t.Fatalf("%d live locks, want %d", live, n)
			}
		}
	}
	if _, live := srv.LockStats(); live != 0 {
		t.Fatalf("%d live locks after every release", live)
	}
	if l := listing(t, mustREQ(t, ep), ""); len(l) != 0 {
		t.Fatalf("listing after every release: %d locks", len(l))
	}
	after := heap()
	t.Logf("heap %d KB before, %d KB after %d names held at once and released", before>>10, after>>10, n)
	if after > before+4<<20 {
		t.Fatalf("heap grew from %d to %d bytes", before, after)
	}
}

// TestLockServerGrantBeforeReply: a request that hands the lock to the
// next waiter (a release, a break) sends that grant before its own
// reply, so the next holder's round trip starts first. Both go to one
// DEALER socket, which keeps the server's order.
func TestLockServerGrantBeforeReply(t *testing.T) {
	for _, tc := range []struct {
		name string
		body func(fence uint64) string
		want locker.LockStatus
	}{
		{"release", func(f uint64) string { return "release job " + strconv.FormatUint(f, 10) }, locker.LockReleased},
		{"break", func(uint64) string { return "break job" }, locker.LockBroken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ep := newTestServer(t, locker.Config{Locks: locker.LockTableConfig{NoGrace: true}})
			req := mustREQ(t, ep)
			d := mustDEALER(t, ep)
			send(t, d, 1, "acquire job exclusive 0 0 one")
			_, body := recv(t, d)
			first := lockReply(t, body)
			if first.Status != locker.LockGranted {
				t.Fatalf("first acquire: %q", body)
			}
			send(t, d, 2, "acquire job exclusive 0 60000 two")
			lockertest.WaitFor(t, func() bool {
				l := listing(t, req, "job")
				return len(l) == 1 && len(l[0].Waiters) == 1
			})
			send(t, d, 3, tc.body(first.Fence))
			id, body := recv(t, d)
			if r := lockReply(t, body); id != 2 || r.Status != locker.LockGranted || r.Fence <= first.Fence {
				t.Fatalf("first reply after %s: %d %q, want the grant to 2", tc.name, id, body)
			}
			id, body = recv(t, d)
			if r := lockReply(t, body); id != 3 || r.Status != tc.want {
				t.Fatalf("second reply after %s: %d %q, want its own answer", tc.name, id, body)
			}
		})
	}
}
