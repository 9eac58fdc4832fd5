package locker_test

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

func TestParseRequest(t *testing.T) {
	k128, k129 := strings.Repeat("k", 128), strings.Repeat("k", 129)
	tests := []parseCase{
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
		// cancel KEY, and nothing more.
		{body: "cancel api", verb: locker.VerbCancel, key: "api", n: 1, maxWait: -1},
		{body: "cancel api\n", verb: locker.VerbCancel, key: "api", n: 1, maxWait: -1},
		{body: "cancel", err: locker.ErrMissingKey},
		{body: "cancel ", err: locker.ErrMalformed},
		{body: "cancel a$b", err: locker.ErrBadKey},
		{body: "cancel api 1", err: locker.ErrExtraArgs},
		{body: "cancel api ", err: locker.ErrExtraArgs},
		{body: "Cancel api", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
	}
	checkParseRequest(t, tests)
}

// parseCase is one request body and what ParseRequest must make of it:
// either err, or the verb, key, N and MaxWait (N and MaxWait are not
// checked for ping and status).
type parseCase struct {
	body    string
	verb    locker.Verb
	key     string
	n       int64
	maxWait time.Duration
	err     error
}

func checkParseRequest(t *testing.T, tests []parseCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.body), func(t *testing.T) {
			r, err := locker.ParseRequest([]byte(tc.body))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseRequest(%q)=%+v, %v; want %v", tc.body, r, err, tc.err)
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
	for _, s := range []string{"take api", "take api 5", "wait api 2 1500", "ping", "status", "let me go", "", "take  api", "wait a 1 99999999999999999999", "take api 1000000001\n",
		"cancel api", "cancel api 1", "cancel", "cancel "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := string(body)
		r, err := locker.ParseRequest(body)
		if string(body) != orig {
			t.Fatalf("ParseRequest changed its input %q to %q", orig, body)
		}
		// The verb is the first space-separated token, less a final
		// line ending.
		verb, _, _ := strings.Cut(strings.TrimRight(orig, "\r\n"), " ")
		known := verb == "take" || verb == "wait" || verb == "ping" || verb == "status" || verb == "cancel"
		if err != nil {
			if !strings.HasPrefix(err.Error(), "locker: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			if !known {
				t.Fatalf("%q: error %v for a body without a known verb (want legacy)", body, err)
			}
			return
		}
		if known == (r.Verb == locker.VerbLegacy) {
			t.Fatalf("%q: verb %v, first token %q", body, r.Verb, verb)
		}
		switch r.Verb {
		case locker.VerbPing, locker.VerbStatus:
			if got := strings.TrimRight(orig, "\r\n"); got != r.Verb.String() {
				t.Fatalf("%q parsed as %v", body, r.Verb)
			}
			return
		case locker.VerbLegacy:
			if string(r.Key) != locker.DefaultKey || r.N != 1 || r.MaxWait != -1 {
				t.Fatalf("legacy request %q parsed as %q N=%d MaxWait=%v", body, r.Key, r.N, r.MaxWait)
			}
			return
		case locker.VerbTake:
			if r.MaxWait != -1 {
				t.Fatalf("take %q with MaxWait %v", body, r.MaxWait)
			}
		case locker.VerbCancel:
			if r.N != 1 || r.MaxWait != -1 || strings.TrimRight(orig, "\r\n") != "cancel "+string(r.Key) {
				t.Fatalf("cancel %q parsed as %q N=%d MaxWait=%v", body, r.Key, r.N, r.MaxWait)
			}
			return
		}
		if err := locker.ValidKeyName(string(r.Key)); err != nil {
			t.Fatalf("%q: accepted key %q: %v", body, r.Key, err)
		}
		if r.N < 1 || r.N > locker.MaxLimit || r.MaxWait < -1 || r.MaxWait > 0 && r.MaxWait%time.Millisecond != 0 {
			t.Fatalf("%q: N=%d MaxWait=%v out of range", body, r.N, r.MaxWait)
		}
		// Re-encoded, in full and with the defaults left out, it parses
		// the same.
		full := r.Verb.String() + " " + string(r.Key) + " " + itoa(r.N)
		short := r.Verb.String() + " " + string(r.Key)
		if r.MaxWait >= 0 {
			full += " " + itoa(r.MaxWait.Milliseconds())
			short = full
		} else if r.N != 1 {
			short = full
		}
		for _, again := range []string{full, short} {
			r2, err := locker.ParseRequest([]byte(again))
			if err != nil || r2.Verb != r.Verb || !bytes.Equal(r2.Key, r.Key) || r2.N != r.N || r2.MaxWait != r.MaxWait {
				t.Fatalf("%q re-encoded as %q parses to %+v, %v; want %+v", body, again, r2, err, r)
			}
		}
	})
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"go 4 512 2244384793", "sorry 300 9", "go", "sorry", "error unknown key", "pong id", `{"id":"x"}`, "go 1 2 3 4", "cancelled 1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := locker.ParseReply(body)
		if err != nil {
			if !errors.Is(err, locker.ErrBadReply) {
				t.Fatalf("%q: error %v is not ErrBadReply", body, err)
			}
			return
		}
		if r.Body != string(body) {
			t.Fatalf("%q: Body=%q", body, r.Body)
		}
		switch r.Kind {
		case locker.ReplyGo, locker.ReplySorry:
		case locker.ReplyError:
			if !strings.HasPrefix(r.Body, "error") || !strings.HasSuffix(r.Body, r.Text) {
				t.Fatalf("%q: error reply with text %q", body, r.Text)
			}
			return
		case locker.ReplyPong:
			if !strings.HasPrefix(r.Body, "pong") {
				t.Fatalf("%q: pong reply", body)
			}
			return
		case locker.ReplyCancelled:
			if r.Body != "cancelled "+r.Text {
				t.Fatalf("%q: cancelled reply with text %q", body, r.Text)
			}
			return
		case locker.ReplyStatus:
			if r.Body[0] != '{' || r.Text != r.Body {
				t.Fatalf("%q: status reply with text %q", body, r.Text)
			}
			return
		default:
			t.Fatalf("%q: kind %v", body, r.Kind)
		}
		if r.Decision.OK != (r.Kind == locker.ReplyGo) {
			t.Fatalf("%q: kind %v with OK=%v", body, r.Kind, r.Decision.OK)
		}
		if !r.Full {
			if r.Body != "go" && r.Body != "sorry" || r.Decision != (locker.Decision{OK: r.Decision.OK}) {
				t.Fatalf("%q: a bare reply parsed as %+v", body, r)
			}
			return
		}
		if r.Decision.Reset < 0 || r.Decision.RetryAfter < 0 || r.Decision.Reset > 365*24*time.Hour {
			t.Fatalf("%q: durations out of range: %+v", body, r.Decision)
		}
		if r.Decision.Remaining < 0 {
			return // read back as given; nothing this server would send
		}
		b := locker.AppendDecision(nil, r.Decision, false)
		r2, err := locker.ParseReply(b)
		if err != nil || r2.Decision != r.Decision {
			t.Fatalf("%q re-encoded as %q parses to %+v, %v; want %+v", body, b, r2.Decision, err, r.Decision)
		}
		if bare := locker.AppendDecision(nil, r.Decision, true); string(bare) != strings.SplitN(r.Body, " ", 2)[0] {
			t.Fatalf("%q: bare form %q", body, bare)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestParseRequestMore covers the forms TestParseRequest and
// TestParseRequestEdges leave out: signs, bases and units in numbers,
// spacing around every argument, line endings and non-ASCII keys.
func TestParseRequestMore(t *testing.T) {
	k128, k129 := strings.Repeat("K", 128), strings.Repeat("K", 129)
	maxMS := 365 * 24 * time.Hour
	tests := []parseCase{
		{body: "take " + k128 + " 2", verb: locker.VerbTake, key: k128, n: 2, maxWait: -1},
		{body: "wait " + k128 + " 1 5", verb: locker.VerbWait, key: k128, n: 1, maxWait: 5 * time.Millisecond},
		{body: "wait " + k129 + " 1 5", err: locker.ErrBadKey},
		{body: "wait api 1 00001500", verb: locker.VerbWait, key: "api", n: 1, maxWait: 1500 * time.Millisecond},
		{body: "wait api 1 31536000000", verb: locker.VerbWait, key: "api", n: 1, maxWait: maxMS},
		{body: "wait api 1 31536000001", verb: locker.VerbWait, key: "api", n: 1, maxWait: maxMS}, // capped
		{body: "wait api 1000000000 0", verb: locker.VerbWait, key: "api", n: 1e9, maxWait: 0},
		{body: "take api 1\r", verb: locker.VerbTake, key: "api", n: 1, maxWait: -1},
		{body: "wait api\n", verb: locker.VerbWait, key: "api", n: 1, maxWait: -1},
		{body: "take -", verb: locker.VerbTake, key: "-", n: 1, maxWait: -1},
		{body: "take 5", verb: locker.VerbTake, key: "5", n: 1, maxWait: -1}, // a key may be all digits
		// Not a known verb: legacy, whatever follows.
		{body: " take api", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "take\tapi", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "Ping", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "pingpong", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "let me go\n", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "\n", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "\x00", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "go", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		// Spacing.
		{body: "take api 1 ", err: locker.ErrExtraArgs},
		{body: "take api\n ", err: locker.ErrBadKey}, // only a final line ending is dropped
		{body: "take api \n", err: locker.ErrMalformed},
		{body: "wait api 1  5", err: locker.ErrMalformed},
		{body: "wait  api 1 5", err: locker.ErrMalformed},
		{body: "wait api  ", err: locker.ErrMalformed},
		{body: "wait ", err: locker.ErrMalformed},
		{body: "ping ", err: locker.ErrExtraArgs},
		{body: "status ", err: locker.ErrExtraArgs},
		// Numbers.
		{body: "take api +1", err: locker.ErrBadN},
		{body: "take api 1e3", err: locker.ErrBadN},
		{body: "take api 0x10", err: locker.ErrBadN},
		{body: "take api 000", err: locker.ErrBadN},
		{body: "take api \u0663", err: locker.ErrBadN}, // an Arabic-Indic digit
		{body: "take api 1\x00", err: locker.ErrBadN},
		{body: "wait api 0 5", err: locker.ErrBadN},
		{body: "wait api -1 5", err: locker.ErrBadN},
		{body: "wait api 1 +5", err: locker.ErrBadMaxWait},
		{body: "wait api 1 1.5", err: locker.ErrBadMaxWait},
		{body: "wait api 1 5ms", err: locker.ErrBadMaxWait},
		{body: "wait api 1 -0", err: locker.ErrBadMaxWait},
		// Keys.
		{body: "take clé", err: locker.ErrBadKey},
		{body: "take a\x00b", err: locker.ErrBadKey},
		{body: "take api\t1", err: locker.ErrBadKey},
		{body: "take a*", err: locker.ErrBadKey},
		{body: "take a,b 1", err: locker.ErrBadKey},
	}
	checkParseRequest(t, tests)
}

// TestParseRequestKeyAliasesBody checks the documented aliasing: the key
// is a slice of the body, not a copy.
func TestParseRequestKeyAliasesBody(t *testing.T) {
	body := []byte("take api 2")
	r, err := locker.ParseRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	body[5] = 'A'
	if string(r.Key) != "Api" {
		t.Fatalf("Key=%q after changing the body, want it to alias the body", r.Key)
	}
}

func TestDecisionReplies(t *testing.T) {
	tests := []struct {
		name string
		d    locker.Decision
		bare bool
		text string
		want locker.Decision // as parsed back
	}{
		{"go", locker.Decision{OK: true, Remaining: 4, Reset: 800 * time.Millisecond, Window: 42},
			false, "go 4 800 42", locker.Decision{OK: true, Remaining: 4, Reset: 800 * time.Millisecond, Window: 42}},
		{"go, 1ns left rounds up to 1ms", locker.Decision{OK: true, Remaining: 0, Reset: 1, Window: 1},
			false, "go 0 1 1", locker.Decision{OK: true, Reset: time.Millisecond, Window: 1}},
		{"go, 24h", locker.Decision{OK: true, Remaining: 999_999_999, Reset: 24 * time.Hour, Window: 20833},
			false, "go 999999999 86400000 20833", locker.Decision{OK: true, Remaining: 999_999_999, Reset: 24 * time.Hour, Window: 20833}},
		{"go, before 1970", locker.Decision{OK: true, Remaining: 1, Reset: time.Second, Window: -3},
			false, "go 1 1000 -3", locker.Decision{OK: true, Remaining: 1, Reset: time.Second, Window: -3}},
		{"sorry", locker.Decision{Reset: 250 * time.Millisecond, RetryAfter: 250 * time.Millisecond, Window: 7},
			false, "sorry 250 7", locker.Decision{Reset: 250 * time.Millisecond, RetryAfter: 250 * time.Millisecond, Window: 7}},
		{"sorry, retry rounded up", locker.Decision{RetryAfter: 1001 * time.Microsecond, Window: 7},
			false, "sorry 2 7", locker.Decision{Reset: 2 * time.Millisecond, RetryAfter: 2 * time.Millisecond, Window: 7}},
		{"sorry, nothing to wait", locker.Decision{Window: 7},
			false, "sorry 0 7", locker.Decision{Window: 7}},
		{"sorry, negative retry reads as 0", locker.Decision{RetryAfter: -time.Second, Window: 7},
			false, "sorry 0 7", locker.Decision{Window: 7}},
		{"bare go", locker.Decision{OK: true, Remaining: 4, Reset: time.Second, Window: 42},
			true, "go", locker.Decision{OK: true}},
		{"bare sorry", locker.Decision{Reset: time.Second, RetryAfter: time.Second, Window: 42},
			true, "sorry", locker.Decision{}},
	}
	buf := make([]byte, 0, 8) // grown by AppendDecision as needed
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf = locker.AppendDecision(append(buf[:0], "junk"...)[:0], tc.d, tc.bare)
			if string(buf) != tc.text {
				t.Fatalf("AppendDecision(%+v, %v)=%q, want %q", tc.d, tc.bare, buf, tc.text)
			}
			r, err := locker.ParseReply(buf)
			if err != nil {
				t.Fatalf("ParseReply(%q): %v", buf, err)
			}
			kind := locker.ReplySorry
			if tc.d.OK {
				kind = locker.ReplyGo
			}
			if r.Kind != kind || r.Full == tc.bare || r.Decision != tc.want || r.Body != tc.text {
				t.Fatalf("ParseReply(%q)=%+v, want kind %v full %v decision %+v", buf, r, kind, !tc.bare, tc.want)
			}
		})
	}
	// Appending keeps what the buffer held.
	if got := string(locker.AppendDecision([]byte("x:"), locker.Decision{OK: true}, true)); got != "x:go" {
		t.Fatalf("AppendDecision onto a prefix: %q", got)
	}
}

