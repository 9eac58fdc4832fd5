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
	// MaxLockCapacity is the largest capacity a lock may be given.
	MaxLockCapacity = 1_000_000
	// MaxLockOwnerLen is the longest owner string, in bytes.
	MaxLockOwnerLen = 64
)

// LockMode is how a lock is held or asked for. The zero value is
// LockExclusive.
type LockMode uint8

// Lock modes. An exclusive holder holds the lock alone; shared holders
// hold it together, up to the lock's capacity.
//
// WARNING: ONLY APPEND TO THIS LIST! The numeric values are part of the
// replicated log of a lock table (see LockVerb).
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

// LockVerb is the kind of a lock request.
type LockVerb uint8

// WARNING: ONLY APPEND TO THIS LIST! The numeric values are part of the
// replicated log of a lock table (a consensus engine stores them).
const (
	// LockNone is the zero value: a body that is not a lock request.
	LockNone LockVerb = iota
	// LockAcquire is "acquire NAME [MODE [TTL_MS [MAX_MS [OWNER]]]]".
	LockAcquire
	// LockRenew is "renew NAME FENCE [TTL_MS]".
	LockRenew
	// LockRelease is "release NAME FENCE".
	LockRelease
	// LockAbandon is "abandon NAME": it withdraws a held acquisition.
	LockAbandon
	// LockRevoke is "revoke NAME": it asks the holders to release.
	LockRevoke
	// LockBreak is "break NAME": it frees the lock from its holders.
	LockBreak
	// LockList is "locks [NAME]": the listing.
	LockList
)

var lockVerbNames = [...]string{"", "acquire", "renew", "release", "abandon", "revoke", "break", "locks"}

// String returns the verb as it is written on the wire.
func (v LockVerb) String() string {
	if int(v) < len(lockVerbNames) && v != LockNone {
		return lockVerbNames[v]
	}
	return "lockverb(" + strconv.Itoa(int(v)) + ")"
}

// LockRequest is one input of a LockTable. ParseLockRequest makes it from
// a request body; its byte slices then alias the body, and the table
// copies what it keeps.
type LockRequest struct {
	Verb LockVerb
	// Name is the lock name, a valid key name (see ValidKeyName). Empty
	// for a listing of every lock.
	Name []byte
	// Mode is the mode asked for by LockAcquire.
	Mode LockMode
	// TTL is the lease asked for by LockAcquire and LockRenew. Zero means
	// the table's default for an acquisition and the lease's current TTL
	// for a renewal. It is clamped to MinLockTTL..MaxTTL.
	TTL time.Duration
	// MaxWait is how long LockAcquire may be held waiting: 0 means not
	// at all, and a negative value means the table's MaxWait, which also
	// caps it.
	MaxWait time.Duration
	// Owner names the holder (LockAcquire): up to MaxLockOwnerLen bytes
	// of printable ASCII without spaces. It may be empty.
	Owner []byte
	// Fence identifies the lease of LockRenew and LockRelease.
	Fence uint64
	// Ticket identifies the held acquisition of LockAbandon. It is not
	// on the wire: the server finds it from the request's envelope.
	Ticket uint64
}

// LockStatus is the kind of a LockResult.
type LockStatus uint8

