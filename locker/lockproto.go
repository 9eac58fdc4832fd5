package locker

// The lock verbs of the wire protocol (PROTOCOL.md, "Locks"). Like ParseRequest
// and AppendDecision, ParseLockRequest and AppendLockReply are pure and
// allocate nothing.
//
// WARNING: ONLY APPEND to the reply fields below. Their order is part of
// the protocol itself.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// MaxLockFence is the largest fence on the wire: 2^53-1, so that fences
// stay exact in JSON and in languages whose numbers are doubles.
const MaxLockFence = 1<<53 - 1

// maxTTLMS caps TTL_MS when parsing; the table caps it further.
const maxTTLMS = maxMaxWaitMS

// Errors from ParseLockRequest. Their text, less the "locker: " prefix, is
// what the server sends after "error ".
var (
	ErrBadLockTTL   = errors.New("locker: TTL_MS must be a non-negative integer")
	ErrBadLockFence = errors.New("locker: FENCE must be a positive integer up to 9007199254740991")
	ErrMissingFence = errors.New("locker: missing fence")
)

// ParseLockRequest parses the body (last frame) of a lock request. A body
// whose first token is not a lock verb gives Verb LockNone and no error:
// it is for ParseRequest. A lock verb with bad arguments is an error.
// ParseLockRequest does not allocate; Name and Owner alias body.
func ParseLockRequest(body []byte) (LockRequest, error) {
	for len(body) > 0 && (body[len(body)-1] == '\n' || body[len(body)-1] == '\r') {
		body = body[:len(body)-1]
	}
	word, rest, more := bytes.Cut(body, sp)
	r := LockRequest{MaxWait: -1}
	switch string(word) {
	case "acquire":
		r.Verb = LockAcquire
	case "renew":
		r.Verb = LockRenew
	case "release":
		r.Verb = LockRelease
	case "abandon":
		r.Verb = LockAbandon
	case "revoke":
		r.Verb = LockRevoke
	case "break":
		r.Verb = LockBreak
	case "locks":
		r.Verb = LockList
	default:
		return LockRequest{}, nil
	}
	if !more {
		if r.Verb == LockList {
			return r, nil
		}
		return r, ErrBadLockName
	}
	var tok []byte
	// next cuts the next token, refusing an empty one.
	next := func() bool {
		tok, rest, more = bytes.Cut(rest, sp)
		return len(tok) > 0
	}
	if !next() {
		return r, ErrMalformed
	}
	if !validKeyBytes(tok) {
		return r, ErrBadKey
	}
	r.Name = tok
	switch r.Verb {
	case LockRenew, LockRelease:
		if !more {
			return r, ErrMissingFence
		}
		if !next() {
			return r, ErrMalformed
		}
		f, ok := parseUint(tok, MaxLockFence)
		if !ok || f < 1 || f > MaxLockFence {
			return r, ErrBadLockFence
		}
		r.Fence = uint64(f)
		if !more || r.Verb == LockRelease {
			break
		}
		if !next() {
			return r, ErrMalformed
		}
		ms, ok := parseUint(tok, maxTTLMS)
		if !ok {
			return r, ErrBadLockTTL
		}
		r.TTL = time.Duration(min(ms, maxTTLMS)) * time.Millisecond
	case LockAcquire:
		if !more {
			break
		}
		if !next() {
			return r, ErrMalformed
		}
		switch string(tok) {
		case "exclusive":
			r.Mode = LockExclusive
		case "shared":
			r.Mode = LockShared
		default:
			return r, ErrBadLockMode
		}
		if !more {
			break
		}
		if !next() {
			return r, ErrMalformed
		}
		ms, ok := parseUint(tok, maxTTLMS)
		if !ok {
			return r, ErrBadLockTTL
		}
		r.TTL = time.Duration(min(ms, maxTTLMS)) * time.Millisecond
		if !more {
			break
		}
		if !next() {
			return r, ErrMalformed
		}
		ms, ok = parseUint(tok, maxMaxWaitMS)
		if !ok {
			return r, ErrBadMaxWait
		}
		r.MaxWait = time.Duration(min(ms, maxMaxWaitMS)) * time.Millisecond
		if !more {
			break
		}
		if !next() {
			return r, ErrMalformed
		}
		if !validOwner(tok) {
			return r, ErrBadLockOwner
		}
		r.Owner = tok
	}
	if more {
		return r, ErrExtraArgs
	}
	return r, nil
}