func TestErrorReplies(t *testing.T) {
	tests := []struct {
		err  error
		text string
	}{
		{locker.ErrBadN, "error N must be a positive integer up to 1000000000"},
		{locker.ErrUnknownKey, "error unknown key"},
		{fmt.Errorf("locker: unknown key %q", "x y"), `error unknown key "x y"`},
		{errors.New("no prefix here"), "error no prefix here"},
		{errors.New("locker:"), "error locker:"},
	}
	for _, tc := range tests {
		b := locker.AppendError(nil, tc.err)
		if string(b) != tc.text {
			t.Errorf("AppendError(%v)=%q, want %q", tc.err, b, tc.text)
			continue
		}
		r, err := locker.ParseReply(b)
		if err != nil || r.Kind != locker.ReplyError || "error "+r.Text != tc.text {
			t.Errorf("ParseReply(%q)=%+v, %v", b, r, err)
		}
	}
}

func TestParseReplyForms(t *testing.T) {
	tests := []struct {
		body string
		kind locker.ReplyKind
		text string
		d    locker.Decision
		full bool
		bad  bool
	}{
		{body: "pong lockerd-1", kind: locker.ReplyPong, text: "lockerd-1"},
		{body: "pong", kind: locker.ReplyPong},
		{body: `{"id":"a","keys":[]}`, kind: locker.ReplyStatus, text: `{"id":"a","keys":[]}`},
		{body: "error", kind: locker.ReplyError},
		{body: "cancelled 1", kind: locker.ReplyCancelled, text: "1"},
		{body: "cancelled 0", kind: locker.ReplyCancelled, text: "0"},
		{body: "cancelled", bad: true},
		{body: "cancelled x", bad: true},
		{body: "sorry 5 -3", kind: locker.ReplySorry, full: true, d: locker.Decision{Reset: 5 * time.Millisecond, RetryAfter: 5 * time.Millisecond, Window: -3}},
		{body: "sorry 31536000000 1", kind: locker.ReplySorry, full: true, d: locker.Decision{Reset: 365 * 24 * time.Hour, RetryAfter: 365 * 24 * time.Hour, Window: 1}},
		{body: "go 1 2 3 and more", kind: locker.ReplyGo, full: true, d: locker.Decision{OK: true, Remaining: 1, Reset: 2 * time.Millisecond, Window: 3}},
		{body: "sorry 1 2 3", kind: locker.ReplySorry, full: true, d: locker.Decision{Reset: time.Millisecond, RetryAfter: time.Millisecond, Window: 2}},
		{body: "sorry 31536000001 1", bad: true}, // would not fit a year
		{body: "sorry -1 1", bad: true},
		{body: "go 1 -1 2", bad: true},
		{body: "go 9223372036854775808 1 2", bad: true},
		{body: "go 1 2", bad: true},
		{body: "go 1  2 3", bad: true},
		{body: "go ", bad: true},
		{body: "sorry ", bad: true},
		{body: "Go", bad: true},
		{body: "go\n", bad: true},
		{body: "yes", bad: true},
		{body: "\xff\xfe", bad: true},
	}
	for _, tc := range tests {
		r, err := locker.ParseReply([]byte(tc.body))
		if tc.bad {
			if !errors.Is(err, locker.ErrBadReply) {
				t.Errorf("ParseReply(%q)=%+v, %v; want ErrBadReply", tc.body, r, err)
			}
			continue
		}
		if err != nil || r.Kind != tc.kind || r.Text != tc.text || r.Decision != tc.d || r.Full != tc.full || r.Body != tc.body {
			t.Errorf("ParseReply(%q)=%+v, %v; want kind %v text %q decision %+v full %v", tc.body, r, err, tc.kind, tc.text, tc.d, tc.full)
		}
	}
}

