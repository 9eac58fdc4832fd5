package locker

// The lock verbs of the wire protocol (PROTOCOL.md, "Locks"). Like parseRequest
// and AppendDecision, parseLockRequest and appendLockReply are pure and
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

// maxLockFence is the largest fence on the wire: 2^53-1, so that fences
// stay exact in JSON and in languages whose numbers are doubles.
const maxLockFence = 1<<53 - 1

// maxTTLMS caps TTL_MS when parsing; the table caps it further.
const maxTTLMS = maxMaxWaitMS

// Errors from parseLockRequest. Their text, less the "locker: " prefix, is
// what the server sends after "error ".
var (
	errBadLockTTL   = errors.New("locker: TTL_MS must be a non-negative integer")
	errBadLockFence = errors.New("locker: FENCE must be a positive integer up to 9007199254740991")
	errMissingFence = errors.New("locker: missing fence")
)

// parseLockRequest parses the body (last frame) of a lock request. A body
// whose first token is not a lock verb gives Verb lockNone and no error:
// it is for parseRequest. A lock verb with bad arguments is an error.
// parseLockRequest does not allocate; Name and Owner alias body.
func parseLockRequest(body []byte) (lockRequest, error) {
	for len(body) > 0 && (body[len(body)-1] == '\n' || body[len(body)-1] == '\r') {
		body = body[:len(body)-1]
	}
	word, rest, more := bytes.Cut(body, sp)
	r := lockRequest{MaxWait: -1, Verb: lockVerbOf(word)}
	if r.Verb == lockNone {
		return lockRequest{}, nil
	}
	if !more {
		if r.Verb == lockList {
			return r, nil
		}
		return r, errBadLockName
	}
	tok, a, err := lockArgs{rest: rest, more: more}.next()
	if err != nil {
		return r, err
	}
	if !validKeyBytes(tok) {
		return r, errBadKey
	}
	r.Name = tok
	// The parsers take and return values, so that neither r nor body
	// escapes to the heap.
	switch r.Verb {
	case lockAcquire:
		r, a, err = parseAcquireArgs(r, a)
	case lockRenew, lockRelease:
		r, a, err = parseFenceArgs(r, a)
	}
	if err == nil && a.more {
		err = errExtraArgs
	}
	return r, err
}

// lockVerbOf returns the lock verb written word, or lockNone.
func lockVerbOf(word []byte) lockVerb {
	for v, name := range lockVerbNames {
		if v != int(lockNone) && string(word) == name {
			return lockVerb(v)
		}
	}
	return lockNone
}

// lockArgs are the arguments of a lock request not parsed yet.
type lockArgs struct {
	rest []byte
	more bool // an argument follows
}

// next cuts the next argument, refusing an empty one, and returns the
// arguments after it.
func (a lockArgs) next() ([]byte, lockArgs, error) {
	tok, rest, more := bytes.Cut(a.rest, sp)
	a = lockArgs{rest: rest, more: more}
	if len(tok) == 0 {
		return nil, a, errMalformed
	}
	return tok, a, nil
}

// optional is next if an argument follows; at the end of the body it
// returns nil and no error.
func (a lockArgs) optional() ([]byte, lockArgs, error) {
	if !a.more {
		return nil, a, nil
	}
	return a.next()
}

// parseFenceArgs parses the arguments of renew (FENCE [TTL_MS]) and
// release (FENCE).
func parseFenceArgs(r lockRequest, a lockArgs) (lockRequest, lockArgs, error) {
	if !a.more {
		return r, a, errMissingFence
	}
	tok, a, err := a.next()
	if err != nil {
		return r, a, err
	}
	f, ok := parseUint(tok, maxLockFence)
	if !ok || f < 1 || f > maxLockFence {
		return r, a, errBadLockFence
	}
	r.Fence = uint64(f)
	if r.Verb == lockRelease {
		return r, a, nil
	}
	if tok, a, err = a.optional(); tok == nil {
		return r, a, err
	}
	r.TTL, err = parseLockTTL(tok)
	return r, a, err
}

// parseAcquireArgs parses the optional arguments of acquire:
// [MODE [TTL_MS [MAX_MS [OWNER]]]].
func parseAcquireArgs(r lockRequest, a lockArgs) (lockRequest, lockArgs, error) {
	tok, a, err := a.optional()
	if tok == nil {
		return r, a, err
	}
	switch string(tok) {
	case "exclusive":
		r.Mode = LockExclusive
	case "shared":
		r.Mode = LockShared
	default:
		return r, a, errBadLockMode
	}
	if tok, a, err = a.optional(); tok == nil {
		return r, a, err
	}
	if r.TTL, err = parseLockTTL(tok); err != nil {
		return r, a, err
	}
	if tok, a, err = a.optional(); tok == nil {
		return r, a, err
	}
	ms, ok := parseUint(tok, maxMaxWaitMS)
	if !ok {
		return r, a, errBadMaxWait
	}
	r.MaxWait = time.Duration(min(ms, maxMaxWaitMS)) * time.Millisecond
	if tok, a, err = a.optional(); tok == nil {
		return r, a, err
	}
	if !validOwner(tok) {
		return r, a, errBadLockOwner
	}
	r.Owner = tok
	return r, a, nil
}