// WARNING: ONLY APPEND TO THIS LIST! (see LockVerb)
const (
	// LockError: Err says why; nothing changed.
	LockError LockStatus = iota
	// LockGranted: the lease Fence is held until Until (an acquisition,
	// a waiter's grant, or a renewal).
	LockGranted
	// LockQueued: the acquisition is held as Ticket; its answer comes
	// later as a LockEvent (granted, or busy at its deadline).
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
	// LockExpired: in a LockEvent only, the lease Fence of Owner ended
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

// LockResult is the outcome of one LockRequest, or of a held acquisition
// in a LockEvent. Which fields are set depends on Status.
type LockResult struct {
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

// LockEvent is something the table did on its own, at a deadline or
// because another request freed a lock: it answers the held acquisition
// Ticket (Result is LockGranted or LockBusy), or reports an expired lease
// (Ticket 0, Result LockExpired).
type LockEvent struct {
	Name   string
	Ticket uint64
	At     time.Time
	Result LockResult
}

// Errors from a LockTable.
var (
	ErrTooManyLocks = errors.New("locker: too many live locks")
	// ErrTooManyLockSlots refuses an acquisition beyond MaxSlots.
	ErrTooManyLockSlots = errors.New("locker: too many lock holders and waiters")
	ErrBadLockOwner     = errors.New("locker: OWNER must be up to 64 printable characters without spaces")
	ErrBadLockVerb      = errors.New("locker: not a lock table request")
	ErrBadLockName      = errors.New("locker: missing lock name")
	ErrBadLockMode      = errors.New("locker: MODE must be exclusive or shared")
)

const errLockSpecShape = "want NAME=CAPACITY or PREFIX*=CAPACITY, e.g. licence=4 or job:*=2"

// LockSpec gives a capacity to a lock name, or to every name that starts
// with Prefix when Template is set (written PREFIX*).
type LockSpec struct {
	Name     string
	Template bool
	Capacity int
}

// String formats the spec as ParseLockSpec reads it.
func (s LockSpec) String() string {
	if s.Template {
		return s.Name + "*=" + strconv.Itoa(s.Capacity)
	}
	return s.Name + "=" + strconv.Itoa(s.Capacity)
}

// ParseLockSpec parses NAME=CAPACITY (a semaphore of CAPACITY holders
// named NAME) or PREFIX*=CAPACITY (every lock whose name starts with
// PREFIX). The name or prefix uses key name characters; the capacity is
// 1 to MaxLockCapacity.
func ParseLockSpec(spec string) (LockSpec, error) {
	name, capText, ok := strings.Cut(spec, "=")
	if !ok {
		return LockSpec{}, fmt.Errorf("locker: lock spec %q: %s", spec, errLockSpecShape)
	}
	var s LockSpec
	if p, found := strings.CutSuffix(name, "*"); found {
		s.Template = true
		name = p
	}
	if s.Template && name == "" {
		return LockSpec{}, fmt.Errorf("locker: lock spec %q: a template needs a prefix before *", spec)
	}
	if err := validKeyName(name); err != nil {
		return LockSpec{}, fmt.Errorf("locker: lock spec %q: %w", spec, err)
	}
	c, err := strconv.Atoi(capText)
	if err != nil || c < 1 || c > MaxLockCapacity {
		return LockSpec{}, fmt.Errorf("locker: lock spec %q: capacity %q is not an integer from 1 to %d", spec, capText, MaxLockCapacity)
	}
	s.Name, s.Capacity = name, c
	return s, nil
}

// LockTableConfig configures a LockTable. The zero value is valid: mutexes
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
	// MaxLockFence/2. Fences also follow the clock (see LockTable), so
	// zero is safe across restarts whose clock does not go back; a
	// persisted high-water mark makes it safe regardless.
	FenceFloor uint64
}

// LockTable is the state of every lock: a deterministic state machine
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
// The zero value is not usable: call NewLockTable. A LockTable is not
// safe for concurrent use: one goroutine (the server loop) owns it.
type LockTable struct {
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
	events   []LockEvent
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
	hidx       int       // index in LockTable.timers
}

type slotList struct {
	head, tail *lockSlot
	n          int
}

func (l *slotList) push(s *lockSlot) {
	s.prev, s.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = s
	} else {
		l.head = s
	}
	l.tail = s
	l.n++
}

func (l *slotList) remove(s *lockSlot) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		l.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		l.tail = s.prev
	}
	s.prev, s.next = nil, nil
	l.n--
}

// Validate reports why cfg cannot configure a lock table, or nil.
func (cfg LockTableConfig) Validate() error {
	_, err := NewLockTable(cfg, time.Time{})
	return err
}