// TestParseRequestAllocsEveryForm extends TestProtocolAllocatesNothing
// to every verb, the legacy form and the error paths.
func TestParseRequestAllocsEveryForm(t *testing.T) {
	for _, s := range []string{"take api", "take api 5", "wait api 2 1500", "ping", "status", "let me go", "", "\xff\x00",
		"cancel api", "cancel api 1", "take  api", "take api 0", "wait api 1 -5", "take " + strings.Repeat("k", 129), "ping x", "take api 99999999999999999999\r\n"} {
		body := []byte(s)
		if a := testing.AllocsPerRun(200, func() { locker.ParseRequest(body) }); a != 0 {
			t.Errorf("ParseRequest(%q) allocates %v times", s, a)
		}
	}
	buf := make([]byte, 0, 64)
	for _, bare := range []bool{false, true} {
		for _, d := range []locker.Decision{{OK: true, Remaining: 1e9, Reset: 24 * time.Hour, Window: -1 << 62}, {RetryAfter: time.Hour, Window: 1 << 62}} {
			if a := testing.AllocsPerRun(200, func() { buf = locker.AppendDecision(buf[:0], d, bare) }); a != 0 {
				t.Errorf("AppendDecision(%+v, %v) allocates %v times", d, bare, a)
			}
		}
	}
}

// TestParseRequestEdges covers the edges found while writing PROTOCOL.md.
func TestParseRequestEdges(t *testing.T) {
	checkParseRequest(t, []parseCase{
		{body: "take api 1000000000", verb: locker.VerbTake, key: "api", n: 1e9, maxWait: -1},
		{body: "take api 01000000000", verb: locker.VerbTake, key: "api", n: 1e9, maxWait: -1},
		{body: "take api 1000000001", err: locker.ErrBadN},
		{body: "take api 5000000000", err: locker.ErrBadN},
		{body: "take api 99999999999999999999999", err: locker.ErrBadN},
		{body: "wait api 1 99999999999999999999999", verb: locker.VerbWait, key: "api", n: 1, maxWait: 365 * 24 * time.Hour},
		{body: "ping\n", verb: locker.VerbPing},
		{body: "status\r\n", verb: locker.VerbStatus},
		{body: "take api 2\n", verb: locker.VerbTake, key: "api", n: 2, maxWait: -1},
	})
}
