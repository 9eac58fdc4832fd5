package locker_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

func TestParseLockRequest(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		body string
		want locker.LockRequest
		err  error
	}{
		{body: "acquire nightly", want: locker.LockRequest{Verb: locker.LockAcquire, Name: []byte("nightly"), MaxWait: -1}},
		{body: "acquire nightly\r\n", want: locker.LockRequest{Verb: locker.LockAcquire, Name: []byte("nightly"), MaxWait: -1}},
		{body: "acquire nightly shared", want: locker.LockRequest{Verb: locker.LockAcquire, Name: []byte("nightly"), Mode: locker.LockShared, MaxWait: -1}},
		{body: "acquire a exclusive 30000", want: locker.LockRequest{Verb: locker.LockAcquire, Name: []byte("a"), TTL: 30000 * ms, MaxWait: -1}},
		{body: "acquire a exclusive 30000 0", want: locker.LockRequest{Verb: locker.LockAcquire, Name: []byte("a"), TTL: 30000 * ms}},
		{body: "acquire job:7 shared 0 5000 web1:4242", want: locker.LockRequest{Verb: locker.LockAcquire, Name: []byte("job:7"), Mode: locker.LockShared, MaxWait: 5000 * ms, Owner: []byte("web1:4242")}},
		{body: "acquire a exclusive 99999999999999999999 99999999999999999999", want: locker.LockRequest{Verb: locker.LockAcquire, Name: []byte("a"), TTL: 365 * 24 * time.Hour, MaxWait: 365 * 24 * time.Hour}},
		{body: "renew a 17", want: locker.LockRequest{Verb: locker.LockRenew, Name: []byte("a"), Fence: 17, MaxWait: -1}},
		{body: "renew a 17 2500", want: locker.LockRequest{Verb: locker.LockRenew, Name: []byte("a"), Fence: 17, TTL: 2500 * ms, MaxWait: -1}},
		{body: "release a 9007199254740991", want: locker.LockRequest{Verb: locker.LockRelease, Name: []byte("a"), Fence: locker.MaxLockFence, MaxWait: -1}},
		{body: "abandon a", want: locker.LockRequest{Verb: locker.LockAbandon, Name: []byte("a"), MaxWait: -1}},
		{body: "revoke a", want: locker.LockRequest{Verb: locker.LockRevoke, Name: []byte("a"), MaxWait: -1}},
		{body: "break a", want: locker.LockRequest{Verb: locker.LockBreak, Name: []byte("a"), MaxWait: -1}},
		{body: "locks", want: locker.LockRequest{Verb: locker.LockList, MaxWait: -1}},
		{body: "locks a", want: locker.LockRequest{Verb: locker.LockList, Name: []byte("a"), MaxWait: -1}},
		// Not lock verbs: for ParseRequest.
		{body: "take a"},
		{body: "let me go"},
		{body: ""},
		{body: "ACQUIRE a"},
		{body: "acquire\ta"},
		// Lock verbs with bad arguments.
		{body: "acquire", err: locker.ErrBadLockName},
		{body: "renew", err: locker.ErrBadLockName},
		{body: "acquire ", err: locker.ErrMalformed},
		{body: "locks ", err: locker.ErrMalformed},
		{body: "acquire  a", err: locker.ErrMalformed},
		{body: "acquire a ", err: locker.ErrMalformed},
		{body: "acquire a b", err: locker.ErrBadLockMode},
		{body: "acquire a Shared", err: locker.ErrBadLockMode},
		{body: "acquire a shared -1", err: locker.ErrBadLockTTL},
		{body: "acquire a shared 1s", err: locker.ErrBadLockTTL},
		{body: "acquire a shared 1 x", err: locker.ErrBadMaxWait},
		{body: "acquire a shared 1 1 a\x01b", err: locker.ErrBadLockOwner},
		{body: "acquire a shared 1 1 " + strings.Repeat("o", 65), err: locker.ErrBadLockOwner},
		{body: "acquire a shared 1 1 o x", err: locker.ErrExtraArgs},
		{body: "acquire a/ü", err: locker.ErrBadKey},
		{body: "acquire " + strings.Repeat("k", 129), err: locker.ErrBadKey},
		{body: "renew a", err: locker.ErrMissingFence},
		{body: "renew a 0", err: locker.ErrBadLockFence},
		{body: "renew a 9007199254740992", err: locker.ErrBadLockFence},
		{body: "renew a -3", err: locker.ErrBadLockFence},
		{body: "renew a 3 x", err: locker.ErrBadLockTTL},
		{body: "renew a 3 1 1", err: locker.ErrExtraArgs},
		{body: "release a 3 1", err: locker.ErrExtraArgs},
		{body: "abandon a 1", err: locker.ErrExtraArgs},
		{body: "locks a b", err: locker.ErrExtraArgs},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			got, err := locker.ParseLockRequest([]byte(tc.body))
			if err != tc.err {
				t.Fatalf("ParseLockRequest(%q) error %v, want %v", tc.body, err, tc.err)
			}
			if err != nil {
				return
			}
			if got.Verb != tc.want.Verb || string(got.Name) != string(tc.want.Name) || got.Mode != tc.want.Mode ||
				got.TTL != tc.want.TTL || got.MaxWait != tc.want.MaxWait || string(got.Owner) != string(tc.want.Owner) ||
				got.Fence != tc.want.Fence {
				t.Fatalf("ParseLockRequest(%q)=%+v, want %+v", tc.body, got, tc.want)
			}
		})
	}
}

