package peer

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/lockerd/lockerd/locker"
)

// Protocol versions this package encodes and accepts.
const (
	// Version is the version written by Encode for a message whose counts
	// carry no Need; VersionNeed the version of one whose counts do (each
	// count then has a fifth field). Members that only know version 1
	// refuse the second, so they only miss the messages of a member that
	// refuses requests larger than its strict share.
	Version     = 1
	VersionNeed = 2
	// MinVersion and MaxVersion bound the versions Decode accepts.
	MinVersion = 1
	MaxVersion = 2
)

// Size limits of messages.
const (
	// MaxMessageSize is the largest message Encode writes and Decode reads;
	// the SUB socket drops larger ones before they reach memory.
	MaxMessageSize = 64 << 10
	// MaxIDLen is the longest server id.
	MaxIDLen = 128
	// MaxMembers is the most members a federation may have.
	MaxMembers = 1024
	// maxCount bounds every count on the wire, far above locker.MaxLimit
	// times any plausible number of requests.
	maxCount = 1 << 62
)

// MsgType is the type of a message.
type MsgType uint8

// Message types.
const (
	// WARNING: ONLY APPEND TO THIS LIST! The numeric values are part of the protocol itself.

	// TypeHeartbeat announces the sender (id, clock, configuration digest,
	// mode and rank) and carries its full state.
	TypeHeartbeat MsgType = iota + 1
	// TypeCounts carries the counts and transfers that changed.
	TypeCounts
)

// String returns the type's name.
func (t MsgType) String() string {
	switch t {
	case TypeHeartbeat:
		return "heartbeat"
	case TypeCounts:
		return "counts"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Message is one message published by a member. Counts and transfers are
// cumulative: a receiver keeps the largest value it saw for each origin,
// so a message that is lost, duplicated or reordered neither loses nor
// doubles anything once a later one arrives.
type Message struct {
	Type MsgType
	// From is the sender's id.
	From string
	// Sent is the sender's clock when it sent the message, in Unix ns.
	Sent int64

	// Heartbeat fields (TypeHeartbeat only).

	// Digest identifies the sender's key configuration, mode and member
	// list; members with different digests do not agree on the limits.
	Digest uint64
	// Strict is set by a member in strict mode.
	Strict bool
	// Members and Rank are the sender's view of the federation size and
	// its own position in it.
	Members, Rank int

	// Counts are the sender's own grants per key and window.
	Counts []Count
	// Transfers are the tokens the sender handed to other members.
	Transfers []Transfer
}

// Count is what one member did with one key in one window: tokens granted
// and tokens asked for (granted or refused), both cumulative.
type Count struct {
	Key     string
	Window  int64
	Granted int64
	Asked   int64
	// Need is the largest request the member refused in the window
	// (strict mode), so that the others can hand it the tokens a request
	// larger than its share needs.
	Need int64
}

// Transfer records that the sender has handed Total tokens (cumulative) of
// Key in Window to the member To, having taken them out of its own budget.
type Transfer struct {
	To     string
	Key    string
	Window int64
	Total  int64
}

// ErrMalformed is wrapped by every error Decode returns.
var ErrMalformed = errors.New("peer: malformed message")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, a...)...)
}

// validID reports whether id is a usable server id: 1 to MaxIDLen bytes of
// printable ASCII without spaces.
func validID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLen {
		return fmt.Errorf("peer: id of %d bytes, want 1..%d", len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return fmt.Errorf("peer: id %q: character %q not allowed", id, id[i])
		}
	}
	return nil
}

// Encode appends the encoding of m to buf. It returns an error when m
// holds something Decode would refuse, or would exceed MaxMessageSize.
func Encode(buf []byte, m *Message) ([]byte, error) {
	start := len(buf)
	if m.Type != TypeHeartbeat && m.Type != TypeCounts {
		return buf, fmt.Errorf("peer: encode: unknown type %d", m.Type)
	}
	if err := validID(m.From); err != nil {
		return buf, err
	}
	version := byte(Version)
	for _, c := range m.Counts {
		if c.Need != 0 {
			version = VersionNeed
		}
	}
	buf = append(buf, version, byte(m.Type))
	buf = appendString(buf, m.From)
	buf = binary.BigEndian.AppendUint64(buf, uint64(m.Sent))
	var err error
	if m.Type == TypeHeartbeat {
		buf, err = appendHeartbeat(buf, m)
	}
	if err == nil {
		buf, err = appendCounts(buf, m.Counts, version)
	}
	if err == nil {
		buf, err = appendTransfers(buf, m.Transfers)
	}
	if err == nil && len(buf)-start > MaxMessageSize {
		err = fmt.Errorf("peer: encode: message of %d bytes exceeds %d", len(buf)-start, MaxMessageSize)
	}
	if err != nil {
		return buf[:start], err
	}
	return buf, nil
}

func appendHeartbeat(buf []byte, m *Message) ([]byte, error) {
	if m.Members < 1 || m.Members > MaxMembers || m.Rank < 0 || m.Rank >= m.Members {
		return buf, fmt.Errorf("peer: encode: rank %d of %d members", m.Rank, m.Members)
	}
	buf = binary.BigEndian.AppendUint64(buf, m.Digest)
	var flags byte
	if m.Strict {
		flags |= 1
	}
	buf = append(buf, flags)
	buf = binary.AppendUvarint(buf, uint64(m.Members))
	return binary.AppendUvarint(buf, uint64(m.Rank)), nil
}

func inRange(v int64) bool { return v >= 0 && v <= maxCount }