// NewLockTable checks cfg and returns an empty table that starts at start:
// its grace period, unless cfg.NoGrace, ends at start plus cfg.Grace.
func NewLockTable(cfg LockTableConfig, start time.Time) (*LockTable, error) {
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
	switch {
	case cfg.MaxTTL < MinLockTTL:
		return nil, fmt.Errorf("locker: max lock TTL %s below the minimum %s", cfg.MaxTTL, MinLockTTL)
	case cfg.DefaultTTL < MinLockTTL || cfg.DefaultTTL > cfg.MaxTTL:
		return nil, fmt.Errorf("locker: default lock TTL %s out of range %s..%s", cfg.DefaultTTL, MinLockTTL, cfg.MaxTTL)
	case cfg.MaxWait < 0:
		return nil, fmt.Errorf("locker: negative max lock wait %s", cfg.MaxWait)
	case cfg.MaxLocks < 0:
		return nil, fmt.Errorf("locker: negative max locks %d", cfg.MaxLocks)
	case cfg.MaxWaiters < 0:
		return nil, fmt.Errorf("locker: negative max lock waiters %d", cfg.MaxWaiters)
	case cfg.MaxSlots < 0:
		return nil, fmt.Errorf("locker: negative max lock holders and waiters %d", cfg.MaxSlots)
	case cfg.Grace < 0:
		return nil, fmt.Errorf("locker: negative lock grace period %s", cfg.Grace)
	case cfg.FenceFloor > MaxLockFence/2:
		return nil, fmt.Errorf("locker: lock fence floor %d above %d", cfg.FenceFloor, uint64(MaxLockFence/2))
	}
	t := &LockTable{
		cfg:     cfg,
		exact:   make(map[string]int),
		locks:   make(map[string]*lockEntry),
		held:    make(map[uint64]*lockSlot),
		waiting: make(map[uint64]*lockSlot),
		now:     start,
		fence:   cfg.FenceFloor,
	}
	for _, s := range cfg.Locks {
		if s.Capacity < 1 || s.Capacity > MaxLockCapacity {
			return nil, fmt.Errorf("locker: lock %s: capacity out of range 1..%d", s, MaxLockCapacity)
		}
		if err := validKeyName(s.Name); err != nil {
			return nil, fmt.Errorf("locker: lock %s: %w", s, err)
		}
		if !s.Template {
			if _, dup := t.exact[s.Name]; dup {
				return nil, fmt.Errorf("locker: lock %s given twice", s.Name)
			}
			t.exact[s.Name] = s.Capacity
			continue
		}
		for _, o := range t.templates {
			if o.Name == s.Name {
				return nil, fmt.Errorf("locker: lock template %s* given twice", s.Name)
			}
		}
		t.templates = append(t.templates, s)
	}
	slices.SortStableFunc(t.templates, func(a, b LockSpec) int { return len(b.Name) - len(a.Name) })
	if !cfg.NoGrace && cfg.Grace > 0 {
		t.inGrace, t.graceEnd = true, start.Add(cfg.Grace)
	}
	return t, nil
}

