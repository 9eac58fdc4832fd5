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

// TestParseRequestVerbs covers each verb's accepted forms and what is
// not a verb: a legacy request for one token of default.
func TestParseRequestVerbs(t *testing.T) {
	checkParseRequest(t, []parseCase{
		{body: "take api", verb: locker.VerbTake, key: "api", n: 1, maxWait: -1},
		{body: "take api 5", verb: locker.VerbTake, key: "api", n: 5, maxWait: -1},
		{body: "wait api", verb: locker.VerbWait, key: "api", n: 1, maxWait: -1},
		{body: "wait api 2", verb: locker.VerbWait, key: "api", n: 2, maxWait: -1},
		{body: "wait api 2 1500", verb: locker.VerbWait, key: "api", n: 2, maxWait: 1500 * time.Millisecond},
		{body: "wait api 1 0", verb: locker.VerbWait, key: "api", n: 1, maxWait: 0},
		{body: "cancel api", verb: locker.VerbCancel, key: "api", n: 1, maxWait: -1},
		{body: "ping", verb: locker.VerbPing},
		{body: "status", verb: locker.VerbStatus},
		{body: "take", err: locker.ErrMissingKey},
		{body: "wait", err: locker.ErrMissingKey},
		{body: "cancel", err: locker.ErrMissingKey},
		{body: "take api 1 100", err: locker.ErrExtraArgs},
		{body: "wait api 1 5 x", err: locker.ErrExtraArgs},
		{body: "cancel api 1", err: locker.ErrExtraArgs},
		{body: "ping x", err: locker.ErrExtraArgs},
		{body: "status now", verb: locker.VerbStatus, key: "now", n: 1, maxWait: -1},
		{body: "status tenant:42", verb: locker.VerbStatus, key: "tenant:42", n: 1, maxWait: -1},
		{body: "status api 1", err: locker.ErrExtraArgs},
		{body: "status tenant:*", err: locker.ErrBadKey},
		// Not a known verb: legacy, whatever follows.
		{body: "let me go", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "\x00\xff\xfe junk", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "TAKE api", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "Cancel api", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "taken api", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: " take api", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "take\tapi", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "Ping", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "pingpong", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "\x00", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "go", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
	})
}

// TestParseRequestSpacing covers single spaces between tokens, none
// around them, and the final line ending that is dropped.
func TestParseRequestSpacing(t *testing.T) {
	checkParseRequest(t, []parseCase{
		{body: "take ", err: locker.ErrMalformed},
		{body: "take  api", err: locker.ErrMalformed},
		{body: "take api ", err: locker.ErrMalformed},
		{body: "take api  1", err: locker.ErrMalformed},
		{body: "take api \n", err: locker.ErrMalformed},
		{body: "wait api 1  5", err: locker.ErrMalformed},
		{body: "wait  api 1 5", err: locker.ErrMalformed},
		{body: "wait api  ", err: locker.ErrMalformed},
		{body: "wait ", err: locker.ErrMalformed},
		{body: "cancel ", err: locker.ErrMalformed},
		{body: "take api 1 ", err: locker.ErrExtraArgs},
		{body: "cancel api ", err: locker.ErrExtraArgs},
		{body: "ping ", err: locker.ErrExtraArgs},
		{body: "status ", err: locker.ErrMalformed},
		{body: "status  api", err: locker.ErrMalformed},
		{body: "status api ", err: locker.ErrExtraArgs},
		{body: "status api\n", verb: locker.VerbStatus, key: "api", n: 1, maxWait: -1},
		{body: "take api\n ", err: locker.ErrBadKey}, // only a final line ending is dropped
		{body: "take api 1\r", verb: locker.VerbTake, key: "api", n: 1, maxWait: -1},
		{body: "take api 2\n", verb: locker.VerbTake, key: "api", n: 2, maxWait: -1},
		{body: "wait api\n", verb: locker.VerbWait, key: "api", n: 1, maxWait: -1},
		{body: "cancel api\n", verb: locker.VerbCancel, key: "api", n: 1, maxWait: -1},
		{body: "ping\n", verb: locker.VerbPing},
		{body: "status\r\n", verb: locker.VerbStatus},
		{body: "let me go\n", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
		{body: "\n", verb: locker.VerbLegacy, key: "default", n: 1, maxWait: -1},
	})
}

// TestParseRequestKeys covers key names: 1 to 128 characters of
// A-Za-z0-9_.:/-, and nothing else.
func TestParseRequestKeys(t *testing.T) {
	k128, k129 := strings.Repeat("k", 128), strings.Repeat("k", 129)
	K128, K129 := strings.Repeat("K", 128), strings.Repeat("K", 129)
	checkParseRequest(t, []parseCase{
		{body: "take " + k128, verb: locker.VerbTake, key: k128, n: 1, maxWait: -1},
		{body: "take " + K128 + " 2", verb: locker.VerbTake, key: K128, n: 2, maxWait: -1},
		{body: "wait " + K128 + " 1 5", verb: locker.VerbWait, key: K128, n: 1, maxWait: 5 * time.Millisecond},
		{body: "take a.b:c/d-e_F9", verb: locker.VerbTake, key: "a.b:c/d-e_F9", n: 1, maxWait: -1},
		{body: "take -", verb: locker.VerbTake, key: "-", n: 1, maxWait: -1},
		{body: "take 5", verb: locker.VerbTake, key: "5", n: 1, maxWait: -1}, // a key may be all digits
		{body: "take " + k129, err: locker.ErrBadKey},
		{body: "wait " + K129 + " 1 5", err: locker.ErrBadKey},
		{body: "take a$b", err: locker.ErrBadKey},
		{body: "cancel a$b", err: locker.ErrBadKey},
		{body: "take clé", err: locker.ErrBadKey},
		{body: "take a\x00b", err: locker.ErrBadKey},
		{body: "take api\t1", err: locker.ErrBadKey},
		{body: "take a*", err: locker.ErrBadKey},
		{body: "take a,b 1", err: locker.ErrBadKey},
	})
}

// TestParseRequestNumbers covers N (1 to MaxLimit) and MAX_MS (capped at
// a year): plain decimal digits only, leading zeros allowed.
func TestParseRequestNumbers(t *testing.T) {
	maxMS := 365 * 24 * time.Hour
	checkParseRequest(t, []parseCase{
		{body: "take api 1000000000", verb: locker.VerbTake, key: "api", n: 1e9, maxWait: -1},
		{body: "take api 01000000000", verb: locker.VerbTake, key: "api", n: 1e9, maxWait: -1},
		{body: "wait api 1000000000 0", verb: locker.VerbWait, key: "api", n: 1e9, maxWait: 0},
		{body: "take api 0", err: locker.ErrBadN},
		{body: "take api 000", err: locker.ErrBadN},
		{body: "take api -1", err: locker.ErrBadN},
		{body: "take api +1", err: locker.ErrBadN},
		{body: "take api 1.5", err: locker.ErrBadN},
		{body: "take api x", err: locker.ErrBadN},
		{body: "take api 1e3", err: locker.ErrBadN},
		{body: "take api 0x10", err: locker.ErrBadN},
		{body: "take api \u0663", err: locker.ErrBadN}, // an Arabic-Indic digit
		{body: "take api 1\x00", err: locker.ErrBadN},
		{body: "take api 1000000001", err: locker.ErrBadN},
		{body: "take api 5000000000", err: locker.ErrBadN},
		{body: "take api 99999999999999999999999", err: locker.ErrBadN},
		{body: "wait api 0 5", err: locker.ErrBadN},
		{body: "wait api -1 5", err: locker.ErrBadN},
		{body: "wait api 1 00001500", verb: locker.VerbWait, key: "api", n: 1, maxWait: 1500 * time.Millisecond},
		{body: "wait api 1 31536000000", verb: locker.VerbWait, key: "api", n: 1, maxWait: maxMS},
		{body: "wait api 1 31536000001", verb: locker.VerbWait, key: "api", n: 1, maxWait: maxMS}, // capped
		{body: "wait api 1 99999999999999999999999", verb: locker.VerbWait, key: "api", n: 1, maxWait: maxMS},
		{body: "wait api 1 -5", err: locker.ErrBadMaxWait},
		{body: "wait api 1 -0", err: locker.ErrBadMaxWait},
		{body: "wait api 1 +5", err: locker.ErrBadMaxWait},
		{body: "wait api 1 1.5", err: locker.ErrBadMaxWait},
		{body: "wait api 1 5ms", err: locker.ErrBadMaxWait},
		{body: "wait api 1 soon", err: locker.ErrBadMaxWait},
	})
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

// TestParseRequestAllocsEveryForm extends TestProtocolAllocatesNothing
// to every verb, the legacy form and the error paths.
func TestParseRequestAllocsEveryForm(t *testing.T) {
	for _, s := range []string{"take api", "take api 5", "wait api 2 1500", "ping", "status", "let me go", "", "\xff\x00",
		"cancel api", "cancel api 1", "take  api", "take api 0", "wait api 1 -5", "take " + strings.Repeat("k", 129), "ping x", "take api 99999999999999999999\r\n",
		"status api", "status api 1", "status " + strings.Repeat("k", 129)} {
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

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"take api", "take api 5", "wait api 2 1500", "ping", "status", "let me go", "", "take  api", "wait a 1 99999999999999999999", "take api 1000000001\n",
		"cancel api", "cancel api 1", "cancel", "cancel ", "status api", "status tenant:7 1", "status *"} {
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
			want := r.Verb.String()
			if len(r.Key) > 0 {
				want += " " + string(r.Key)
				if err := locker.ValidKeyName(string(r.Key)); err != nil || r.Verb != locker.VerbStatus {
					t.Fatalf("%q: %v of key %q: %v", body, r.Verb, r.Key, err)
				}
			}
			if got := strings.TrimRight(orig, "\r\n"); got != want {
				t.Fatalf("%q parsed as %v %q", body, r.Verb, r.Key)
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

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
