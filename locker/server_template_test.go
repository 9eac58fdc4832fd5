package locker_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

// labelObserver records the labels the server observes requests and
// refused keys under.
type labelObserver struct {
	mu      sync.Mutex
	labels  map[string]int
	refused map[string]int
}

func newLabelObserver() *labelObserver {
	return &labelObserver{labels: map[string]int{}, refused: map[string]int{}}
}

func (o *labelObserver) ObserveRequest(key string, _ locker.Outcome, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.labels[key]++
}

func (o *labelObserver) ObserveKeyRefused(template string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refused[template]++
}

func (o *labelObserver) snapshot() (labels, refused map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	labels, refused = map[string]int{}, map[string]int{}
	for k, v := range o.labels {
		labels[k] = v
	}
	for k, v := range o.refused {
		refused[k] = v
	}
	return labels, refused
}

// TestWaitOnKeyMadeOnDemand holds waits on two keys made from one
// template, with the server's clock stopped: each key has its own queue,
// answered when its own tokens come back, with the exact RETRY_MS for a
// take behind the queue and for a cancelled wait. Every answer is observed
// under the template, and the waits are counted under it.
func TestWaitOnKeyMadeOnDemand(t *testing.T) {
	const k0 = 1_800_000_000
	base := time.Unix(k0, 0)
	ms := time.Millisecond
	clock := &stepClock{}
	clock.Set(base)
	obs := newLabelObserver()
	srv := lockertest.NewServer(t, locker.Config{Now: clock.Now, Observer: obs,
		Keys: []locker.KeyConfig{mustSpec(t, "t:*=2/1s/sliding")}})
	s := dialDealer(t, srv.Endpoint)
	steps := []struct {
		at       time.Duration
		id       uint64
		req      string
		want     string // "" for a held wait
		alsoWant string // a held wait answered before the reply
	}{
		{0, 1, "take t:a 2", fmt.Sprintf("go 0 1000 %d", k0), ""},
		{300 * ms, 2, "take t:b", fmt.Sprintf("go 1 1000 %d", k0), ""},
		{400 * ms, 3, "wait t:a 1 600000", "", ""},
		{400 * ms, 4, "wait t:a 1 600000", "", ""},
		// behind the held waits of t:a: t:a's tokens come back at 1000ms
		{500 * ms, 5, "take t:a", fmt.Sprintf("sorry 500 %d", k0), ""},
		// t:b has no queue: it is not behind t:a's
		{500 * ms, 6, "take t:b", fmt.Sprintf("go 0 1000 %d", k0), ""},
		{600 * ms, 7, "cancel t:b", "cancelled 0", ""},
	}
	for _, st := range steps {
		clock.Set(base.Add(st.at))
		s.send(st.id, st.req)
		if st.want == "" {
			continue
		}
		if id, body := s.recv(); id != st.id || body != st.want {
			t.Fatalf("%s at %v: reply %d %q, want %d %q", st.req, st.at, id, body, st.id, st.want)
		}
	}
	if got := s.settle(clock); len(got) != 0 {
		t.Fatalf("held waits answered early: %q", got)
	}
	if st := srv.Stats(); len(st.Templates) != 1 || st.Templates[0].Waiters != 2 || st.Templates[0].Live != 2 {
		t.Fatalf("templates in stats %+v, want t:* with 2 live keys and 2 waits", st.Templates)
	}
	clock.Set(base.Add(1000 * ms))
	if got := strings.Join(s.settle(clock), " | "); got != fmt.Sprintf("3:go 1 1000 %d | 4:go 0 1000 %d", k0+1, k0+1) {
		t.Fatalf("at 1000ms: %q", got)
	}
	// A cancelled wait answers the exact time its tokens come back.
	clock.Set(base.Add(1100 * ms))
	s.send(8, "wait t:a 1 600000")
	if got := s.settle(clock); len(got) != 0 {
		t.Fatalf("wait answered at once: %q", got)
	}
	s.send(8, "cancel t:a") // the envelope of the wait
	_, r1 := s.recv()
	_, r2 := s.recv()
	if r1 != fmt.Sprintf("sorry 900 %d", k0+1) || r2 != "cancelled 1" {
		t.Fatalf("cancel: %q then %q, want the wait's exact sorry then cancelled 1", r1, r2)
	}
	labels, _ := obs.snapshot()
	for l := range labels {
		if l != "t:*" {
			t.Errorf("a request observed under %q: want the template t:*", l)
		}
	}
	if labels["t:*"] != 7 {
		t.Errorf("%d requests observed under t:*, want 7", labels["t:*"])
	}
}