// Lock reply words.
const (
	wordLocked    = "locked"
	wordBusy      = "busy"
	wordRevoked   = "revoked"
	wordLost      = "lost"
	wordReleased  = "released"
	wordAbandoned = "abandoned"
	wordRevoking  = "revoking"
	wordBroken    = "broken"
	noOwner       = "-"
)

// leaseMillis rounds d down to whole milliseconds: a holder told its
// lease has that long left must not outlive it.
func leaseMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(d / time.Millisecond)
}

// AppendLockReply appends the reply to r, as of now, to buf:
//
//	locked FENCE LEASE_MS                 LockGranted
//	busy FREE_MS HOLDERS WAITERS OWNER    LockBusy (OWNER "-" if none)
//	revoked FENCE LEASE_MS                LockRevoked
//	lost FENCE                            LockLost, LockExpired
//	released FENCE                        LockReleased
//	abandoned COUNT                       LockAbandoned
//	revoking COUNT                        LockRevoking
//	broken COUNT FENCE                    LockBroken
//	error MESSAGE                         LockError
//
// LEASE_MS, the time left on the lease, is rounded down; FREE_MS is
// rounded up. A LockQueued result has no reply yet: buf is returned as it
// is.
func AppendLockReply(buf []byte, now time.Time, r LockResult) []byte {
	num := func(v uint64) { buf = append(buf, ' '); buf = strconv.AppendUint(buf, v, 10) }
	switch r.Status {
	case LockQueued:
		return buf
	case LockGranted, LockRevoked:
		if r.Status == LockGranted {
			buf = append(buf, wordLocked...)
		} else {
			buf = append(buf, wordRevoked...)
		}
		num(r.Fence)
		num(uint64(leaseMillis(r.Until.Sub(now))))
	case LockBusy:
		buf = append(buf, wordBusy...)
		num(uint64(millis(r.Until.Sub(now))))
		num(uint64(r.Holders))
		num(uint64(r.Waiters))
		buf = append(buf, ' ')
		if r.Owner == "" {
			buf = append(buf, noOwner...)
		} else {
			buf = append(buf, r.Owner...)
		}
	case LockLost, LockExpired:
		buf = append(buf, wordLost...)
		num(r.Fence)
	case LockReleased:
		buf = append(buf, wordReleased...)
		num(r.Fence)
	case LockAbandoned:
		buf = append(buf, wordAbandoned...)
		num(uint64(r.Count))
	case LockRevoking:
		buf = append(buf, wordRevoking...)
		num(uint64(r.Count))
	case LockBroken:
		buf = append(buf, wordBroken...)
		num(uint64(r.Count))
		num(r.Fence)
	default:
		err := r.Err
		if err == nil {
			err = ErrBadLockVerb
		}
		return AppendError(buf, err)
	}
	return buf
}

// LockReply is a parsed lock reply.
type LockReply struct {
	// Status is the reply's kind: LockGranted (locked), LockBusy,
	// LockRevoked, LockLost, LockReleased, LockAbandoned, LockRevoking,
	// LockBroken, or LockError.
	Status LockStatus
	Fence  uint64
	// Lease is the time left on the lease (locked, revoked).
	Lease time.Duration
	// Free is when the lock could be free (busy).
	Free             time.Duration
	Holders, Waiters int
	// Owner is the oldest holder's owner (busy), "" for "-".
	Owner string
	Count int
	// Text is the message of an error.
	Text string
}

