package locker

import (
	"fmt"
	"time"
)

// This file holds what a federation layer (package peer) needs from a
// Counter: the tokens granted here per key and window, the tokens others
// granted, and, in strict mode, a per-window budget that local grants never
// exceed. A Counter that is not federated pays one nil check per take.

// FederationConfig turns a Counter into one member of a federation.
type FederationConfig struct {
	// Strict bounds the tokens this counter grants in each window by its
	// budget: its static Share of the limit, minus tokens given to other
	// members (GiveAt), plus tokens received from them (SetReceivedAt).
	// When false (shared mode), local grants are bounded by the limit
	// minus the remote grants reported by SetRemoteAt and minus the
	// tokens reserved for others by SetReserveAt.
	Strict bool
	// Members is the number of members of the federation, this one
	// included; Rank is this member's position among them, 0-based.
	Members, Rank int
	// Fence is when this member started. In strict mode it grants nothing
	// in the window that contains Fence nor in the next one: an earlier
	// run of the same member may have granted in the first before it
	// stopped, and may have given its share of the second away.
	Fence time.Time
}

// Share returns the static share of limit owned by the member of the given
// rank among members: limit/members, plus one for the first limit%members
// ranks, so that the shares sum to limit.
func Share(limit int64, members, rank int) int64 {
	if members < 1 || rank < 0 || rank >= members {
		return 0
	}
	s := limit / int64(members)
	if int64(rank) < limit%int64(members) {
		s++
	}
	return s
}

type fedConfig struct {
	FederationConfig
	fence int64 // Fence in Unix ns
}

// fedKey is the federation state of one key. It is guarded by the
// Counter's mutex, like the FixedWindow that points to it.
type fedKey struct {
	cfg *fedConfig
	// asked counts the tokens requested in the current window, granted
	// or not: the demand that strict shares follow.
	asked int64
	// need is the largest request refused in the current window.
	need int64
	// budget is the strict budget of the current window.
	budget int64
	// reserve is, in shared mode, the tokens of the current window kept
	// for other members.
	reserve int64
	// prev* describe the window before the current one.
	prevWindow, prevGranted, prevAsked int64
	// wins holds what is known about the current and the next windows.
	wins map[int64]*fedWin
}

// fedWin is what a key knows about one window besides its own grants.
type fedWin struct {
	extra    int64 // granted by others (SetRemoteAt)
	reserve  int64 // kept for others (SetReserveAt)
	given    int64 // given away by this member (GiveAt)
	received int64 // received from others (SetReceivedAt)
}

// maxAhead is how many windows past the current one federation state is
// kept for; anything further ahead is ignored, so a peer with a clock far
// in the future cannot make the maps grow.
const maxAhead = 2

