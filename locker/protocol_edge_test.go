package locker_test

import (
	"testing"

	"github.com/lockerd/lockerd/locker"
)

func TestParseReplyIgnoresAppendedFields(t *testing.T) {
	r, err := locker.ParseReply([]byte("go 4 512 77 future-field"))
	if err != nil || !r.Decision.OK || r.Decision.Remaining != 4 || r.Decision.Window != 77 {
		t.Fatalf("ParseReply=%+v, %v", r, err)
	}
	if _, err := locker.ParseReply([]byte("go 4 512")); err == nil {
		t.Fatal("ParseReply accepted a go reply with a missing field")
	}
}