// ParseLockReply parses the reply to a lock request other than a listing
// (which is JSON, see AppendLockList). Fields after those it knows are
// ignored, as the protocol only appends.
func ParseLockReply(body []byte) (LockReply, error) {
	word, rest, more := bytes.Cut(body, sp)
	var f [5][]byte
	n := 0
	for more && n < len(f) {
		f[n], rest, more = bytes.Cut(rest, sp)
		n++
	}
	bad := func() (LockReply, error) { return LockReply{}, fmt.Errorf("%w: %.64q", ErrBadReply, body) }
	var r LockReply
	// num parses field i as at most max.
	num := func(i int, max int64) (int64, bool) {
		v, ok := parseUint(f[i], max)
		return v, ok && v <= max
	}
	want := 0
	switch string(word) {
	case wordError:
		_, msg, _ := bytes.Cut(body, sp)
		return LockReply{Status: LockError, Text: string(msg)}, nil
	case wordLocked, wordRevoked:
		r.Status, want = LockGranted, 2
		if string(word) == wordRevoked {
			r.Status = LockRevoked
		}
	case wordBusy:
		r.Status, want = LockBusy, 4
	case wordLost:
		r.Status, want = LockLost, 1
	case wordReleased:
		r.Status, want = LockReleased, 1
	case wordAbandoned:
		r.Status, want = LockAbandoned, 1
	case wordRevoking:
		r.Status, want = LockRevoking, 1
	case wordBroken:
		r.Status, want = LockBroken, 2
	default:
		return bad()
	}
	if n < want {
		return bad()
	}
	var ok [4]bool
	var v [4]int64
	switch r.Status {
	case LockGranted, LockRevoked:
		v[0], ok[0] = num(0, MaxLockFence)
		v[1], ok[1] = num(1, maxTTLMS)
		r.Fence, r.Lease = uint64(v[0]), time.Duration(v[1])*time.Millisecond
		ok[2], ok[3] = v[0] > 0, true
	case LockBusy:
		v[0], ok[0] = num(0, maxTTLMS)
		v[1], ok[1] = num(1, MaxLimit)
		v[2], ok[2] = num(2, MaxLimit)
		ok[3] = validOwner(f[3]) && len(f[3]) > 0
		r.Free, r.Holders, r.Waiters = time.Duration(v[0])*time.Millisecond, int(v[1]), int(v[2])
		if string(f[3]) != noOwner {
			r.Owner = string(f[3])
		}
	case LockLost, LockReleased:
		v[0], ok[0] = num(0, MaxLockFence)
		r.Fence = uint64(v[0])
		ok[1], ok[2], ok[3] = v[0] > 0, true, true
	case LockAbandoned, LockRevoking:
		v[0], ok[0] = num(0, MaxLimit)
		r.Count = int(v[0])
		ok[1], ok[2], ok[3] = true, true, true
	case LockBroken:
		v[0], ok[0] = num(0, MaxLimit)
		v[1], ok[1] = num(1, MaxLockFence)
		r.Count, r.Fence = int(v[0]), uint64(v[1])
		ok[2], ok[3] = v[1] > 0, true
	}
	if !ok[0] || !ok[1] || !ok[2] || !ok[3] {
		return bad()
	}
	return r, nil
}

// lockListDoc is the JSON listing of locks. Durations are milliseconds
// from the moment of the reply, so that clients need no clock agreement;
// since_ms is a Unix time in milliseconds, for display.
type lockListDoc struct {
	Locks []lockListEntry `json:"locks"`
}

type lockListEntry struct {
	Name     string           `json:"name"`
	Capacity int              `json:"capacity"`
	Mode     string           `json:"mode"`
	Holders  []lockListHolder `json:"holders"`
	Waiters  []lockListWaiter `json:"waiters"`
}

