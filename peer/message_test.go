package peer

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func sampleMessages() []*Message {
	return []*Message{
		{Type: TypeHeartbeat, From: "a", Sent: 1, Digest: 0xdeadbeef, Strict: true, Members: 3, Rank: 2},
		{Type: TypeHeartbeat, From: "lockerd-1", Sent: -5, Members: 1,
			Counts: []Count{{Key: "api", Window: 17, Granted: 3, Asked: 9}}},
		{Type: TypeCounts, From: "b", Sent: 1 << 60,
			Counts:    []Count{{Key: "api", Window: -1, Granted: 0, Asked: 1}, {Key: "x.y", Window: 1 << 40, Granted: 1e9, Asked: 1e12}},
			Transfers: []Transfer{{To: "a", Key: "api", Window: 18, Total: 33}}},
		{Type: TypeCounts, From: "c"},
		{Type: TypeCounts, From: "d", Sent: 2,
			Counts: []Count{{Key: "api", Window: 3, Granted: 1, Asked: 7, Need: 2}, {Key: "b", Window: 3}}},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for i, m := range sampleMessages() {
		b, err := Encode(nil, m)
		if err != nil {
			t.Fatalf("%d: Encode: %v", i, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%d: Decode: %v", i, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%d: Decode(Encode(m))=%+v, want %+v", i, got, m)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	long := strings.Repeat("k", 200)
	for _, tc := range []struct {
		name string
		m    Message
	}{
		{"unknown type", Message{Type: 9, From: "a"}},
		{"empty id", Message{Type: TypeCounts}},
		{"id with space", Message{Type: TypeCounts, From: "a b"}},
		{"rank out of range", Message{Type: TypeHeartbeat, From: "a", Members: 2, Rank: 2}},
		{"no members", Message{Type: TypeHeartbeat, From: "a"}},
		{"bad key", Message{Type: TypeCounts, From: "a", Counts: []Count{{Key: "a b"}}}},
		{"long key", Message{Type: TypeCounts, From: "a", Counts: []Count{{Key: long}}}},
		{"negative count", Message{Type: TypeCounts, From: "a", Counts: []Count{{Key: "k", Granted: -1}}}},
		{"negative transfer", Message{Type: TypeCounts, From: "a", Transfers: []Transfer{{To: "b", Key: "k", Total: -1}}}},
		{"too big", Message{Type: TypeCounts, From: "a", Counts: make([]Count, 20000)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "too big" {
				for i := range tc.m.Counts {
					tc.m.Counts[i].Key = "key"
				}
			}
			b, err := Encode([]byte("x"), &tc.m)
			if err == nil {
				t.Fatalf("Encode succeeded, want error")
			}
			if !bytes.Equal(b, []byte("x")) {
				t.Errorf("Encode left %q in the buffer, want it unchanged", b)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := Encode(nil, sampleMessages()[2])
	if err != nil {
		t.Fatal(err)
	}
	hb, err := Encode(nil, sampleMessages()[0])
	if err != nil {
		t.Fatal(err)
	}
	withByte := func(b []byte, i int, v byte) []byte {
		c := bytes.Clone(b)
		c[i] = v
		return c
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated at version"},
		{"version 0", withByte(good, 0, 0), "version 0"},
		{"version 3", withByte(good, 0, 3), "version 3"},
		{"version 2 without need", withByte(good, 0, 2), "truncated"},
		{"type 0", withByte(good, 1, 0), "unknown type 0"},
		{"type 200", withByte(good, 1, 200), "unknown type 200"},
		{"truncated", good[:len(good)-1], "transfer total"},
		{"trailing", append(bytes.Clone(good), 0), "trailing"},
		{"id too long", []byte{1, 2, 200, 1}, "sender id length"},
		{"id with control char", []byte{1, 2, 1, 0x01}, "not allowed"},
		{"heartbeat flags", withByte(hb, 1+1+1+1+8+8, 0x80), "flags"},
		{"huge entry count", append(bytes.Clone(good[:12]), 0xff, 0xff, 0xff, 0x7f), "count entries"},
		{"oversized", make([]byte, MaxMessageSize+1), "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(tc.in)
			if err == nil {
				t.Fatalf("Decode=%+v, want error", m)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "peer: ") {
				t.Errorf("error %q, want it to start with peer: and contain %q", err, tc.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		b, err := Encode(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes.
		again, err := Encode(nil, m)
		if err != nil {
			t.Fatalf("Encode of a decoded message: %v", err)
		}
		m2, err := Decode(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip differs: %+v / %+v (%v)", m, m2, err)
		}
	})
}