// Capacity returns the capacity a lock named name has.
func (t *LockTable) Capacity(name string) int {
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
func (t *LockTable) Len() int { return len(t.locks) }

// LockTableStats counts what a LockTable holds.
type LockTableStats struct {
	Locks, Holders, Waiters int
	// LastFence is the highest fence given so far (or FenceFloor).
	LastFence uint64
	// GraceEnd is when the grace period ends, or the zero time if the
	// table is not in it.
	GraceEnd time.Time
}

// Stats returns the table's counts.
func (t *LockTable) Stats() LockTableStats {
	st := LockTableStats{Locks: len(t.locks), Holders: len(t.held), Waiters: len(t.waiting), LastFence: t.fence}
	if t.inGrace {
		st.GraceEnd = t.graceEnd
	}
	return st
}

// NextDeadline returns the earliest instant at which Advance has work:
// a lease end, a held acquisition's deadline or the end of the grace
// period. It reports false when there is none.
func (t *LockTable) NextDeadline() (time.Time, bool) {
	var next time.Time
	ok := false
	if len(t.timers) > 0 {
		next, ok = t.timers[0].at, true
	}
	if t.inGrace && (!ok || t.graceEnd.Before(next)) {
		next, ok = t.graceEnd, true
	}
	return next, ok
}

// Advance moves the table to now: leases that ended are lost and their
// locks handed to the next waiters, held acquisitions whose deadline
// passed are refused, and the grace period ends. Each of these happens at
// its own instant, in order. What it did is collected by DrainEvents.
func (t *LockTable) Advance(now time.Time) { t.advance(now) }

// DrainEvents appends the events since the last call to dst and returns
// it. The table keeps no reference to them. Call it after every Apply
// and Advance: events are kept until then.
func (t *LockTable) DrainEvents(dst []LockEvent) []LockEvent {
	dst = append(dst, t.events...)
	clear(t.events)
	t.events = t.events[:0]
	return dst
}

// Apply advances the table to now and applies r. Events it causes (such
// as the grant of a lock to the next waiter after a release) are
// collected by DrainEvents. LockList is not applied: use Locks.
func (t *LockTable) Apply(now time.Time, r LockRequest) LockResult {
	now = t.advance(now)
	if r.Verb == LockNone || r.Verb >= LockList {
		return LockResult{Status: LockError, Err: ErrBadLockVerb}
	}
	if len(r.Name) == 0 {
		return LockResult{Status: LockError, Err: ErrBadLockName}
	}
	if !validKeyBytes(r.Name) {
		return LockResult{Status: LockError, Err: ErrBadKey}
	}
	switch r.Verb {
	case LockAcquire:
		return t.acquire(now, r)
	case LockRenew:
		return t.renew(now, r)
	case LockRelease:
		return t.release(now, r)
	case LockAbandon:
		return t.abandon(now, r)
	case LockRevoke:
		return t.revoke(r)
	}
	return t.breakLock(now, r)
}

func (t *LockTable) ttl(d time.Duration) time.Duration {
	if d == 0 {
		return t.cfg.DefaultTTL
	}
	return min(max(d, MinLockTTL), t.cfg.MaxTTL)
}

func (t *LockTable) acquire(now time.Time, r LockRequest) LockResult {
	if r.Mode != LockExclusive && r.Mode != LockShared {
		return LockResult{Status: LockError, Err: ErrBadLockMode}
	}
	if !validOwner(r.Owner) {
		return LockResult{Status: LockError, Err: ErrBadLockOwner}
	}
	maxWait := t.cfg.MaxWait
	if r.MaxWait >= 0 {
		maxWait = min(r.MaxWait, maxWait)
	}
	e := t.locks[string(r.Name)]
	if e == nil {
		if len(t.locks) >= t.cfg.MaxLocks {
			return LockResult{Status: LockError, Err: ErrTooManyLocks}
		}
		name := string(r.Name)
		e = &lockEntry{name: name, capacity: t.Capacity(name)}
		t.locks[name] = e
		t.peak = max(t.peak, len(t.locks))
	}
	grant := e.waiters.n == 0 && !t.inGrace && e.fits(r.Mode)
	deadline := now.Add(maxWait)
	if !grant && (maxWait == 0 || e.waiters.n >= t.cfg.MaxWaiters || t.inGrace && deadline.Before(t.graceEnd)) {
		res := t.busy(e, r.Mode, now)
		t.dropIfFree(e)
		return res
	}
	if len(t.held)+len(t.waiting) >= t.cfg.MaxSlots {
		t.dropIfFree(e)
		return LockResult{Status: LockError, Err: ErrTooManyLockSlots}
	}
	s := &lockSlot{lock: e, owner: string(r.Owner), mode: r.Mode, since: now, ttl: t.ttl(r.TTL), hidx: -1}
	if grant {
		t.grant(s, now)
		return LockResult{Status: LockGranted, Fence: s.fence, Until: s.at}
	}
	t.ticket++
	s.waiting, s.ticket, s.at = true, t.ticket, deadline
	e.waiters.push(s)
	t.waiting[s.ticket] = s
	t.push(s)
	return LockResult{Status: LockQueued, Ticket: s.ticket}
}

// fits reports whether an acquisition in mode m could hold e now.
func (e *lockEntry) fits(m LockMode) bool {
	if e.held.n == 0 {
		return true
	}
	return m == LockShared && !e.exclusive && e.held.n < e.capacity
}

// busy is the refusal of an acquisition in mode m of e at now.
func (t *LockTable) busy(e *lockEntry, m LockMode, now time.Time) LockResult {
	r := LockResult{Status: LockBusy, Holders: e.held.n, Waiters: e.waiters.n, Until: now}
	if h := e.held.head; h != nil {
		r.Owner = h.owner
		// An exclusive request waits for every holder, a shared one
		// for the first lease to end (all of them if the holder is
		// exclusive, and then there is one).
		first, last := h.at, h.at
		for s := h.next; s != nil; s = s.next {
			if s.at.Before(first) {
				first = s.at
			}
			if s.at.After(last) {
				last = s.at
			}
		}
		r.Until = last
		if m == LockShared && !e.exclusive {
			r.Until = first
		}
	}
	if t.inGrace && r.Until.Before(t.graceEnd) {
		r.Until = t.graceEnd
	}
	return r
}

// nextFence returns a fence above every one given, at the clock.
func (t *LockTable) nextFence(at time.Time) uint64 {
	f := t.fence + 1
	if us := at.UnixMicro(); us > 0 && uint64(us) > f {
		f = uint64(us)
	}
	t.fence = f
	return f
}

// grant makes s, not in any list, a holder of its lock at at.
func (t *LockTable) grant(s *lockSlot, at time.Time) {
	e := s.lock
	s.waiting = false
	s.fence = t.nextFence(at)
	s.since = at
	s.at = at.Add(s.ttl)
	e.held.push(s)
	e.exclusive = s.mode == LockExclusive
	t.held[s.fence] = s
	if s.hidx < 0 {
		t.push(s)
	} else {
		t.fix(s.hidx)
	}
}

// pump grants e to the waiters at the head of its queue that fit, in
// order, at at.
func (t *LockTable) pump(e *lockEntry, at time.Time) {
	if t.inGrace {
		return
	}
	for s := e.waiters.head; s != nil && e.fits(s.mode); s = e.waiters.head {
		e.waiters.remove(s)
		delete(t.waiting, s.ticket)
		t.grant(s, at)
		t.events = append(t.events, LockEvent{Name: e.name, Ticket: s.ticket, At: at,
			Result: LockResult{Status: LockGranted, Fence: s.fence, Until: s.at}})
	}
}

// dropIfFree forgets e if nobody holds or waits for it.
func (t *LockTable) dropIfFree(e *lockEntry) {
	if e.held.n > 0 || e.waiters.n > 0 {
		return
	}
	delete(t.locks, e.name)
	if len(t.locks) == 0 && t.peak > 1024 {
		// Go maps keep their buckets: start afresh so that memory
		// returns to where it was after a burst of names.
		t.locks = make(map[string]*lockEntry)
		t.held = make(map[uint64]*lockSlot)
		t.waiting = make(map[uint64]*lockSlot)
		t.timers = nil
		t.peak = 0
	}
}

// unhold removes the holder s from its lock and the timers.
func (t *LockTable) unhold(s *lockSlot) {
	s.lock.held.remove(s)
	delete(t.held, s.fence)
	if s.hidx >= 0 {
		t.remove(s.hidx)
	}
}

// holder returns the lease fence of the lock name, or nil.
func (t *LockTable) holder(name []byte, fence uint64) *lockSlot {
	s := t.held[fence]
	if s == nil || s.lock.name != string(name) {
		return nil
	}
	return s
}

func (t *LockTable) renew(now time.Time, r LockRequest) LockResult {
	s := t.holder(r.Name, r.Fence)
	if s == nil {
		return LockResult{Status: LockLost, Fence: r.Fence}
	}
	if s.revoked {
		return LockResult{Status: LockRevoked, Fence: s.fence, Until: s.at}
	}
	if r.TTL != 0 {
		s.ttl = t.ttl(r.TTL)
	}
	s.at = now.Add(s.ttl)
	t.fix(s.hidx)
	return LockResult{Status: LockGranted, Fence: s.fence, Until: s.at}
}

func (t *LockTable) release(now time.Time, r LockRequest) LockResult {
	s := t.holder(r.Name, r.Fence)
	if s == nil {
		return LockResult{Status: LockLost, Fence: r.Fence}
	}
	t.unhold(s)
	t.pump(s.lock, now)
	t.dropIfFree(s.lock)
	return LockResult{Status: LockReleased, Fence: s.fence, Since: s.since}
}

func (t *LockTable) abandon(now time.Time, r LockRequest) LockResult {
	s := t.waiting[r.Ticket]
	if s == nil || s.lock.name != string(r.Name) {
		return LockResult{Status: LockAbandoned}
	}
	t.unwait(s, now)
	return LockResult{Status: LockAbandoned, Count: 1}
}

// unwait removes the waiter s, letting those behind it move up.
func (t *LockTable) unwait(s *lockSlot, at time.Time) {
	e := s.lock
	wasHead := e.waiters.head == s
	e.waiters.remove(s)
	delete(t.waiting, s.ticket)
	if s.hidx >= 0 {
		t.remove(s.hidx)
	}
	if wasHead {
		t.pump(e, at)
	}
	t.dropIfFree(e)
}

func (t *LockTable) revoke(r LockRequest) LockResult {
	e := t.locks[string(r.Name)]
	if e == nil {
		return LockResult{Status: LockRevoking}
	}
	for s := e.held.head; s != nil; s = s.next {
		s.revoked = true
	}
	return LockResult{Status: LockRevoking, Count: e.held.n}
}

func (t *LockTable) breakLock(now time.Time, r LockRequest) LockResult {
	res := LockResult{Status: LockBroken}
	e := t.locks[string(r.Name)]
	if e != nil {
		for s := e.held.head; s != nil; s = e.held.head {
			t.unhold(s)
			res.Count++
		}
	}
	res.Fence = t.nextFence(now)
	if e != nil {
		t.pump(e, now)
		t.dropIfFree(e)
	}
	return res
}

// advance runs the timers up to now and returns now, or the latest
// instant already seen if now is earlier.
func (t *LockTable) advance(now time.Time) time.Time {
	if now.Before(t.now) {
		now = t.now
	}
	for {
		var top *lockSlot
		if len(t.timers) > 0 {
			top = t.timers[0]
		}
		// At one instant: lease ends, then the end of grace, then
		// waiter deadlines.
		if t.inGrace && (top == nil || t.graceEnd.Before(top.at) || t.graceEnd.Equal(top.at) && top.waiting) {
			if t.graceEnd.After(now) {
				break
			}
			t.now = t.graceEnd
			t.endGrace()
			continue
		}
		if top == nil || top.at.After(now) {
			break
		}
		at := top.at
		t.now = at
		t.remove(0)
		e := top.lock
		if top.waiting {
			e.waiters.remove(top)
			delete(t.waiting, top.ticket)
			res := t.busy(e, top.mode, at)
			t.events = append(t.events, LockEvent{Name: e.name, Ticket: top.ticket, At: at, Result: res})
			t.pump(e, at) // those behind a blocked head may fit
		} else {
			t.unhold(top)
			t.events = append(t.events, LockEvent{Name: e.name, At: at,
				Result: LockResult{Status: LockExpired, Fence: top.fence, Owner: top.owner, Since: top.since}})
			t.pump(e, at)
		}
		t.dropIfFree(e)
	}
	t.now = now
	return now
}

// endGrace ends the grace period and serves the queues, in name order so
// that replicas agree on the fences.
func (t *LockTable) endGrace() {
	t.inGrace = false
	names := make([]string, 0, len(t.locks))
	for name, e := range t.locks {
		if e.waiters.n > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		t.pump(t.locks[name], t.graceEnd)
	}
}

// The timers form a binary min-heap of slots, each knowing its index, so
// that a renewal or release moves or removes its slot in O(log n).

func slotLess(a, b *lockSlot) bool {
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	if a.waiting != b.waiting {
		return !a.waiting // lease ends first
	}
	if a.waiting {
		return a.ticket < b.ticket
	}
	return a.fence < b.fence
}

func (t *LockTable) push(s *lockSlot) {
	s.hidx = len(t.timers)
	t.timers = append(t.timers, s)
	t.up(s.hidx)
}

func (t *LockTable) remove(i int) {
	last := len(t.timers) - 1
	s := t.timers[i]
	if i != last {
		t.swap(i, last)
	}
	t.timers[last] = nil
	t.timers = t.timers[:last]
	s.hidx = -1
	if i != last {
		t.fix(i)
	}
}

func (t *LockTable) fix(i int) {
	if !t.down(i) {
		t.up(i)
	}
}

func (t *LockTable) swap(i, j int) {
	t.timers[i], t.timers[j] = t.timers[j], t.timers[i]
	t.timers[i].hidx = i
	t.timers[j].hidx = j
}

func (t *LockTable) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !slotLess(t.timers[i], t.timers[p]) {
			return
		}
		t.swap(i, p)
		i = p
	}
}

