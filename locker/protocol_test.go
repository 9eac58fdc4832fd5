package locker_test

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

func TestParseRequest(t *testing.T) {
	k128, k129 := strings.Repeat("k", 128), strings.Repeat("k", 129)
	tests := []struct {
		body    string
		verb    locker.Verb
		key     string
		n       int64
		maxWait time.Duration
		err     error
	}{
		{body: "take api", verb: locker.VerbTake, key: "api", n: 1, maxWait: -1},
		{body: "take api 5", verb: locker.VerbTake, key: "api", n: 5, maxWait: -1},
		{body: "wait api", verb: locker.VerbWait, key: "api", n: 1, maxWait: -1},
		{body: "wait api 2", verb: locker.VerbWait, key: "api", n: 2, maxWait: -1},
		{body: "wait api 2 1500", verb: locker.VerbWait, key: "api", n: 2, maxWait: 1500 * time.Millisecond},
		{body: "wait api 1 0", verb: locker.VerbWait, key: "api", n: 1, maxWait: 0},
		{body: "ping", verb: locker.VerbPing},
		{body: "status", verb: locker.VerbStatus},
		{body: "take " + k128, verb: locker.VerbTake, key: k128, n: 1, maxWait: -1},
		{body: "take a.b:c/d-e_F9", verb: locker.VerbTake, key: "a.b:c/d-e_F9", n: 1, maxWait: -1},
		// Legacy: anything that does not start with a known verb.
		{body: "let me go", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "\x00\xff\xfe junk", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "TAKE api", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "taken api", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		// A known verb with bad arguments.
		{body: "take", err: locker.ErrMissingKey},
		{body: "wait", err: locker.ErrMissingKey},
		{body: "take ", err: locker.ErrMalformed},
		{body: "take  api", err: locker.ErrMalformed},
		{body: "take api ", err: locker.ErrMalformed},
		{body: "take api  1", err: locker.ErrMalformed},
		{body: "take " + k129, err: locker.ErrBadKey},
		{body: "take a$b", err: locker.ErrBadKey},
		{body: "take api 0", err: locker.ErrBadN},
		{body: "take api -1", err: locker.ErrBadN},
		{body: "take api 1.5", err: locker.ErrBadN},
		{body: "take api x", err: locker.ErrBadN},
		{body: "take api 1 100", err: locker.ErrExtraArgs},
		{body: "wait api 1 -5", err: locker.ErrBadMaxWait},
		{body: "wait api 1 soon", err: locker.ErrBadMaxWait},
		{body: "wait api 1 5 x", err: locker.ErrExtraArgs},
		{body: "ping x", err: locker.ErrExtraArgs},
		{body: "status now", err: locker.ErrExtraArgs},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			r, err := locker.ParseRequest([]byte(tc.body))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseRequest(%q) err=%v, want %v", tc.body, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest(%q): %v", tc.body, err)
			}
			if r.Verb != tc.verb || string(r.Key) != tc.key || r.Verb != locker.VerbPing && r.Verb != locker.VerbStatus && (r.N != tc.n || r.MaxWait != tc.maxWait) {
				t.Fatalf("ParseRequest(%q)=%v %q N=%d MaxWait=%v, want %v %q %d %v", tc.body, r.Verb, r.Key, r.N, r.MaxWait, tc.verb, tc.key, tc.n, tc.maxWait)
			}
		})
	}
}

