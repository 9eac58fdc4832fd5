package locker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// TestParseRequestEdges covers the edges found while writing PROTOCOL.md.
func TestParseRequestEdges(t *testing.T) {
	tests := []struct {
		body    string
		verb    locker.Verb
		n       int64
		maxWait time.Duration
		err     error
	}{
		{body: "take api 1000000000", verb: locker.VerbTake, n: 1e9, maxWait: -1},
		{body: "take api 01000000000", verb: locker.VerbTake, n: 1e9, maxWait: -1},
		{body: "take api 1000000001", err: locker.ErrBadN},
		{body: "take api 5000000000", err: locker.ErrBadN},
		{body: "take api 99999999999999999999999", err: locker.ErrBadN},
		{body: "wait api 1 99999999999999999999999", verb: locker.VerbWait, n: 1, maxWait: 365 * 24 * time.Hour},
		{body: "ping\n", verb: locker.VerbPing},
		{body: "status\r\n", verb: locker.VerbStatus},
		{body: "take api 2\n", verb: locker.VerbTake, n: 2, maxWait: -1},
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
			if err != nil || r.Verb != tc.verb {
				t.Fatalf("ParseRequest(%q)=%+v, %v, want verb %v", tc.body, r, err, tc.verb)
			}
			if tc.n != 0 && (r.N != tc.n || r.MaxWait != tc.maxWait) {
				t.Fatalf("ParseRequest(%q) N=%d MaxWait=%v, want %d %v", tc.body, r.N, r.MaxWait, tc.n, tc.maxWait)
			}
		})
	}
}

func TestParseReplyIgnoresAppendedFields(t *testing.T) {
	r, err := locker.ParseReply([]byte("go 4 512 77 future-field"))
	if err != nil || !r.Decision.OK || r.Decision.Remaining != 4 || r.Decision.Window != 77 {
		t.Fatalf("ParseReply=%+v, %v", r, err)
	}
	if _, err := locker.ParseReply([]byte("go 4 512")); err == nil {
		t.Fatal("ParseReply accepted a go reply with a missing field")
	}
}
