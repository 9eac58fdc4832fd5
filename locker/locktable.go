package locker

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Lock table defaults and limits.
const (
	// DefaultLockTTL is the lease of an acquisition that names none.
	DefaultLockTTL = 30 * time.Second
	// DefaultMaxLockTTL caps the lease a client may ask for, and is the
	// default grace period after a start.
	DefaultMaxLockTTL = 5 * time.Minute
	// MinLockTTL is the shortest lease: shorter requests are raised to it.
	MinLockTTL = 10 * time.Millisecond
	// DefaultMaxLockWait caps how long an acquisition is held waiting.
	DefaultMaxLockWait = 30 * time.Second
	// DefaultMaxLocks bounds the live locks (held or waited for).
	DefaultMaxLocks = 100_000
	// DefaultMaxLockWaiters bounds the queue of each lock.
	DefaultMaxLockWaiters = 10_000
	// DefaultMaxLockSlots bounds the holders and held acquisitions of
	// all locks together. A held lock takes about 430 bytes (go test
	// -run '^$' -bench LockTableHeld -benchtime 200000x ./locker/), so
	// the bound is about 110 MB.
	DefaultMaxLockSlots = 250_000
	// maxLockCapacity is the largest capacity a lock may be given.
	maxLockCapacity = 1_000_000
	// maxLockOwnerLen is the longest owner string, in bytes.
	maxLockOwnerLen = 64
)

// LockMode is how a lock is held or asked for. The zero value is
// LockExclusive.
type LockMode uint8

// Lock modes. An exclusive holder holds the lock alone; shared holders
// hold it together, up to the lock's capacity.
//
// WARNING: ONLY APPEND TO THIS LIST! The numeric values are part of the
// replicated log of a lock table (see lockVerb).
const (
	LockExclusive LockMode = iota
	LockShared
)