func TestRepliesRoundTrip(t *testing.T) {
	tests := []struct {
		d    locker.Decision
		bare bool
		text string
	}{
		{locker.Decision{OK: true, Remaining: 4, Reset: 512 * time.Millisecond, Window: 2244384793}, false, "go 4 512 2244384793"},
		{locker.Decision{OK: true, Remaining: 0, Reset: 1500 * time.Microsecond, Window: 7}, false, "go 0 2 7"}, // rounded up
		{locker.Decision{RetryAfter: 300 * time.Millisecond, Reset: 300 * time.Millisecond, Window: 9}, false, "sorry 300 9"},
		{locker.Decision{OK: true, Remaining: 3, Window: 9}, true, "go"},
		{locker.Decision{Window: 9}, true, "sorry"},
	}
	var buf []byte
	for _, tc := range tests {
		buf = locker.AppendDecision(buf[:0], tc.d, tc.bare)
		if string(buf) != tc.text {
			t.Errorf("AppendDecision(%+v)=%q, want %q", tc.d, buf, tc.text)
			continue
		}
		r, err := locker.ParseReply(buf)
		if err != nil || r.Decision.OK != tc.d.OK || r.Full == tc.bare {
			t.Errorf("ParseReply(%q)=%+v, %v", buf, r, err)
			continue
		}
		if !tc.bare && (r.Decision.Window != tc.d.Window || r.Decision.OK && r.Decision.Remaining != tc.d.Remaining) {
			t.Errorf("ParseReply(%q)=%+v, want %+v", buf, r.Decision, tc.d)
		}
	}
	buf = locker.AppendError(buf[:0], locker.ErrBadN)
	if r, err := locker.ParseReply(buf); err != nil || r.Kind != locker.ReplyError || !strings.HasPrefix(r.Text, "N must be") {
		t.Errorf("error reply %q parsed as %+v, %v", buf, r, err)
	}
	for _, bad := range []string{"", "maybe", "go x 1 2", "sorry 1", "go -"} {
		if r, err := locker.ParseReply([]byte(bad)); err == nil {
			t.Errorf("ParseReply(%q)=%+v, want an error", bad, r)
		}
	}
}

func TestProtocolAllocatesNothing(t *testing.T) {
	body := []byte("wait some-key 3 1500")
	if a := testing.AllocsPerRun(1000, func() { locker.ParseRequest(body) }); a != 0 {
		t.Errorf("ParseRequest allocates %v times", a)
	}
	buf := make([]byte, 0, 64)
	d := locker.Decision{OK: true, Remaining: 12345, Reset: 999 * time.Millisecond, Window: 2244384793}
	if a := testing.AllocsPerRun(1000, func() { buf = locker.AppendDecision(buf[:0], d, false) }); a != 0 {
		t.Errorf("AppendDecision allocates %v times", a)
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"take api", "take api 5", "wait api 2 1500", "ping", "status", "let me go", "", "take  api", "wait a 1 99999999999999999999", "take api 1000000001\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := locker.ParseRequest(body)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "locker: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		switch r.Verb {
		case locker.VerbPing, locker.VerbStatus:
			return
		case locker.VerbLegacy:
			if string(r.Key) != locker.DefaultKey || r.N != 1 {
				t.Fatalf("legacy request %q parsed as %q N=%d", body, r.Key, r.N)
			}
			return
		}
		if err := locker.ValidKeyName(string(r.Key)); err != nil {
			t.Fatalf("%q: accepted key %q: %v", body, r.Key, err)
		}
		if r.N < 1 || r.N > locker.MaxLimit || r.MaxWait < -1 {
			t.Fatalf("%q: N=%d MaxWait=%v out of range", body, r.N, r.MaxWait)
		}
		// Re-encoded, it parses the same.
		again := r.Verb.String() + " " + string(r.Key) + " " + itoa(r.N)
		if r.MaxWait >= 0 {
			again += " " + itoa(r.MaxWait.Milliseconds())
		}
		r2, err := locker.ParseRequest([]byte(again))
		if err != nil || r2.Verb != r.Verb || !bytes.Equal(r2.Key, r.Key) || r2.N != r.N || r2.MaxWait != r.MaxWait {
			t.Fatalf("%q re-encoded as %q parses to %+v, %v; want %+v", body, again, r2, err, r)
		}
	})
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"go 4 512 2244384793", "sorry 300 9", "go", "sorry", "error unknown key", "pong id", `{"id":"x"}`, "go 1 2 3 4"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := locker.ParseReply(body)
		if err != nil {
			return
		}
		if (r.Kind != locker.ReplyGo && r.Kind != locker.ReplySorry) || !r.Full {
			return
		}
		if r.Decision.Reset < 0 || r.Decision.RetryAfter < 0 || r.Decision.Remaining < 0 {
			return // nonsense numbers read back as given; nothing to re-encode
		}
		b := locker.AppendDecision(nil, r.Decision, false)
		r2, err := locker.ParseReply(b)
		if err != nil || r2.Decision != r.Decision {
			t.Fatalf("%q re-encoded as %q parses to %+v, %v; want %+v", body, b, r2.Decision, err, r.Decision)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