func appendCounts(buf []byte, counts []Count, version byte) ([]byte, error) {
	buf = binary.AppendUvarint(buf, uint64(len(counts)))
	for _, c := range counts {
		if err := locker.ValidKeyName(c.Key); err != nil {
			return buf, fmt.Errorf("peer: encode: %w", err)
		}
		if !inRange(c.Granted) || !inRange(c.Asked) || !inRange(c.Need) {
			return buf, fmt.Errorf("peer: encode: count out of range")
		}
		buf = appendString(buf, c.Key)
		buf = binary.AppendVarint(buf, c.Window)
		buf = binary.AppendUvarint(buf, uint64(c.Granted))
		buf = binary.AppendUvarint(buf, uint64(c.Asked))
		if version == VersionNeed {
			buf = binary.AppendUvarint(buf, uint64(c.Need))
		}
	}
	return buf, nil
}

func appendTransfers(buf []byte, transfers []Transfer) ([]byte, error) {
	buf = binary.AppendUvarint(buf, uint64(len(transfers)))
	for _, t := range transfers {
		if err := validID(t.To); err != nil {
			return buf, err
		}
		if err := locker.ValidKeyName(t.Key); err != nil {
			return buf, fmt.Errorf("peer: encode: %w", err)
		}
		if !inRange(t.Total) {
			return buf, fmt.Errorf("peer: encode: transfer out of range")
		}
		buf = appendString(buf, t.To)
		buf = appendString(buf, t.Key)
		buf = binary.AppendVarint(buf, t.Window)
		buf = binary.AppendUvarint(buf, uint64(t.Total))
	}
	return buf, nil
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// decoder reads fields from a message, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail(malformed("truncated at %s", what))
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u64(what string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail(malformed("truncated at %s", what))
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uvarint(what string, max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(malformed("bad varint at %s", what))
		return 0
	}
	if v > max {
		d.fail(malformed("%s %d above %d", what, v, max))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(malformed("bad varint at %s", what))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(what string, max int) string {
	n := d.uvarint(what+" length", uint64(max))
	if d.err != nil {
		return ""
	}
	if uint64(len(d.b)) < n {
		d.fail(malformed("truncated at %s", what))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// Minimum encoded sizes of a count and of a transfer, used to bound the
// number of entries a message may announce before they are read.
const (
	minCountSize    = 1 + 1 + 1 + 1 + 1 // key length, key, window, granted, asked
	minTransferSize = 1 + 1 + 1 + 1 + 1 + 1
)

// Decode parses one message. Every error wraps ErrMalformed; Decode does
// not panic on any input and does not allocate more than a small multiple
// of len(b).
func Decode(b []byte) (*Message, error) {
	if len(b) > MaxMessageSize {
		return nil, malformed("%d bytes exceeds %d", len(b), MaxMessageSize)
	}
	d := &decoder{b: b}
	v := d.byte("version")
	if d.err == nil && (v < MinVersion || v > MaxVersion) {
		return nil, malformed("version %d not in %d..%d", v, MinVersion, MaxVersion)
	}
	m := &Message{Type: MsgType(d.byte("type"))}
	if d.err == nil && m.Type != TypeHeartbeat && m.Type != TypeCounts {
		return nil, malformed("unknown type %d", m.Type)
	}
	m.From = d.string("sender id", MaxIDLen)
	d.check(validID(m.From))
	m.Sent = int64(d.u64("clock"))
	if m.Type == TypeHeartbeat {
		d.heartbeat(m)
	}
	m.Counts = d.counts(v)
	m.Transfers = d.transfers()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, malformed("%d trailing bytes", len(d.b))
	}
	return m, nil
}

// check records err, if any, as the reason the message is malformed.
func (d *decoder) check(err error) {
	if err != nil && d.err == nil {
		d.fail(fmt.Errorf("%w: %v", ErrMalformed, err))
	}
}

func (d *decoder) heartbeat(m *Message) {
	m.Digest = d.u64("digest")
	flags := d.byte("flags")
	if flags&^1 != 0 {
		d.fail(malformed("unknown flags %#x", flags))
	}
	m.Strict = flags&1 != 0
	m.Members = int(d.uvarint("members", MaxMembers))
	m.Rank = int(d.uvarint("rank", MaxMembers))
	if d.err == nil && (m.Members < 1 || m.Rank >= m.Members) {
		d.fail(malformed("rank %d of %d members", m.Rank, m.Members))
	}
}

func (d *decoder) counts(version byte) []Count {
	n := d.uvarint("count entries", uint64(len(d.b)/minCountSize))
	if d.err != nil || n == 0 {
		return nil
	}
	out := make([]Count, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		c := Count{Key: d.string("key", locker.MaxKeyLen)}
		c.Window = d.varint("window")
		c.Granted = int64(d.uvarint("granted", maxCount))
		c.Asked = int64(d.uvarint("asked", maxCount))
		if version == VersionNeed {
			c.Need = int64(d.uvarint("need", maxCount))
		}
		if d.err == nil {
			d.check(locker.ValidKeyName(c.Key))
		}
		out = append(out, c)
	}
	return out
}

func (d *decoder) transfers() []Transfer {
	n := d.uvarint("transfer entries", uint64(len(d.b)/minTransferSize))
	if d.err != nil || n == 0 {
		return nil
	}
	out := make([]Transfer, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		t := Transfer{To: d.string("transfer target", MaxIDLen)}
		t.Key = d.string("key", locker.MaxKeyLen)
		t.Window = d.varint("window")
		t.Total = int64(d.uvarint("transfer total", maxCount))
		if d.err == nil {
			d.check(validID(t.To))
		}
		if d.err == nil {
			d.check(locker.ValidKeyName(t.Key))
		}
		out = append(out, t)
	}
	return out
}