func TestAppendLockReply(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		name string
		r    locker.LockResult
		want string
	}{
		{"granted", locker.LockResult{Status: locker.LockGranted, Fence: 1795510240123456, Until: now.Add(30 * time.Second)}, "locked 1795510240123456 30000"},
		{"lease rounded down", locker.LockResult{Status: locker.LockGranted, Fence: 5, Until: now.Add(1999 * time.Microsecond)}, "locked 5 1"},
		{"lease over", locker.LockResult{Status: locker.LockGranted, Fence: 5, Until: now.Add(-time.Second)}, "locked 5 0"},
		{"queued has no reply yet", locker.LockResult{Status: locker.LockQueued, Ticket: 3}, ""},
		{"busy rounded up", locker.LockResult{Status: locker.LockBusy, Until: now.Add(1001 * time.Microsecond), Holders: 3, Waiters: 2, Owner: "web1:42"}, "busy 2 3 2 web1:42"},
		{"busy without owner", locker.LockResult{Status: locker.LockBusy, Until: now.Add(time.Second)}, "busy 1000 0 0 -"},
		{"revoked", locker.LockResult{Status: locker.LockRevoked, Fence: 8, Until: now.Add(time.Second)}, "revoked 8 1000"},
		{"lost", locker.LockResult{Status: locker.LockLost, Fence: 8}, "lost 8"},
		{"expired", locker.LockResult{Status: locker.LockExpired, Fence: 8}, "lost 8"},
		{"released", locker.LockResult{Status: locker.LockReleased, Fence: 8}, "released 8"},
		{"abandoned", locker.LockResult{Status: locker.LockAbandoned, Count: 1}, "abandoned 1"},
		{"revoking", locker.LockResult{Status: locker.LockRevoking, Count: 4}, "revoking 4"},
		{"broken", locker.LockResult{Status: locker.LockBroken, Count: 2, Fence: 99}, "broken 2 99"},
		{"error", locker.LockResult{Status: locker.LockError, Err: locker.ErrTooManyLocks}, "error too many live locks"},
		{"error without one", locker.LockResult{Status: locker.LockError}, "error not a lock table request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(locker.AppendLockReply([]byte{}, now, tc.r)); got != tc.want {
				t.Fatalf("AppendLockReply(%+v)=%q, want %q", tc.r, got, tc.want)
			}
		})
	}
}

func TestParseLockReply(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		body string
		want locker.LockReply
		ok   bool
	}{
		{"locked 17 30000", locker.LockReply{Status: locker.LockGranted, Fence: 17, Lease: 30000 * ms}, true},
		{"locked 17 30000 later fields", locker.LockReply{Status: locker.LockGranted, Fence: 17, Lease: 30000 * ms}, true},
		{"revoked 17 5", locker.LockReply{Status: locker.LockRevoked, Fence: 17, Lease: 5 * ms}, true},
		{"busy 250 1 3 web1:42", locker.LockReply{Status: locker.LockBusy, Free: 250 * ms, Holders: 1, Waiters: 3, Owner: "web1:42"}, true},
		{"busy 250 0 0 -", locker.LockReply{Status: locker.LockBusy, Free: 250 * ms}, true},
		{"lost 3", locker.LockReply{Status: locker.LockLost, Fence: 3}, true},
		{"released 3", locker.LockReply{Status: locker.LockReleased, Fence: 3}, true},
		{"abandoned 0", locker.LockReply{Status: locker.LockAbandoned}, true},
		{"revoking 2", locker.LockReply{Status: locker.LockRevoking, Count: 2}, true},
		{"broken 2 40", locker.LockReply{Status: locker.LockBroken, Count: 2, Fence: 40}, true},
		{"error too many live locks", locker.LockReply{Status: locker.LockError, Text: "too many live locks"}, true},
		{"locked 17", locker.LockReply{}, false},
		{"locked 0 5", locker.LockReply{}, false},
		{"locked x 5", locker.LockReply{}, false},
		{"locked 9007199254740992 5", locker.LockReply{}, false},
		{"busy 1 1 1", locker.LockReply{}, false},
		{"busy 1 1 1 ", locker.LockReply{}, false},
		{"busy -1 1 1 o", locker.LockReply{}, false},
		{"lost", locker.LockReply{}, false},
		{"broken 1 0", locker.LockReply{}, false},
		{"go 1 2 3", locker.LockReply{}, false},
		{`{"locks":[]}`, locker.LockReply{}, false},
		{"", locker.LockReply{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			got, err := locker.ParseLockReply([]byte(tc.body))
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseLockReply(%q)=%+v, %v; want %+v, ok %v", tc.body, got, err, tc.want, tc.ok)
			}
			if err != nil && !errors.Is(err, locker.ErrBadReply) {
				t.Fatalf("error %v is not ErrBadReply", err)
			}
		})
	}
}

