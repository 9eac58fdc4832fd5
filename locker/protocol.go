package locker

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ProtocolVersion is the version of the text protocol described in
// PROTOCOL.md. New verbs and reply fields are only ever appended; a change
// that breaks existing clients would get a new version.
const ProtocolVersion = 1

// MinProtocolVersion and MaxProtocolVersion bound the protocol versions
// this package speaks. Both are 1: there has been no other.
const (
	MinProtocolVersion = 1
	MaxProtocolVersion = 1
)

// reqVerb is the kind of a request.
type reqVerb uint8

// WARNING: ONLY APPEND TO THIS LIST! The numeric values are part of the
// protocol itself (they appear in logs and metrics as numbers).
const (
	// verbLegacy is any request that does not start with a known verb,
	// such as the seed client's "let me go". It is answered as take
	// default 1, with a bare "go" or "sorry".
	verbLegacy reqVerb = iota
	// verbTake is "take KEY [N]".
	verbTake
	// verbWait is "wait KEY [N] [MAX_MS]".
	verbWait
	// verbPing is "ping".
	verbPing
	// verbStatus is "status", or "status KEY" for one key.
	verbStatus
	// verbCancel is "cancel KEY": it withdraws the waits held on KEY
	// that were sent with the same envelope as the cancel.
	verbCancel
)

var verbNames = [...]string{"legacy", "take", "wait", "ping", "status", "cancel"}

// String returns the verb's name.
func (v reqVerb) String() string {
	if int(v) < len(verbNames) {
		return verbNames[v]
	}
	return "verb(" + strconv.Itoa(int(v)) + ")"
}

// wireRequest is a parsed request.
type wireRequest struct {
	Verb reqVerb
	// Key is the key name. It aliases the parsed body. It is empty for
	// a status request of every key.
	Key []byte
	// N is the number of tokens asked for (1 if not given).
	N int64
	// MaxWait is the longest the client will wait (verbWait), or -1 when
	// the request does not say, meaning the server's maximum.
	MaxWait time.Duration
}

// wireError is an error whose text, after the package prefix, is sent to
// the client after "error ".
type wireError string

// Error returns the message with the package prefix.
func (e wireError) Error() string { return "locker: " + string(e) }

// Errors from parseRequest. Their text, less the "locker: " prefix, is what
// the server sends after "error ".
var (
	errMalformed  error = wireError("malformed request: tokens must be separated by single spaces")
	errMissingKey error = wireError("missing key")
	errBadKey     error = wireError("bad key name: 1 to 128 characters of A-Za-z0-9_.:/-")
	errBadN       error = wireError("N must be a positive integer up to 1000000000")
	errBadMaxWait error = wireError("MAX_MS must be a non-negative integer")
	errExtraArgs  error = wireError("too many arguments")
)

var legacyRequest = []byte(DefaultKey)

// maxMaxWaitMS caps MAX_MS when parsing; the server caps it further.
const maxMaxWaitMS = int64(365 * 24 * time.Hour / time.Millisecond)

// parseRequest parses the body (last frame) of a request. A body that does
// not start with a known verb is a legacy request for one token of
// DefaultKey. A known verb with bad arguments is an error. parseRequest
// does not allocate; the returned Key aliases body.
func parseRequest(body []byte) (wireRequest, error) {
	// A line ending from a shell tool is not part of the request.
	for len(body) > 0 && (body[len(body)-1] == '\n' || body[len(body)-1] == '\r') {
		body = body[:len(body)-1]
	}
	verb, rest, more := bytes.Cut(body, sp)
	r := wireRequest{Verb: lookupVerb(verb), N: 1, MaxWait: -1}
	switch r.Verb {
	case verbLegacy:
		return wireRequest{Verb: verbLegacy, Key: legacyRequest, N: 1, MaxWait: -1}, nil
	case verbPing:
		if more {
			return r, errExtraArgs
		}
		return r, nil
	case verbStatus:
		if !more {
			return r, nil
		}
		return parseStatusKey(r, rest)
	}
	if !more {
		return r, errMissingKey
	}
	return parseArgs(r, rest)
}