// TestTooManyKeysOnTheWire caps the keys made on demand at 2: a third
// live key is refused with an error that names the cap, never a go, and
// the refusal is observed under the template; the live keys keep
// answering.
func TestTooManyKeysOnTheWire(t *testing.T) {
	clock := &stepClock{}
	clock.Set(time.Unix(1_800_000_000, 0))
	obs := newLabelObserver()
	srv := lockertest.NewServer(t, locker.Config{Now: clock.Now, Observer: obs,
		Keys: []locker.KeyConfig{mustSpec(t, "t:*=3/1s")}})
	srv.Server.Counter().SetMaxKeys(2)
	s := dialDealer(t, srv.Endpoint)
	for i, tc := range []struct{ req, want string }{
		{"take t:a", "go 2 1000 1800000000"},
		{"take t:b", "go 2 1000 1800000000"},
		{"take t:c", "error too many live keys made on demand (--max-keys 2)"},
		{"wait t:c 1 1000", "error too many live keys made on demand (--max-keys 2)"},
		{"take t:a", "go 1 1000 1800000000"},
	} {
		s.send(uint64(i), tc.req)
		if _, body := s.recv(); body != tc.want {
			t.Fatalf("%s: %q, want %q", tc.req, body, tc.want)
		}
	}
	if _, refused := obs.snapshot(); len(refused) != 1 || refused["t:*"] != 2 {
		t.Fatalf("refusals observed %v, want 2 under t:*", refused)
	}
}

// TestAboveLimitNamesTheBindingLimit sends N above what a key can ever
// grant at once: the error names the limit that binds.
func TestAboveLimitNamesTheBindingLimit(t *testing.T) {
	srv := lockertest.NewServer(t, locker.Config{Keys: []locker.KeyConfig{
		mustSpec(t, "f=3/1s"), mustSpec(t, "g=10/1s/gcra:2"), mustSpec(t, "m=10/1s+3/1m/sliding"), mustSpec(t, "t:*=5/1s/gcra:4"),
	}})
	s := dialDealer(t, srv.Endpoint)
	for i, tc := range []struct{ req, want string }{
		{"take f 4", "error N 4 above the limit 3 of key f"},
		{"take g 3", "error N 3 above the limit 2 of key g (the burst of its limit 10/1s/gcra:2)"},
		{"wait m 4", "error N 4 above the limit 3 of key m (its limit 3/1m0s/sliding)"},
		{"take t:x 5", "error N 5 above the limit 4 of key t:* (the burst of its limit 5/1s/gcra:4)"},
	} {
		s.send(uint64(i), tc.req)
		if _, body := s.recv(); body != tc.want {
			t.Errorf("%s: %q, want %q", tc.req, body, tc.want)
		}
	}
}