// EnableFederation makes c a member of a federation: from now on, and for
// keys added by Reconfigure, it tracks demand and, in strict mode, budgets.
// It may be called once.
func (c *Counter) EnableFederation(fc FederationConfig) error {
	if fc.Members < 1 || fc.Rank < 0 || fc.Rank >= fc.Members {
		return fmt.Errorf("locker: federation rank %d of %d members out of range", fc.Rank, fc.Members)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fed != nil {
		return fmt.Errorf("locker: federation already enabled")
	}
	c.fed = &fedConfig{FederationConfig: fc, fence: fc.Fence.UnixNano()}
	c.attachFederation(c.keys)
	return nil
}

// attachFederation gives every fixed-window key of m that has none a
// federation state. It requires that c.mu is held, or that m is not yet
// shared.
func (c *Counter) attachFederation(m map[string]*keyState) {
	if c.fed == nil {
		return
	}
	for _, ks := range m {
		if f, ok := ks.alg.(*FixedWindow); ok && f.fed == nil {
			f.fed = &fedKey{cfg: c.fed, wins: make(map[int64]*fedWin)}
			if f.current != noWindow {
				f.fed.enter(f, f.current)
			}
		}
	}
}

// win returns the state of window k, creating it.
func (fk *fedKey) win(k int64) *fedWin {
	w := fk.wins[k]
	if w == nil {
		w = &fedWin{}
		fk.wins[k] = w
	}
	return w
}

// budgetFor returns the strict budget of window k of f.
func (fk *fedKey) budgetFor(f *FixedWindow, k int64) int64 {
	if !fk.cfg.Strict {
		return f.limit
	}
	if fk.cfg.fence != 0 && k <= fk.cfg.fence/f.window+1 {
		return 0
	}
	b := Share(f.limit, fk.cfg.Members, fk.cfg.Rank)
	if w := fk.wins[k]; w != nil {
		b += w.received - w.given
	}
	if b < 0 {
		b = 0
	}
	return b
}

// leave is called before f moves from its current window to window k.
func (fk *fedKey) leave(f *FixedWindow, k int64) {
	if f.current == k-1 {
		fk.prevWindow, fk.prevGranted, fk.prevAsked = f.current, f.granted, fk.asked
	} else {
		fk.prevWindow, fk.prevGranted, fk.prevAsked = k-1, 0, 0
	}
	fk.asked, fk.need = 0, 0
}

// enter is called after f moved to window k.
func (fk *fedKey) enter(f *FixedWindow, k int64) {
	for w := range fk.wins {
		if w < k {
			delete(fk.wins, w)
		}
	}
	fk.reserve = 0
	if w := fk.wins[k]; w != nil {
		f.extra, fk.reserve = w.extra, w.reserve
	}
	fk.budget = fk.budgetFor(f, k)
}

// take is FixedWindow.TakeAt for a federated key; f is in window k with
// left nanoseconds to go.
func (fk *fedKey) take(f *FixedWindow, k, left, n int64) Decision {
	fk.asked += n
	rem := f.limit - f.granted - f.extra
	if fk.cfg.Strict {
		if b := fk.budget - f.granted; b < rem {
			rem = b
		}
	} else {
		rem -= fk.reserve
	}
	if n <= rem {
		f.granted += n
		return Decision{OK: true, Remaining: rem - n, Reset: time.Duration(left), Window: k}
	}
	fk.need = max(fk.need, n)
	return Decision{Reset: time.Duration(left), RetryAfter: time.Duration(left), Window: k}
}

// fedKeyAt rolls key to now and returns its window and federation state,
// or nil. It requires that c.mu is held.
func (c *Counter) fedKeyAt(now time.Time, key string) (*FixedWindow, *fedKey, int64) {
	ks := c.keys[key]
	if ks == nil {
		return nil, nil, 0
	}
	f, ok := ks.alg.(*FixedWindow)
	if !ok || f.fed == nil {
		return nil, nil, 0
	}
	k, _ := f.roll(now.UnixNano())
	return f, f.fed, k
}

// LocalCount is what one key of a federated counter has done itself.
type LocalCount struct {
	KeyConfig
	// Index is the current window. Granted and Asked are the tokens
	// granted here and requested here (granted or refused) in it; Budget
	// is the strict budget of it (the limit in shared mode).
	Index, Granted, Asked, Budget int64
	// Need is the largest request refused in window Index.
	Need int64
	// PrevGranted and PrevAsked are the same for window Index-1.
	PrevGranted, PrevAsked int64
	// Remote is the tokens granted by others in window Index as last set
	// by SetRemoteAt.
	Remote int64
}

// LocalAt returns, for every federated key sorted by name, the tokens
// granted and asked here in the window that contains now and the one
// before it.
func (c *Counter) LocalAt(now time.Time) []LocalCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]LocalCount, 0, len(c.names))
	for _, name := range c.names {
		f, fk, k := c.fedKeyAt(now, name)
		if f == nil {
			continue
		}
		lc := LocalCount{KeyConfig: c.keys[name].cfg, Index: k, Granted: f.granted, Asked: fk.asked,
			Need: fk.need, Budget: fk.budget, Remote: f.extra}
		if fk.prevWindow == k-1 {
			lc.PrevGranted, lc.PrevAsked = fk.prevGranted, fk.prevAsked
		}
		out = append(out, lc)
	}
	return out
}

// SetRemoteAt records that others granted extra tokens of key in window k.
// Unlike SetExtraAt it also accepts the next windows, for a peer whose
// clock is a little ahead. It does nothing for a key that is not federated
// or a window in the past.
func (c *Counter) SetRemoteAt(now time.Time, key string, k, extra int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, fk, cur := c.fedKeyAt(now, key)
	if f == nil || k < cur || k > cur+maxAhead || extra < 0 {
		return
	}
	fk.win(k).extra = extra
	if k == cur {
		f.extra = extra
	}
}

// SetReserveAt keeps reserve tokens of key in window k (the current or a
// later one) for other members in shared mode: tokens they have not
// granted yet but are expected to. It does nothing in strict mode.
func (c *Counter) SetReserveAt(now time.Time, key string, k, reserve int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, fk, cur := c.fedKeyAt(now, key)
	if f == nil || fk.cfg.Strict || k < cur || k > cur+maxAhead || reserve < 0 {
		return
	}
	fk.win(k).reserve = reserve
	if k == cur {
		fk.reserve = reserve
	}
}

// GiveAt takes up to n tokens of key out of this member's strict budget of
// window k (the current or the next one), so that they can be handed to
// another member, and returns how many it took. Tokens once taken are
// never returned to the budget: a transfer that is lost only wastes them.
// The next window is as far ahead as tokens can be given: that is why a
// restarted member (see FederationConfig.Fence) skips two windows.
func (c *Counter) GiveAt(now time.Time, key string, k, n int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, fk, cur := c.fedKeyAt(now, key)
	if f == nil || !fk.cfg.Strict || n <= 0 || k < cur || k > cur+1 {
		return 0
	}
	avail := fk.budgetFor(f, k)
	if k == cur {
		avail -= f.granted
	}
	if n > avail {
		n = avail
	}
	if n <= 0 {
		return 0
	}
	fk.win(k).given += n
	if k == cur {
		fk.budget = fk.budgetFor(f, k)
	}
	return n
}

// SetReceivedAt records that other members have handed this one total
// tokens of key for window k in all (a cumulative figure: a smaller total
// than one already recorded is ignored).
func (c *Counter) SetReceivedAt(now time.Time, key string, k, total int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, fk, cur := c.fedKeyAt(now, key)
	if f == nil || !fk.cfg.Strict || k < cur || k > cur+maxAhead {
		return
	}
	w := fk.win(k)
	if total <= w.received {
		return
	}
	w.received = total
	if k == cur {
		fk.budget = fk.budgetFor(f, k)
	}
}