func lookupVerb(verb []byte) reqVerb {
	switch string(verb) {
	case "take":
		return verbTake
	case "wait":
		return verbWait
	case "ping":
		return verbPing
	case "status":
		return verbStatus
	case "cancel":
		return verbCancel
	}
	return verbLegacy
}

// parseStatusKey parses the KEY of "status KEY" into r.
func parseStatusKey(r wireRequest, rest []byte) (wireRequest, error) {
	tok, _, more := bytes.Cut(rest, sp)
	switch {
	case len(tok) == 0:
		return r, errMalformed
	case !validKeyBytes(tok):
		return r, errBadKey
	case more:
		return r, errExtraArgs
	}
	r.Key = tok
	return r, nil
}

// parseArgs parses "KEY [N [MAX_MS]]" into r, as far as r.Verb allows.
func parseArgs(r wireRequest, rest []byte) (wireRequest, error) {
	tok, rest, more := bytes.Cut(rest, sp)
	if len(tok) == 0 {
		return r, errMalformed
	}
	if !validKeyBytes(tok) {
		return r, errBadKey
	}
	r.Key = tok
	if !more {
		return r, nil
	}
	if r.Verb == verbCancel {
		return r, errExtraArgs
	}
	tok, rest, more = bytes.Cut(rest, sp)
	if len(tok) == 0 {
		return r, errMalformed
	}
	n, ok := parseUint(tok, MaxLimit)
	if !ok || n < 1 || n > MaxLimit {
		return r, errBadN // not a number, 0, or above any key's limit
	}
	r.N = n
	if !more {
		return r, nil
	}
	if r.Verb != verbWait {
		return r, errExtraArgs
	}
	tok, _, more = bytes.Cut(rest, sp)
	if len(tok) == 0 {
		return r, errMalformed
	}
	if more {
		return r, errExtraArgs
	}
	ms, ok := parseUint(tok, maxMaxWaitMS)
	if !ok {
		return r, errBadMaxWait
	}
	ms = min(ms, maxMaxWaitMS) // the server caps it anyway
	r.MaxWait = time.Duration(ms) * time.Millisecond
	return r, nil
}

var sp = []byte{' '}

func validKeyBytes(b []byte) bool {
	if len(b) == 0 || len(b) > MaxKeyLen {
		return false
	}
	for _, c := range b {
		if !keyChar(c) {
			return false
		}
	}
	return true
}

// parseUint parses a decimal number. A value above max is returned as
// max+1, however large, so callers can refuse or clamp it. It reports
// false for anything but digits.
func parseUint(b []byte, max int64) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if v <= max {
			v = v*10 + int64(c-'0')
		}
	}
	return min(v, max+1), true
}

// Reply words.
const (
	wordGo    = "go"
	wordSorry = "sorry"
	wordError = "error"
	wordPong  = "pong"
	// wordCancelled answers a cancel: "cancelled COUNT".
	wordCancelled = "cancelled"
)

// millis rounds d up to whole milliseconds, so that a client that waits
// that long is past the moment it was told about.
func millis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// AppendDecision appends the reply for d to buf: "go REMAINING RESET_MS
// WINDOW" or "sorry RETRY_MS WINDOW". With bare set (legacy requests) the
// reply is only "go" or "sorry".
func AppendDecision(buf []byte, d Decision, bare bool) []byte {
	if d.OK {
		buf = append(buf, wordGo...)
		if bare {
			return buf
		}
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, d.Remaining, 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, millis(d.Reset), 10)
	} else {
		buf = append(buf, wordSorry...)
		if bare {
			return buf
		}
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, millis(d.RetryAfter), 10)
	}
	buf = append(buf, ' ')
	return strconv.AppendInt(buf, d.Window, 10)
}

// appendError appends "error MESSAGE" for err to buf, without the
// package prefix of err's text.
func appendError(buf []byte, err error) []byte {
	buf = append(buf, wordError...)
	buf = append(buf, ' ')
	// errors.As would allocate its target; a plain walk of the chain
	// keeps every error reply allocation-free.
	for e := err; e != nil; e = errors.Unwrap(e) {
		if we, ok := e.(wireError); ok {
			return append(buf, we...)
		}
	}
	return append(buf, strings.TrimPrefix(err.Error(), "locker: ")...)
}