func (t *LockTable) down(i int) bool {
	i0, n := i, len(t.timers)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && slotLess(t.timers[r], t.timers[l]) {
			c = r
		}
		if !slotLess(t.timers[c], t.timers[i]) {
			break
		}
		t.swap(i, c)
		i = c
	}
	return i > i0
}

func validOwner(b []byte) bool {
	if len(b) > MaxLockOwnerLen {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// LockHolderInfo describes one holder in a listing.
type LockHolderInfo struct {
	Owner    string
	Fence    uint64
	Mode     LockMode
	Since    time.Time
	LeaseEnd time.Time
	Revoked  bool
}

// LockWaiterInfo describes one held acquisition in a listing.
type LockWaiterInfo struct {
	Owner    string
	Mode     LockMode
	Since    time.Time
	Deadline time.Time
}

// LockInfo describes one live lock.
type LockInfo struct {
	Name     string
	Capacity int
	// Mode is the holders' mode; meaningless without holders.
	Mode    LockMode
	Holders []LockHolderInfo // in grant order
	Waiters []LockWaiterInfo // in queue order
}

// Lock returns the state of the lock name, and false if it is not live.
func (t *LockTable) Lock(name string) (LockInfo, bool) {
	e := t.locks[name]
	if e == nil {
		return LockInfo{}, false
	}
	return e.info(), true
}

// Locks appends every live lock to dst, sorted by name.
func (t *LockTable) Locks(dst []LockInfo) []LockInfo {
	n := len(dst)
	for _, e := range t.locks {
		dst = append(dst, e.info())
	}
	slices.SortFunc(dst[n:], func(a, b LockInfo) int { return strings.Compare(a.Name, b.Name) })
	return dst
}

func (e *lockEntry) info() LockInfo {
	li := LockInfo{Name: e.name, Capacity: e.capacity, Mode: LockShared}
	if e.exclusive {
		li.Mode = LockExclusive
	}
	for s := e.held.head; s != nil; s = s.next {
		li.Holders = append(li.Holders, LockHolderInfo{Owner: s.owner, Fence: s.fence, Mode: s.mode, Since: s.since, LeaseEnd: s.at, Revoked: s.revoked})
	}
	for s := e.waiters.head; s != nil; s = s.next {
		li.Waiters = append(li.Waiters, LockWaiterInfo{Owner: s.owner, Mode: s.mode, Since: s.since, Deadline: s.at})
	}
	return li
}