func TestAppendLockRequest(t *testing.T) {
	tests := []struct {
		r    locker.LockRequest
		want string
	}{
		{locker.LockRequest{Verb: locker.LockAcquire, Name: []byte("a"), MaxWait: -1}, "acquire a exclusive 0 31536000000"},
		{locker.LockRequest{Verb: locker.LockAcquire, Name: []byte("a"), Mode: locker.LockShared, TTL: time.Second, MaxWait: 1500 * time.Microsecond, Owner: []byte("h:1")}, "acquire a shared 1000 2 h:1"},
		{locker.LockRequest{Verb: locker.LockRenew, Name: []byte("a"), Fence: 7}, "renew a 7"},
		{locker.LockRequest{Verb: locker.LockRenew, Name: []byte("a"), Fence: 7, TTL: time.Second}, "renew a 7 1000"},
		{locker.LockRequest{Verb: locker.LockRelease, Name: []byte("a"), Fence: 7, TTL: time.Second}, "release a 7"},
		{locker.LockRequest{Verb: locker.LockAbandon, Name: []byte("a")}, "abandon a"},
		{locker.LockRequest{Verb: locker.LockRevoke, Name: []byte("a")}, "revoke a"},
		{locker.LockRequest{Verb: locker.LockBreak, Name: []byte("a")}, "break a"},
		{locker.LockRequest{Verb: locker.LockList}, "locks"},
		{locker.LockRequest{Verb: locker.LockList, Name: []byte("a")}, "locks a"},
		{locker.LockRequest{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			got := string(locker.AppendLockRequest(nil, tc.r))
			if got != tc.want {
				t.Fatalf("AppendLockRequest(%+v)=%q, want %q", tc.r, got, tc.want)
			}
			if got == "" {
				return
			}
			back, err := locker.ParseLockRequest([]byte(got))
			if err != nil || back.Verb != tc.r.Verb || string(back.Name) != string(tc.r.Name) {
				t.Fatalf("ParseLockRequest(%q)=%+v, %v", got, back, err)
			}
		})
	}
}