// appendCancelled appends the reply to a cancel that withdrew n held
// waits: "cancelled N".
func appendCancelled(buf []byte, n int) []byte {
	buf = append(buf, wordCancelled...)
	buf = append(buf, ' ')
	return strconv.AppendInt(buf, int64(n), 10)
}

// ReplyKind is the kind of a reply.
type ReplyKind uint8

// Reply kinds.
const (
	ReplyGo ReplyKind = iota + 1
	ReplySorry
	ReplyError
	ReplyPong
	ReplyStatus
	// ReplyCancelled answers a cancel; Text is the number of held waits
	// it withdrew.
	ReplyCancelled
)

// Reply is a parsed reply.
type Reply struct {
	Kind ReplyKind
	// Decision holds the fields of go and sorry replies. Bare replies
	// (from a legacy server) leave all but OK zero; Full tells them apart.
	Decision Decision
	// Full reports whether a go or sorry reply carried its fields.
	Full bool
	// Text is the message of an error, the server id of a pong, or the
	// JSON document of a status reply.
	Text string
	// Body is the whole reply as received.
	Body string
}

// ErrBadReply is returned by ParseReply for a reply it cannot read.
var ErrBadReply = errors.New("locker: unreadable reply")

// ParseReply parses a reply body. It accepts the full replies of this
// protocol and the bare "go"/"sorry" of the seed server.
func ParseReply(body []byte) (Reply, error) {
	r, err := parseReply(body)
	if err == nil {
		r.Body = string(body)
	}
	return r, err
}

func parseReply(body []byte) (Reply, error) {
	if len(body) > 0 && body[0] == '{' {
		return Reply{Kind: ReplyStatus, Text: string(body)}, nil
	}
	word, rest, more := bytes.Cut(body, sp)
	switch string(word) {
	case wordGo, wordSorry:
		return parseDecision(body, string(word) == wordGo, rest, more)
	case wordError:
		return Reply{Kind: ReplyError, Text: string(rest)}, nil
	case wordPong:
		return Reply{Kind: ReplyPong, Text: string(rest)}, nil
	case wordCancelled:
		if _, ok := parseUint(rest, math.MaxInt32); !ok || !more {
			return Reply{}, fmt.Errorf("%w: %q", ErrBadReply, body)
		}
		return Reply{Kind: ReplyCancelled, Text: string(rest)}, nil
	}
	return Reply{}, fmt.Errorf("%w: %.64q", ErrBadReply, body)
}

// parseDecision parses a go (ok) or sorry reply whose fields, if any
// (more), are rest.
func parseDecision(body []byte, ok bool, rest []byte, more bool) (Reply, error) {
	r := Reply{Kind: ReplySorry, Decision: Decision{OK: ok}}
	if ok {
		r.Kind = ReplyGo
	}
	if !more {
		return r, nil
	}
	f := bytes.Split(rest, sp)
	want := 2
	if ok {
		want = 3
	}
	// Fields are only ever appended: ignore any this version does
	// not know.
	if len(f) < want {
		return Reply{}, fmt.Errorf("%w: %q", ErrBadReply, body)
	}
	var v [3]int64
	for i, b := range f[:want] {
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return Reply{}, fmt.Errorf("%w: %q", ErrBadReply, body)
		}
		// Milliseconds beyond a year would overflow a Duration and
		// no window is that long: refuse rather than wrap.
		if isMS := ok && i == 1 || !ok && i == 0; isMS && (n < 0 || n > maxMaxWaitMS) {
			return Reply{}, fmt.Errorf("%w: %q", ErrBadReply, body)
		}
		v[i] = n
	}
	r.Full = true
	if ok {
		r.Decision.Remaining = v[0]
		r.Decision.Reset = time.Duration(v[1]) * time.Millisecond
		r.Decision.Window = v[2]
	} else {
		r.Decision.RetryAfter = time.Duration(v[0]) * time.Millisecond
		r.Decision.Reset = r.Decision.RetryAfter
		r.Decision.Window = v[1]
	}
	return r, nil
}
