package locker

import "time"

// Reconfigure replaces the key set with keys. A limit that keeps its
// place in its key, its algorithm, window and burst keeps its state, so a
// reload does not hand out tokens twice; a new limit takes effect at once
// (see Algorithm.SetLimit). A fixed window whose length changes starts
// afresh. A sliding or gcra limit whose algorithm, window or burst
// changes, or that is added to an existing key, starts full at the latest
// instant a take was made at: what the old one granted is unknown to it.
// In a federation the member's share changes with the limit (see
// FederationConfig); in shared mode, keys that are not a single fixed
// window are refused. A key a reload removes (configured, or made on
// demand from a template no longer loaded) that is not idle (see SweepAt)
// is retired: when a later reload, a request or a peer's report brings a
// key of its name back, it carries the retired state as if it had stayed,
// so removing and adding a key back never grants its limit twice in a
// window. Retired keys are forgotten once idle, by SweepAt and
// SweepSomeAt. On error the old configuration stays.
func (c *Counter) Reconfigure(keys []KeyConfig) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, names, tmpls, err := c.buildKeys(keys)
	if err != nil {
		return err
	}
	if err := c.checkShared(m, tmpls); err != nil {
		return err
	}
	for name, ks := range m {
		if old := c.keys[name]; old != nil {
			c.carry(old, ks)
		} else {
			c.unretire(name, ks)
		}
	}
	c.attachFederation(m)
	old := c.keys
	c.keys, c.names, c.tmpls = m, names, tmpls
	c.remake(old)
	c.setKeys(m) // once the live keys are in it, for a sweep under way
	for name, o := range old {
		if c.keys[name] == nil {
			c.retire(name, o)
		}
	}
	return nil
}

// retire keeps the state o of the key name, which a reload removed,
// unless it is idle at the latest instant a take was made at. It requires
// that c.mu is held.
func (c *Counter) retire(name string, o *keyState) {
	if o.idleAt(time.Unix(0, c.last)) {
		return
	}
	if f := o.fed(); f != nil {
		f.dirty = false // a take once it is back lists it again
	}
	if c.retired == nil {
		c.retired = make(map[string]*keyState)
	}
	c.retired[name] = o
}

// unretire carries the retired state of the key name, if any, to ks, the
// key of that name just made, and forgets it. It requires that c.mu is
// held.
func (c *Counter) unretire(name string, ks *keyState) {
	if r := c.retired[name]; r != nil {
		c.carry(r, ks)
		c.forget(name)
	}
}

// forget deletes the retired key name. It requires that c.mu is held.
func (c *Counter) forget(name string) {
	delete(c.retired, name)
	if len(c.retired) == 0 {
		c.retired = nil // a map keeps its buckets when emptied
		c.sweepRetired = nil
	}
}

// dropRetired forgets the retired key name, of state r, if it is idle at
// now, and reports whether it did. It requires that c.mu is held.
func (c *Counter) dropRetired(now time.Time, name string, r *keyState) bool {
	if !r.idleAt(now) {
		return false
	}
	c.forget(name)
	return true
}

// carry moves the state of the key old to ks, its new configuration. It
// requires that c.mu is held.
func (c *Counter) carry(old, ks *keyState) {
	if old.cfg().plain() && ks.cfg().plain() && !c.static(old.cfg()) && !c.static(ks.cfg()) {
		c.carryFixed(old, ks)
		return
	}
	c.carryParts(old, ks)
}

// carryFixed is carry for a key of one fixed window, outside a strict
// federation, both before and after: its counter, and its federation
// state, stay when the window does. It requires that c.mu is held.
func (c *Counter) carryFixed(old, ks *keyState) {
	if old.cfg().Window != ks.cfg().Window {
		return
	}
	old.alg.SetLimit(ks.cfg().Limit)
	ks.setFirst(old.alg)
	f := old.fed()
	ks.setFed(f)
	if f != nil && ks.cfg().Limit < old.cfg().Limit {
		f.lowered()
	}
}

// carryParts is carry for every other key, limit by limit: a limit that
// keeps its place, algorithm, window and burst, and runs on the same kind
// of share, keeps its state; a fixed window outside a strict federation
// otherwise starts afresh; any other limit starts full at c.last. It
// requires that c.mu is held.
func (c *Counter) carryParts(old, ks *keyState) {
	static := c.static(ks.cfg())
	sameShare := static == c.static(old.cfg())
	if old.cfg().IsTemplate() != ks.cfg().IsTemplate() && c.fed != nil {
		sameShare = false
	}
	neitherStatic := !static && !c.static(old.cfg())
	oldParts, oldAlgs := old.cfg().Parts(), old.algs()
	algs := ks.algs()
	for i, p := range ks.cfg().Parts() {
		if i < len(oldParts) {
			op := oldParts[i]
			if sameShare && samePart(op, p) {
				oldAlgs[i].SetLimit(c.share(p.Limit, static))
				algs[i] = oldAlgs[i]
				continue
			}
			if neitherStatic && op.alg() == AlgFixed && p.alg() == AlgFixed {
				continue // afresh, as for a key of one fixed window
			}
		}
		algs[i].FillAt(time.Unix(0, c.last))
	}
	ks.setFirst(algs[0])
	ks.setMore(algs[1:])
}

// samePart reports whether the limits a and b count the same way: same
// algorithm, window and burst, whatever their limit.
func samePart(a, b Part) bool {
	return a.alg() == b.alg() && a.Window == b.Window && a.Burst == b.Burst
}
