package locker_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

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
		{body: "go 4 512 77 future-field", kind: locker.ReplyGo, full: true, d: locker.Decision{OK: true, Remaining: 4, Reset: 512 * time.Millisecond, Window: 77}},
		{body: "go 1 2 3 and more", kind: locker.ReplyGo, full: true, d: locker.Decision{OK: true, Remaining: 1, Reset: 2 * time.Millisecond, Window: 3}},
		{body: "sorry 1 2 3", kind: locker.ReplySorry, full: true, d: locker.Decision{Reset: time.Millisecond, RetryAfter: time.Millisecond, Window: 2}},
		{body: "sorry 31536000001 1", bad: true}, // would not fit a year
		{body: "sorry -1 1", bad: true},
		{body: "go 1 -1 2", bad: true},
		{body: "go 9223372036854775808 1 2", bad: true},
		{body: "go 1 2", bad: true},
		{body: "go 4 512", bad: true},
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