type lockListHolder struct {
	Owner   string `json:"owner"`
	Fence   uint64 `json:"fence"`
	Mode    string `json:"mode"`
	SinceMS int64  `json:"since_ms"`
	HeldMS  int64  `json:"held_ms"`
	LeaseMS int64  `json:"lease_ms"`
	Revoked bool   `json:"revoked"`
}

type lockListWaiter struct {
	Owner    string `json:"owner"`
	Mode     string `json:"mode"`
	WaitedMS int64  `json:"waited_ms"`
	LeftMS   int64  `json:"left_ms"`
}

// AppendLockList appends the JSON listing of locks, as of now, to buf:
//
//	{"locks":[{"name":"nightly","capacity":1,"mode":"exclusive",
//	  "holders":[{"owner":"web1:4242","fence":1795510240123456,"mode":"exclusive",
//	    "since_ms":1795510240123,"held_ms":5000,"lease_ms":25000,"revoked":false}],
//	  "waiters":[{"owner":"web2:77","mode":"exclusive","waited_ms":1200,"left_ms":28800}]}]}
//
// A lock's mode is "free" while it has only waiters (during the grace
// period, or for the instant between a release and the next grant).
func AppendLockList(buf []byte, now time.Time, locks []LockInfo) []byte {
	doc := lockListDoc{Locks: make([]lockListEntry, len(locks))}
	for i, l := range locks {
		e := lockListEntry{Name: l.Name, Capacity: l.Capacity, Mode: l.Mode.String(),
			Holders: make([]lockListHolder, len(l.Holders)), Waiters: make([]lockListWaiter, len(l.Waiters))}
		if len(l.Holders) == 0 {
			e.Mode = "free"
		}
		for j, h := range l.Holders {
			e.Holders[j] = lockListHolder{Owner: h.Owner, Fence: h.Fence, Mode: h.Mode.String(),
				SinceMS: h.Since.UnixMilli(), HeldMS: now.Sub(h.Since).Milliseconds(), LeaseMS: leaseMillis(h.LeaseEnd.Sub(now)), Revoked: h.Revoked}
		}
		for j, w := range l.Waiters {
			e.Waiters[j] = lockListWaiter{Owner: w.Owner, Mode: w.Mode.String(),
				WaitedMS: now.Sub(w.Since).Milliseconds(), LeftMS: leaseMillis(w.Deadline.Sub(now))}
		}
		doc.Locks[i] = e
	}
	b, err := json.Marshal(doc)
	if err != nil { // cannot happen: the document has no maps, floats or interfaces
		return AppendError(buf, err)
	}
	return append(buf, b...)
}

// AppendLockRequest appends the body of r to buf, in the form
// ParseLockRequest reads. A negative MaxWait (the server's maximum) is
// written as the largest MAX_MS, which the server caps to its maximum.
func AppendLockRequest(buf []byte, r LockRequest) []byte {
	if r.Verb == LockNone || int(r.Verb) >= len(lockVerbNames) {
		return buf
	}
	buf = append(buf, lockVerbNames[r.Verb]...)
	if len(r.Name) == 0 {
		return buf
	}
	buf = append(buf, ' ')
	buf = append(buf, r.Name...)
	num := func(v int64) { buf = append(buf, ' '); buf = strconv.AppendInt(buf, v, 10) }
	switch r.Verb {
	case LockAcquire:
		buf = append(buf, ' ')
		buf = append(buf, r.Mode.String()...)
		num(r.TTL.Milliseconds())
		if r.MaxWait < 0 {
			num(maxMaxWaitMS)
		} else {
			num(millis(r.MaxWait))
		}
		if len(r.Owner) > 0 {
			buf = append(buf, ' ')
			buf = append(buf, r.Owner...)
		}
	case LockRenew:
		num(int64(r.Fence))
		if r.TTL > 0 {
			num(r.TTL.Milliseconds())
		}
	case LockRelease:
		num(int64(r.Fence))
	}
	return buf
}
