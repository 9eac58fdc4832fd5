package locker

import "fmt"

// ReachError is returned, in strict mode, for a request of more tokens
// than this member could ever grant it as things stand: more than its
// static share of a key that runs on one, or more than its own share and
// the shares of the members that can give it tokens now. Held, such a
// request would wait for nothing, so it is refused at once.
type ReachError struct {
	// N is the tokens asked for, Reach the most this member can grant
	// one request now.
	N, Reach int64
	// Static is set for a key that runs on a static share (sliding, gcra,
	// several limits), which no other member can add to.
	Static bool
	// Down is how many other members cannot give tokens now.
	Down int
}

func (e *ReachError) Error() string {
	if e.Static {
		return fmt.Sprintf("locker: %d tokens are more than this member's static share %d of the key (strict federation: only fixed keys trade tokens)", e.N, e.Reach)
	}
	return fmt.Sprintf("locker: %d tokens are more than %d, what this member and the members up can grant one request (members down or not agreeing: %d)", e.N, e.Reach, e.Down)
}

// SetGivers records which other members can hand this one tokens now:
// up, in strict mode and agreeing on the configuration (ranks; this
// member's own rank is ignored). A strict request for more tokens than
// this member's share and theirs is then refused with a *ReachError
// instead of being held for nothing.
func (c *Counter) SetGivers(ranks []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fed == nil {
		return
	}
	g := make([]bool, c.fed.Members)
	for _, r := range ranks {
		if r >= 0 && r < len(g) {
			g[r] = true
		}
	}
	c.fed.givers = g
}

// reach returns a *ReachError when a strict member can never grant n
// tokens of ks as things stand, else nil. It requires that c.mu is held.
func (c *Counter) reach(ks *keyState, n int64) error {
	if c.fed == nil || !c.fed.Strict {
		return nil
	}
	fc := c.fed
	if c.static(ks.cfg()) {
		r := Share(ks.cfg().first().maxN(), fc.Members, fc.Rank)
		for _, p := range ks.cfg().More { // not Parts: it allocates
			if p == (Part{}) {
				break
			}
			r = min(r, Share(p.maxN(), fc.Members, fc.Rank))
		}
		if n > r {
			return &ReachError{N: n, Reach: r, Static: true}
		}
		return nil
	}
	limit := ks.cfg().Limit
	if ks.fed() == nil || fc.givers == nil || n <= Share(limit, fc.Members, fc.Rank) {
		return nil
	}
	var r int64
	down := 0
	for rank := 0; rank < fc.Members; rank++ {
		switch {
		case rank == fc.Rank || fc.givers[rank]:
			r += Share(limit, fc.Members, rank)
		default:
			down++
		}
	}
	if n > r {
		return &ReachError{N: n, Reach: r, Down: down}
	}
	return nil
}
