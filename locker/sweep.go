package locker

import "time"

// This file drops idle keys made on demand a few at a time. SweepAt looks
// at every live key under the Counter's lock, which at a million keys
// stops every decision for a fifth of a second; SweepSomeAt walks the same
// keys in batches, through a ring of their names, so that a server can
// sweep between requests.

// ringAdd puts the key made on demand name, of state ks, in the ring. It
// requires that c.mu is held.
func (c *Counter) ringAdd(name string, ks *keyState) {
	c.ring = append(c.ring, name)
	ks.slot = int32(len(c.ring))
}

// ringRemove takes entry i out of the ring, moving the last entry to its
// place. It requires that c.mu is held.
func (c *Counter) ringRemove(i int) {
	last := len(c.ring) - 1
	if i != last {
		moved := c.ring[last]
		c.ring[i] = moved
		if ks := c.keys[moved]; ks != nil && int(ks.slot) == last+1 {
			ks.slot = int32(i + 1)
		}
	}
	c.ring[last] = ""
	c.ring = c.ring[:last]
}

// SweepSomeAt is SweepAt for at most budget live keys: it goes on from
// where the last call stopped, and reports in done whether it reached the
// end of the live keys (the next call starts again from the first). A
// cycle of calls from one done to the next looks at every key that was
// live all along. It takes time in proportion to budget, and holds c's
// lock meanwhile: busy must not call c.
func (c *Counter) SweepSomeAt(now time.Time, busy func(key string) bool, budget int) (dropped int, done bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ; budget > 0 && c.sweepPos < len(c.ring); budget-- {
		i := c.sweepPos
		name := c.ring[i]
		ks := c.ringKey(i)
		switch {
		case ks == nil: // the entry is gone: the next one is at i
		case ks.idleAt(now) && (busy == nil || !busy(name)):
			c.drop(name, ks) // moves the last entry to i, looked at next
			dropped++
		default:
			c.sweepPos++
		}
	}
	if dropped > 0 {
		c.dropFloor = max(c.dropFloor, now.UnixNano(), c.last)
	}
	if c.sweepPos < len(c.ring) {
		return dropped, false
	}
	c.sweepPos = 0
	c.shrink()
	return dropped, true
}

// ringKey returns the state of the key of ring entry i, after making its
// slot point at i, or nil when the entry no longer stands for a key made
// on demand, which it then removes. It requires that c.mu is held.
func (c *Counter) ringKey(i int) *keyState {
	name := c.ring[i]
	ks := c.keys[name]
	switch {
	case ks == nil || ks.tmpl() == nil: // dropped without the ring knowing
		c.ringRemove(i)
		return nil
	case int(ks.slot) != i+1:
		if j := int(ks.slot) - 1; j >= 0 && j < len(c.ring) && c.ring[j] == name {
			c.ringRemove(i) // the key has another entry
			return nil
		}
		ks.slot = int32(i + 1) // a state that replaced the one this entry was made for
	}
	return ks
}

// shrink rebuilds the key map and the ring once they hold a quarter of
// what they did: a map keeps its buckets when emptied, so this is how
// memory comes back. It requires that c.mu is held.
func (c *Counter) shrink() {
	if c.liveHigh > 1024 && c.live < c.liveHigh/4 {
		m := make(map[string]*keyState, len(c.keys))
		for name, ks := range c.keys {
			m[name] = ks
		}
		c.keys, c.liveHigh = m, c.live
		c.ring = append(make([]string, 0, len(c.ring)), c.ring...)
	}
}