// String returns "exclusive" or "shared", the words of the wire protocol.
func (m LockMode) String() string {
	switch m {
	case LockExclusive:
		return "exclusive"
	case LockShared:
		return "shared"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// lockVerb is the kind of a lock request.
type lockVerb uint8

// WARNING: ONLY APPEND TO THIS LIST! The numeric values are part of the
// replicated log of a lock table (a consensus engine stores them).
const (
	// lockNone is the zero value: a body that is not a lock request.
	lockNone lockVerb = iota
	// lockAcquire is "acquire NAME [MODE [TTL_MS [MAX_MS [OWNER]]]]".
	lockAcquire
	// lockRenew is "renew NAME FENCE [TTL_MS]".
	lockRenew
	// lockRelease is "release NAME FENCE".
	lockRelease
	// lockAbandon is "abandon NAME": it withdraws a held acquisition.
	lockAbandon
	// lockRevoke is "revoke NAME": it asks the holders to release.
	lockRevoke
	// lockBreak is "break NAME": it frees the lock from its holders.
	lockBreak
	// lockList is "locks [NAME]": the listing.
	lockList
)

var lockVerbNames = [...]string{"", "acquire", "renew", "release", "abandon", "revoke", "break", "locks"}

// String returns the verb as it is written on the wire.
func (v lockVerb) String() string {
	if int(v) < len(lockVerbNames) && v != lockNone {
		return lockVerbNames[v]
	}
	return "lockverb(" + strconv.Itoa(int(v)) + ")"
}

// lockRequest is one input of a lockTable. parseLockRequest makes it from
// a request body; its byte slices then alias the body, and the table
// copies what it keeps.
type lockRequest struct {
	Verb lockVerb
	// Name is the lock name, a valid key name (see ValidKeyName). Empty
	// for a listing of every lock.
	Name []byte
	// Mode is the mode asked for by lockAcquire.
	Mode LockMode
	// TTL is the lease asked for by lockAcquire and lockRenew. Zero means
	// the table's default for an acquisition and the lease's current TTL
	// for a renewal. It is clamped to MinLockTTL..MaxTTL.
	TTL time.Duration
	// MaxWait is how long lockAcquire may be held waiting: 0 means not
	// at all, and a negative value means the table's MaxWait, which also
	// caps it.
	MaxWait time.Duration
	// Owner names the holder (lockAcquire): up to maxLockOwnerLen bytes
	// of printable ASCII without spaces. It may be empty.
	Owner []byte
	// Fence identifies the lease of lockRenew and lockRelease.
	Fence uint64
	// Ticket identifies the held acquisition of lockAbandon. It is not
	// on the wire: the server finds it from the request's envelope.
	Ticket uint64
}

// LockStatus is the kind of a lockResult.
type LockStatus uint8

// WARNING: ONLY APPEND TO THIS LIST! (see lockVerb)
const (
	// LockError: Err says why; nothing changed.
	LockError LockStatus = iota
	// LockGranted: the lease Fence is held until Until (an acquisition,
	// a waiter's grant, or a renewal).
	LockGranted
	// LockQueued: the acquisition is held as Ticket; its answer comes
	// later as a lockEvent (granted, or busy at its deadline).
	LockQueued
	// LockBusy: refused. Holders and Waiters are the lock's counts,
	// Owner the owner of its oldest holder, and Until when it could be
	// free if no holder renews (a hint, not a reservation).
	LockBusy
	// LockRevoked: a renewal of a revoked lease. The lease was not
	// extended: it still ends at Until.
	LockRevoked
	// LockLost: the lease Fence is not held (released, expired or
	// broken, or never given).
	LockLost
	// LockReleased: the lease Fence was released.
	LockReleased
	// LockAbandoned: Count held acquisitions (0 or 1) were withdrawn.
	LockAbandoned
	// LockRevoking: Count holders were asked to release.
	LockRevoking
	// LockBroken: Count holders were removed; Fence is a new fence above
	// all of theirs, which an operator can give the protected resource
	// to refuse the old holders at once.
	LockBroken
	// LockExpired: in a lockEvent only, the lease Fence of Owner ended
	// without renewal or release.
	LockExpired
)

var lockStatusNames = [...]string{"error", "granted", "queued", "busy", "revoked", "lost", "released", "abandoned", "revoking", "broken", "expired"}

// String returns the status's name.
func (s LockStatus) String() string {
	if int(s) < len(lockStatusNames) {
		return lockStatusNames[s]
	}
	return "lockstatus(" + strconv.Itoa(int(s)) + ")"
}

// lockResult is the outcome of one lockRequest, or of a held acquisition
// in a lockEvent. Which fields are set depends on Status.
type lockResult struct {
	Status LockStatus
	// Fence is the lease's fencing token (LockGranted, LockRevoked,
	// LockLost, LockReleased, LockExpired) or the new fence of LockBroken.
	Fence uint64
	// Ticket identifies a LockQueued acquisition.
	Ticket uint64
	// Until is when the lease ends (LockGranted, LockRevoked) or when the
	// lock could be free (LockBusy).
	Until time.Time
	// Holders and Waiters count the lock's holders and held
	// acquisitions (LockBusy).
	Holders, Waiters int
	// Owner is the oldest holder's owner (LockBusy) or the lease's owner
	// (LockExpired).
	Owner string
	// Count is the number of acquisitions withdrawn or holders asked or
	// removed (LockAbandoned, LockRevoking, LockBroken).
	Count int
	// Err says why a request failed (LockError).
	Err error
	// Since is when the lease was granted (LockReleased, LockExpired),
	// so that its hold time can be measured.
	Since time.Time
}

// lockEvent is something the table did on its own, at a deadline or
// because another request freed a lock: it answers the held acquisition
// Ticket (Result is LockGranted or LockBusy), or reports an expired lease
// (Ticket 0, Result LockExpired).
type lockEvent struct {
	Name   string
	Ticket uint64
	At     time.Time
	Result lockResult
}

// Errors from a lockTable.
var (
	errTooManyLocks = errors.New("locker: too many live locks")
	// errTooManyLockSlots refuses an acquisition beyond MaxSlots.
	errTooManyLockSlots = errors.New("locker: too many lock holders and waiters")
	errBadLockOwner     = errors.New("locker: OWNER must be up to 64 printable characters without spaces")
	errBadLockVerb      = errors.New("locker: not a lock table request")
	errBadLockName      = errors.New("locker: missing lock name")
	errBadLockMode      = errors.New("locker: MODE must be exclusive or shared")
)

// LockTableConfig configures a lockTable. The zero value is valid: mutexes
// only, with the defaults above.
type LockTableConfig struct {
	// Locks give capacities to lock names and templates. A name's own
	// spec wins over templates, and the longest matching prefix over
	// shorter ones. Others have capacity 1.
	Locks []LockSpec
	// DefaultTTL is the lease of an acquisition that asks for none. If
	// zero, DefaultLockTTL (or MaxTTL if lower) is used.
	DefaultTTL time.Duration
	// MaxTTL caps every lease. If zero, DefaultMaxLockTTL is used.
	MaxTTL time.Duration
	// MaxWait caps how long an acquisition is held. If zero,
	// DefaultMaxLockWait is used.
	MaxWait time.Duration
	// MaxLocks bounds the live locks. If zero, DefaultMaxLocks is used.
	MaxLocks int
	// MaxWaiters bounds each lock's queue. If zero,
	// DefaultMaxLockWaiters is used.
	MaxWaiters int
	// MaxSlots bounds the holders and held acquisitions of all locks
	// together, so that client-made names cannot take unbounded memory
	// (MaxLocks times MaxWaiters would be far too much). If zero,
	// DefaultMaxLockSlots is used.
	MaxSlots int
	// Grace is how long after start the table grants nothing and queues
	// acquisitions, so that no lease given before a restart can still be
	// held when the restarted table grants. It must be at least the
	// MaxTTL of the previous run. If zero, MaxTTL is used.
	Grace time.Duration
	// NoGrace skips the grace period. Set it only for a table that
	// holds every lease given before (restored from persisted state),
	// or on a first start, when no lease was given before.
	NoGrace bool
	// FenceFloor is below every fence the table gives; at most
	// maxLockFence/2. Fences also follow the clock (see lockTable), so
	// zero is safe across restarts whose clock does not go back; a
	// persisted high-water mark makes it safe regardless.
	FenceFloor uint64
}

// lockTable is the state of every lock: a deterministic state machine
// whose only inputs are LockRequests and instants, given to Apply and
// Advance. It reads no clock, starts no goroutine and does no I/O, so
// the same inputs in the same order give the same results on any
// replica.
//
// Time never goes back: an instant earlier than one already seen is
// taken as the latest seen. A lease runs from its grant for its TTL and
// is lost at its end instant; an acquisition is held until its deadline.
// At one instant, leases end before held acquisitions time out, so an
// acquisition whose lock is freed at the very instant its wait ends is
// granted.
//
// Fences are strictly increasing across every lock of the table: each
// is max(previous+1, grant time in Unix microseconds, FenceFloor+1). As
// lockerd cannot sustain a million grants per second, fences stay at the
// clock, so a restarted table, which grants only after its grace period,
// gives fences above the earlier run's unless the wall clock went back by
// more than the downtime plus the grace period. Microseconds keep fences
// below 2^53, exact in JSON and in doubles, until the year 2255.
//
// The zero value is not usable: call newLockTable. A lockTable is not
// safe for concurrent use: one goroutine (the server loop) owns it.
type lockTable struct {
	cfg       LockTableConfig
	exact     map[string]int
	templates []LockSpec // longest prefix first

	locks   map[string]*lockEntry
	held    map[uint64]*lockSlot // by fence
	waiting map[uint64]*lockSlot // by ticket
	timers  []*lockSlot          // min-heap on (at, waiting, id)
	peak    int

	now      time.Time
	graceEnd time.Time
	inGrace  bool
	fence    uint64
	ticket   uint64
	events   []lockEvent
	// lastOwner is the owner of the last acquisition (see owner).
	lastOwner string
}

// lockEntry is one live lock: it has holders or waiters, or both.
type lockEntry struct {
	name      string
	capacity  int
	exclusive bool // the holder is exclusive
	held      slotList
	waiters   slotList
}

// lockSlot is a holder or a held acquisition.
type lockSlot struct {
	lock    *lockEntry
	waiting bool
	ticket  uint64 // while waiting
	fence   uint64 // once held
	owner   string
	mode    LockMode
	since   time.Time // queued or granted at
	at      time.Time // deadline while waiting, lease end once held
	ttl     time.Duration
	revoked bool

	prev, next *lockSlot // in lock.held or lock.waiters
	hidx       int       // index in lockTable.timers
}

// Validate reports why cfg cannot configure a lock table, or nil.
func (cfg LockTableConfig) Validate() error {
	_, err := newLockTable(cfg, time.Time{})
	return err
}

// newLockTable checks cfg and returns an empty table that starts at start:
// its grace period, unless cfg.NoGrace, ends at start plus cfg.Grace.
func newLockTable(cfg LockTableConfig, start time.Time) (*lockTable, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	t := &lockTable{
		cfg:     cfg,
		exact:   make(map[string]int),
		locks:   make(map[string]*lockEntry),
		held:    make(map[uint64]*lockSlot),
		waiting: make(map[uint64]*lockSlot),
		now:     start,
		fence:   cfg.FenceFloor,
	}
	for _, s := range cfg.Locks {
		if err := t.addSpec(s); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(t.templates, func(a, b LockSpec) int { return len(b.Name) - len(a.Name) })
	if !cfg.NoGrace && cfg.Grace > 0 {
		t.inGrace, t.graceEnd = true, start.Add(cfg.Grace)
	}
	return t, nil
}

// withDefaults returns cfg with its zero fields set to their defaults.
func (cfg LockTableConfig) withDefaults() LockTableConfig {
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxLockTTL
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = min(DefaultLockTTL, cfg.MaxTTL)
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxLockWait
	}
	if cfg.MaxLocks == 0 {
		cfg.MaxLocks = DefaultMaxLocks
	}
	if cfg.MaxWaiters == 0 {
		cfg.MaxWaiters = DefaultMaxLockWaiters
	}
	if cfg.MaxSlots == 0 {
		cfg.MaxSlots = DefaultMaxLockSlots
	}
	if cfg.Grace == 0 {
		cfg.Grace = cfg.MaxTTL
	}
	return cfg
}

// check reports why cfg, with its defaults set, is out of range, or nil.
// The lock specs are checked as the table files them (addSpec).
func (cfg LockTableConfig) check() error {
	switch {
	case cfg.MaxTTL < MinLockTTL:
		return fmt.Errorf("locker: max lock TTL %s below the minimum %s", cfg.MaxTTL, MinLockTTL)
	case cfg.DefaultTTL < MinLockTTL || cfg.DefaultTTL > cfg.MaxTTL:
		return fmt.Errorf("locker: default lock TTL %s out of range %s..%s", cfg.DefaultTTL, MinLockTTL, cfg.MaxTTL)
	case cfg.MaxWait < 0:
		return fmt.Errorf("locker: negative max lock wait %s", cfg.MaxWait)
	case cfg.MaxLocks < 0:
		return fmt.Errorf("locker: negative max locks %d", cfg.MaxLocks)
	case cfg.MaxWaiters < 0:
		return fmt.Errorf("locker: negative max lock waiters %d", cfg.MaxWaiters)
	case cfg.MaxSlots < 0:
		return fmt.Errorf("locker: negative max lock holders and waiters %d", cfg.MaxSlots)
	case cfg.Grace < 0:
		return fmt.Errorf("locker: negative lock grace period %s", cfg.Grace)
	case cfg.FenceFloor > maxLockFence/2:
		return fmt.Errorf("locker: lock fence floor %d above %d", cfg.FenceFloor, uint64(maxLockFence/2))
	}
	return nil
}

// addSpec checks s and files it among the table's names or templates.
func (t *lockTable) addSpec(s LockSpec) error {
	if s.Capacity < 1 || s.Capacity > maxLockCapacity {
		return fmt.Errorf("locker: lock %s: capacity out of range 1..%d", s, maxLockCapacity)
	}
	if err := validKeyName(s.Name); err != nil {
		return fmt.Errorf("locker: lock %s: %w", s, err)
	}
	if !s.Template {
		if _, dup := t.exact[s.Name]; dup {
			return fmt.Errorf("locker: lock %s given twice", s.Name)
		}
		t.exact[s.Name] = s.Capacity
		return nil
	}
	for _, o := range t.templates {
		if o.Name == s.Name {
			return fmt.Errorf("locker: lock template %s* given twice", s.Name)
		}
	}
	t.templates = append(t.templates, s)
	return nil
}

// Capacity returns the capacity a lock named name has.
func (t *lockTable) Capacity(name string) int {
	if c, ok := t.exact[name]; ok {
		return c
	}
	for _, s := range t.templates {
		if strings.HasPrefix(name, s.Name) {
			return s.Capacity
		}
	}
	return 1
}

// Len returns the number of live locks: those held or waited for.
func (t *lockTable) Len() int { return len(t.locks) }