// TestLockWireAllocs: the parser and the reply encoder allocate nothing,
// like ParseRequest and AppendDecision.
func TestLockWireAllocs(t *testing.T) {
	bodies := [][]byte{[]byte("acquire job:7 shared 30000 5000 web1:4242"), []byte("renew job:7 1795510240123456 30000"), []byte("release job:7 1795510240123456"), []byte("take api")}
	now := time.Unix(1000, 0)
	results := []locker.LockResult{
		{Status: locker.LockGranted, Fence: 1795510240123456, Until: now.Add(time.Minute)},
		{Status: locker.LockBusy, Until: now.Add(time.Second), Holders: 3, Waiters: 9, Owner: "web1:4242"},
		{Status: locker.LockBroken, Count: 1, Fence: 12},
		{Status: locker.LockError, Err: locker.ErrTooManyLocks},
	}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		for _, b := range bodies {
			if _, err := locker.ParseLockRequest(b); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Errorf("ParseLockRequest: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, r := range results {
			buf = locker.AppendLockReply(buf[:0], now, r)
		}
	}); n != 0 {
		t.Errorf("AppendLockReply: %v allocations, want 0", n)
	}
	// The client's side of a cycle: its requests into a buffer, and the
	// replies to them.
	requests := []locker.LockRequest{
		{Verb: locker.LockAcquire, Name: []byte("job:7"), TTL: 10 * time.Second, MaxWait: 30 * time.Second, Owner: []byte("web1:4242")},
		{Verb: locker.LockRelease, Name: []byte("job:7"), Fence: 1795510240123456},
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, r := range requests {
			buf = locker.AppendLockRequest(buf[:0], r)
		}
	}); n != 0 {
		t.Errorf("AppendLockRequest: %v allocations, want 0", n)
	}
	replies := [][]byte{[]byte("locked 1795510240123456 10000"), []byte("released 1795510240123456"), []byte("lost 12")}
	if n := testing.AllocsPerRun(100, func() {
		for _, b := range replies {
			if _, err := locker.ParseLockReply(b); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Errorf("ParseLockReply: %v allocations, want 0", n)
	}
}

// BenchmarkLockWire measures the wire side of one lock cycle: the
// client's acquire and release, the server's parsing of them and its
// replies, and the client's parsing of those.
//
//	go test -run '^$' -bench LockWire -benchmem ./locker/
func BenchmarkLockWire(b *testing.B) {
	now := time.Unix(1000, 0)
	acq := locker.LockRequest{Verb: locker.LockAcquire, Name: []byte("job:7"), TTL: 10 * time.Second, MaxWait: 30 * time.Second, Owner: []byte("web1:4242")}
	rel := locker.LockRequest{Verb: locker.LockRelease, Name: []byte("job:7"), Fence: 1795510240123456}
	granted := locker.LockResult{Status: locker.LockGranted, Fence: 1795510240123456, Until: now.Add(10 * time.Second)}
	released := locker.LockResult{Status: locker.LockReleased, Fence: 1795510240123456}
	req := make([]byte, 0, 128)
	rep := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range []struct {
			r   locker.LockRequest
			res locker.LockResult
		}{{acq, granted}, {rel, released}} {
			req = locker.AppendLockRequest(req[:0], c.r)
			if _, err := locker.ParseLockRequest(req); err != nil {
				b.Fatal(err)
			}
			rep = locker.AppendLockReply(rep[:0], now, c.res)
			if _, err := locker.ParseLockReply(rep); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func FuzzParseLockRequest(f *testing.F) {
	for _, s := range []string{"acquire a", "acquire a shared 1000 0 me", "renew a 1 5", "release a 9007199254740991", "abandon a", "revoke a", "break a", "locks", "locks a", "acquire", "acquire  a", "renew a 0", "take a"} {
		f.Add([]byte(s))
	}
	verbs := map[string]bool{"acquire": true, "renew": true, "release": true, "abandon": true, "revoke": true, "break": true, "locks": true}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := string(body)
		r, err := locker.ParseLockRequest(body)
		if string(body) != orig {
			t.Fatalf("ParseLockRequest changed its input %q to %q", orig, body)
		}
		verb, _, _ := strings.Cut(strings.TrimRight(orig, "\r\n"), " ")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "locker: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			if !verbs[verb] {
				t.Fatalf("%q: error %v for a body without a lock verb", body, err)
			}
			return
		}
		if verbs[verb] != (r.Verb != locker.LockNone) || r.Verb != locker.LockNone && r.Verb.String() != verb {
			t.Fatalf("%q: verb %v, first token %q", body, r.Verb, verb)
		}
		if r.Verb == locker.LockNone {
			return
		}
		if len(r.Name) > 0 && locker.ValidKeyName(string(r.Name)) != nil {
			t.Fatalf("%q: invalid name %q accepted", body, r.Name)
		}
		if r.TTL < 0 || r.MaxWait < -1 || r.Fence > locker.MaxLockFence || len(r.Owner) > locker.MaxLockOwnerLen {
			t.Fatalf("%q: out of range: %+v", body, r)
		}
		// What the parser read, written back, reads the same.
		again := locker.AppendLockRequest(nil, r)
		r2, err := locker.ParseLockRequest(again)
		if err != nil {
			t.Fatalf("%q -> %q: %v", body, again, err)
		}
		if again2 := locker.AppendLockRequest(nil, r2); string(again2) != string(again) {
			t.Fatalf("%q -> %q -> %q", body, again, again2)
		}
	})
}

func FuzzParseLockReply(f *testing.F) {
	for _, s := range []string{"locked 17 30000", "busy 250 1 3 web1:42", "busy 1 0 0 -", "revoked 1 2", "lost 3", "released 3", "abandoned 1", "revoking 2", "broken 2 40", "error x", "locked 1 2 3"} {
		f.Add([]byte(s))
	}
	now := time.Unix(1000, 0)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := locker.ParseLockReply(body)
		if err != nil {
			if !errors.Is(err, locker.ErrBadReply) {
				t.Fatalf("%q: error %v is not ErrBadReply", body, err)
			}
			return
		}
		if r.Status == locker.LockError {
			return
		}
		// Encoding what was read gives a reply that reads the same.
		res := locker.LockResult{Status: r.Status, Fence: r.Fence, Holders: r.Holders, Waiters: r.Waiters, Owner: r.Owner, Count: r.Count}
		switch r.Status {
		case locker.LockGranted, locker.LockRevoked:
			res.Until = now.Add(r.Lease)
		case locker.LockBusy:
			res.Until = now.Add(r.Free)
		}
		again := locker.AppendLockReply(nil, now, res)
		r2, err := locker.ParseLockReply(again)
		if err != nil || r2 != r {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", body, r, again, r2, err)
		}
	})
}
