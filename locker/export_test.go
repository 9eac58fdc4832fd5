package locker

import "time"

// SetPollInterval sets how long the loop of s may sleep with nothing to
// do; it must be called before Run. Tests use it to make a loop that
// fails to wake for a held wait fail for certain, not by a few
// milliseconds.
func SetPollInterval(s *Server, d time.Duration) { s.poll = d }

// The external tests (package locker_test) reach these unexported
// identifiers under their former exported names.

type (
	Verb        = reqVerb
	LockRequest = lockRequest
	LockResult  = lockResult
)

const (
	VerbTake        = verbTake
	VerbWait        = verbWait
	VerbLegacy      = verbLegacy
	VerbCancel      = verbCancel
	VerbPing        = verbPing
	VerbStatus      = verbStatus
	LockNone        = lockNone
	LockAcquire     = lockAcquire
	LockRenew       = lockRenew
	LockRelease     = lockRelease
	LockAbandon     = lockAbandon
	LockRevoke      = lockRevoke
	LockBreak       = lockBreak
	LockList        = lockList
	MaxLockFence    = maxLockFence
	MaxLockCapacity = maxLockCapacity
	MaxLockOwnerLen = maxLockOwnerLen
)

var (
	ParseRequest      = parseRequest
	ErrBadKey         = errBadKey
	ErrBadN           = errBadN
	ErrExtraArgs      = errExtraArgs
	ErrMalformed      = errMalformed
	ErrBadMaxWait     = errBadMaxWait
	ErrMissingKey     = errMissingKey
	AppendError       = appendError
	NewFixedWindow    = newFixedWindow
	NewLockTable      = newLockTable
	ParseLockRequest  = parseLockRequest
	AppendLockReply   = appendLockReply
	AppendLockRequest = appendLockRequest
	ErrBadLockMode    = errBadLockMode
	ErrBadLockName    = errBadLockName
	ErrBadLockOwner   = errBadLockOwner
	ErrTooManyLocks   = errTooManyLocks
	ErrBadLockFence   = errBadLockFence
	ErrBadLockTTL     = errBadLockTTL
	ErrMissingFence   = errMissingFence
	LocalEndpoint     = localEndpoint
)