// parseLockTTL parses the TTL_MS argument tok (0 if it is bad).
func parseLockTTL(tok []byte) (time.Duration, error) {
	ms, ok := parseUint(tok, maxTTLMS)
	if !ok {
		return 0, errBadLockTTL
	}
	return time.Duration(min(ms, maxTTLMS)) * time.Millisecond, nil
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

// appendLockReply appends the reply to r, as of now, to buf:
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
func appendLockReply(buf []byte, now time.Time, r lockResult) []byte {
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
			err = errBadLockVerb
		}
		return appendError(buf, err)
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
// (which is JSON, see appendLockList). Fields after those it knows are
// ignored, as the protocol only appends.
func ParseLockReply(body []byte) (LockReply, error) {
	word, rest, more := bytes.Cut(body, sp)
	if string(word) == wordError {
		return LockReply{Status: LockError, Text: string(rest)}, nil
	}
	var f [5][]byte
	n := 0
	for more && n < len(f) {
		f[n], rest, more = bytes.Cut(rest, sp)
		n++
	}
	for _, w := range lockReplyWords {
		if string(word) != w.word {
			continue
		}
		if n >= w.fields {
			if r, ok := parseLockReplyFields(w.status, &f); ok {
				return r, nil
			}
		}
		break
	}
	return LockReply{}, fmt.Errorf("%w: %.64q", ErrBadReply, body)
}

// lockReplyWords gives each reply word other than error its status and
// the number of fields it needs.
var lockReplyWords = [...]struct {
	word   string
	status LockStatus
	fields int
}{
	{wordLocked, LockGranted, 2},
	{wordBusy, LockBusy, 4},
	{wordRevoked, LockRevoked, 2},
	{wordLost, LockLost, 1},
	{wordReleased, LockReleased, 1},
	{wordAbandoned, LockAbandoned, 1},
	{wordRevoking, LockRevoking, 1},
	{wordBroken, LockBroken, 2},
}

// parseLockReplyFields parses the fields f of a reply of status st. It
// reports false if one is out of range.
func parseLockReplyFields(st LockStatus, f *[5][]byte) (LockReply, bool) {
	switch st {
	case LockGranted, LockRevoked:
		return parseLeaseReply(st, f)
	case LockBusy:
		return parseBusyReply(f)
	case LockLost, LockReleased:
		fence, ok := replyNum(f[0], maxLockFence)
		return LockReply{Status: st, Fence: uint64(fence)}, ok && fence > 0
	case LockAbandoned, LockRevoking:
		count, ok := replyNum(f[0], MaxLimit)
		return LockReply{Status: st, Count: int(count)}, ok
	}
	return parseBrokenReply(f)
}

// replyNum parses a reply field as an integer from 0 to max.
func replyNum(b []byte, max int64) (int64, bool) {
	v, ok := parseUint(b, max)
	return v, ok && v <= max
}

// parseLeaseReply parses FENCE LEASE_MS (locked, revoked).
func parseLeaseReply(st LockStatus, f *[5][]byte) (LockReply, bool) {
	fence, ok0 := replyNum(f[0], maxLockFence)
	lease, ok1 := replyNum(f[1], maxTTLMS)
	r := LockReply{Status: st, Fence: uint64(fence), Lease: time.Duration(lease) * time.Millisecond}
	return r, ok0 && ok1 && fence > 0
}

// parseBusyReply parses FREE_MS HOLDERS WAITERS OWNER (busy).
func parseBusyReply(f *[5][]byte) (LockReply, bool) {
	free, ok0 := replyNum(f[0], maxTTLMS)
	holders, ok1 := replyNum(f[1], MaxLimit)
	waiters, ok2 := replyNum(f[2], MaxLimit)
	if !ok0 || !ok1 || !ok2 || !validOwner(f[3]) || len(f[3]) == 0 {
		return LockReply{}, false
	}
	r := LockReply{Status: LockBusy, Free: time.Duration(free) * time.Millisecond, Holders: int(holders), Waiters: int(waiters)}
	if string(f[3]) != noOwner {
		r.Owner = string(f[3])
	}
	return r, true
}

// parseBrokenReply parses COUNT FENCE (broken).
func parseBrokenReply(f *[5][]byte) (LockReply, bool) {
	count, ok0 := replyNum(f[0], MaxLimit)
	fence, ok1 := replyNum(f[1], maxLockFence)
	return LockReply{Status: LockBroken, Count: int(count), Fence: uint64(fence)}, ok0 && ok1 && fence > 0
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

// appendLockList appends the JSON listing of locks, as of now, to buf:
//
//	{"locks":[{"name":"nightly","capacity":1,"mode":"exclusive",
//	  "holders":[{"owner":"web1:4242","fence":1795510240123456,"mode":"exclusive",
//	    "since_ms":1795510240123,"held_ms":5000,"lease_ms":25000,"revoked":false}],
//	  "waiters":[{"owner":"web2:77","mode":"exclusive","waited_ms":1200,"left_ms":28800}]}]}
//
// A lock's mode is "free" while it has only waiters (during the grace
// period, or for the instant between a release and the next grant).
func appendLockList(buf []byte, now time.Time, locks []lockInfo) []byte {
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
		return appendError(buf, err)
	}
	return append(buf, b...)
}

// lockRequestBody returns the body of r in a buffer of its own, with room
// for extra bytes more: one allocation.
func lockRequestBody(r lockRequest, extra int) []byte {
	// A verb, a mode and three numbers fit in 64 bytes.
	return appendLockRequest(make([]byte, 0, 64+len(r.Name)+len(r.Owner)+extra), r)
}

// appendLockRequest appends the body of r to buf, in the form
// parseLockRequest reads. A negative MaxWait (the server's maximum) is
// written as the largest MAX_MS, which the server caps to its maximum.
func appendLockRequest(buf []byte, r lockRequest) []byte {
	if r.Verb == lockNone || int(r.Verb) >= len(lockVerbNames) {
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
	case lockAcquire:
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
	case lockRenew:
		num(int64(r.Fence))
		if r.TTL > 0 {
			num(r.TTL.Milliseconds())
		}
	case lockRelease:
		num(int64(r.Fence))
	}
	return buf
}