// TestStatusOfKeysAndTemplates reads status with and without a key: a
// multi-limit key shows each part, a template its live keys, and
// "status KEY" one key, configured, live or not yet made.
func TestStatusOfKeysAndTemplates(t *testing.T) {
	const k0 = 1_800_000_000
	clock := &stepClock{}
	clock.Set(time.Unix(k0, 0))
	srv := lockertest.NewServer(t, locker.Config{Now: clock.Now, Keys: []locker.KeyConfig{
		mustSpec(t, "m=10/1s+3/1m/sliding"), mustSpec(t, "t:*=5/1s/gcra:4"),
	}})
	s := dialDealer(t, srv.Endpoint)
	for i, req := range []string{"take m 2", "take t:x 3"} {
		s.send(uint64(i), req)
		if _, body := s.recv(); !strings.HasPrefix(body, "go ") {
			t.Fatalf("%s: %q", req, body)
		}
	}
	s.send(10, "status")
	_, body := s.recv()
	var doc struct {
		Keys []struct {
			Name  string              `json:"name"`
			Spec  string              `json:"spec"`
			Parts []locker.StatusPart `json:"parts"`
		} `json:"keys"`
		Templates []locker.StatusTemplate `json:"templates"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	wantParts := []locker.StatusPart{
		{Limit: 10, WindowMS: 1000, Algorithm: "fixed", Window: k0, Used: 2},
		{Limit: 3, WindowMS: 60000, Algorithm: "sliding", Window: k0 / 60, Used: 2},
	}
	found := false
	for _, k := range doc.Keys {
		if k.Name == "m" {
			found = true
			if k.Spec != "m=10/1s+3/1m0s/sliding" || fmt.Sprint(k.Parts) != fmt.Sprint(wantParts) {
				t.Errorf("key m: %+v, want spec m=10/1s+3/1m0s/sliding and parts %+v", k, wantParts)
			}
		}
		if strings.HasPrefix(k.Name, "t:") {
			t.Errorf("key made on demand %q listed among the keys", k.Name)
		}
	}
	if !found {
		t.Errorf("no key m in %s", body)
	}
	if len(doc.Templates) != 1 || doc.Templates[0] != (locker.StatusTemplate{Name: "t:*", Spec: "t:*=5/1s/gcra:4", Live: 1}) {
		t.Errorf("templates %+v, want t:* with 1 live key", doc.Templates)
	}
	for i, tc := range []struct {
		key  string
		want locker.KeyStatus
	}{
		{"t:x", locker.KeyStatus{Name: "t:x", Spec: "t:*=5/1s/gcra:4", Template: "t:*", Live: true,
			Parts: []locker.StatusPart{{Limit: 5, WindowMS: 1000, Algorithm: "gcra", Burst: 4, Window: k0, Used: 3}}}},
		{"t:y", locker.KeyStatus{Name: "t:y", Spec: "t:*=5/1s/gcra:4", Template: "t:*",
			Parts: []locker.StatusPart{{Limit: 5, WindowMS: 1000, Algorithm: "gcra", Burst: 4, Window: k0}}}},
		{"m", locker.KeyStatus{Name: "m", Spec: "m=10/1s+3/1m0s/sliding", Live: true, Parts: wantParts}},
	} {
		s.send(uint64(20+i), "status "+tc.key)
		_, body := s.recv()
		var got struct {
			Key locker.KeyStatus `json:"key"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("status %s: %q: %v", tc.key, body, err)
		}
		if fmt.Sprint(got.Key) != fmt.Sprint(tc.want) {
			t.Errorf("status %s: %+v, want %+v", tc.key, got.Key, tc.want)
		}
	}
	s.send(30, "status nope")
	if _, body := s.recv(); body != `error unknown key "nope"` {
		t.Errorf("status nope: %q", body)
	}
	if got := srv.Server.Counter().LiveKeys(); got != 1 {
		t.Errorf("%d live keys after status of a key not made: want 1", got)
	}
}

// TestIdleKeysMadeOnDemandAreSwept makes 100,000 keys from a template
// through a server, each granted its limit then refused, then moves the
// server's clock past their windows: the server's own sweep drops every
// one, with no request sent.
func TestIdleKeysMadeOnDemandAreSwept(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	base := time.Unix(1_800_000_000, 0)
	clock := &stepClock{}
	clock.Set(base)
	obs := newLabelObserver()
	srv := lockertest.NewServer(t, locker.Config{Now: clock.Now, Observer: obs,
		Keys: []locker.KeyConfig{mustSpec(t, "tenant:*=1/1s")}})
	s := dialDealer(t, srv.Endpoint)
	const batch = 500
	for start := 0; start < n; start += batch {
		for i := start; i < start+batch; i++ {
			s.send(uint64(2*i), fmt.Sprintf("take tenant:%d", i))
			s.send(uint64(2*i+1), fmt.Sprintf("take tenant:%d", i))
		}
		for i := 0; i < 2*batch; i++ {
			id, body := s.recv()
			want := "go 0 1000 1800000000"
			if id%2 == 1 {
				want = "sorry 1000 1800000000"
			}
			if body != want {
				t.Fatalf("request %d: %q, want %q", id, body, want)
			}
		}
	}
	if got := srv.Server.Counter().LiveKeys(); got != n {
		t.Fatalf("%d live keys, want %d", got, n)
	}
	clock.Set(base.Add(time.Hour))
	lockertest.WaitFor(t, func() bool { return srv.Server.Counter().LiveKeys() == 0 })
	labels, _ := obs.snapshot()
	if len(labels) != 1 || labels["tenant:*"] != 2*n {
		t.Fatalf("labels observed %v, want only tenant:* (%d)", labels, 2*n)
	}
}
