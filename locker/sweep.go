package locker

import (
	"reflect"
	"time"
)

// This file drops idle keys made on demand a few at a time. SweepAt looks
// at every live key under the Counter's lock, which at a million keys
// stops every decision for a fifth of a second; SweepSomeAt walks the same
// keys in batches, with one iteration of the key map that it resumes from
// batch to batch, so that a server can sweep between requests.
//
// The iteration is that of a range statement over the map, held between
// batches: keys dropped meanwhile are not produced, keys made meanwhile
// may or may not be, and every key that stays in the map is produced
// once. It costs no memory per key, where a list of the live keys' names
// cost 16 bytes and more per key, and garbage each time it grew.

// sweepIter is SweepSomeAt's iteration of the key map, nil between
// cycles.
type sweepIter struct {
	it *reflect.MapIter
	// name and ks receive each entry, so that reading one allocates
	// nothing.
	name string
	ks   *keyState
	k, v reflect.Value
	// names and keys hold the entries of a group of the batch; sink
	// keeps the loads of touch.
	names [sweepGroup]string
	keys  [sweepGroup]*keyState
	sink  int64
}

// sweepGroup is how many entries SweepSomeAt reads before it looks at
// them. The map's order scatters the keys in memory: reading a group's
// states first, loads independent of each other, lets their cache misses
// overlap instead of paying them one after the other.
const sweepGroup = 32

// touch reads the state of each key of the group that looking at it will
// read: the key and, for a sliding window, its oldest grant.
func (s *sweepIter) touch(n int) {
	var sink int64
	for _, ks := range s.keys[:n] {
		sink += int64(ks.maxN)
	}
	for _, ks := range s.keys[:n] {
		if w, ok := ks.alg.(*slidingWindow); ok && w.size > 0 {
			sink += w.ring[w.head]
		}
	}
	s.sink = sink
}

// newSweepIter starts an iteration of m.
func newSweepIter(m map[string]*keyState) *sweepIter {
	s := &sweepIter{it: reflect.ValueOf(m).MapRange()}
	s.k, s.v = reflect.ValueOf(&s.name).Elem(), reflect.ValueOf(&s.ks).Elem()
	return s
}

// next returns the next entry of the map, or false at the end.
func (s *sweepIter) next() (string, *keyState, bool) {
	if !s.it.Next() {
		s.name, s.ks = "", nil
		return "", nil, false
	}
	s.k.SetIterKey(s.it)
	s.v.SetIterValue(s.it)
	return s.name, s.ks, true
}

// setKeys makes m the key map. A cycle of SweepSomeAt under way goes on
// over m from its start. It requires that c.mu is held, or that c is not
// yet shared.
func (c *Counter) setKeys(m map[string]*keyState) {
	c.keys = m
	if c.sweep != nil {
		c.sweep = newSweepIter(m)
	}
}

// SweepSomeAt is SweepAt for at most budget keys: it goes on from where
// the last call stopped, and reports in done whether it reached the end
// of the keys (the next call starts again from the first). A cycle of
// calls from one done to the next looks at every key that was live all
// along, then every retired key (see Reconfigure), dropping those idle
// at now. It takes time in proportion to budget, and holds c's lock
// meanwhile: busy must not call c.
func (c *Counter) SweepSomeAt(now time.Time, busy func(key string) bool, budget int) (dropped int, done bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sweep == nil && c.sweepRetired == nil {
		c.sweep = newSweepIter(c.keys)
	}
	if s := c.sweep; s != nil {
		keysDone := false
		for budget > 0 && !keysDone {
			n := 0
			for ; n < min(budget, sweepGroup); n++ {
				name, ks, ok := s.next()
				if !ok {
					keysDone = true
					break
				}
				s.names[n], s.keys[n] = name, ks
			}
			budget -= n
			s.touch(n)
			for i, ks := range s.keys[:n] {
				if name := s.names[i]; ks.tmpl() != nil && ks.idleAt(now) && (busy == nil || !busy(name)) {
					c.drop(name, ks)
					dropped++
				}
			}
			clear(s.names[:n])
			clear(s.keys[:n])
		}
		if keysDone {
			c.sweep = nil
			if c.retired != nil {
				c.sweepRetired = newSweepIter(c.retired)
			}
		}
	}
	// The retired keys, after the live ones, in the same batches.
	for budget > 0 && c.sweepRetired != nil {
		name, r, ok := c.sweepRetired.next()
		if !ok {
			c.sweepRetired = nil
			break
		}
		budget--
		if c.dropRetired(now, name, r) {
			dropped++
		}
	}
	if dropped > 0 {
		c.dropFloor = max(c.dropFloor, now.UnixNano(), c.last)
	}
	if c.sweep != nil || c.sweepRetired != nil {
		return dropped, false
	}
	c.shrink()
	return dropped, true
}

// shrink rebuilds the key map once it holds a quarter of the keys made on
// demand it did: a map keeps its buckets when emptied, so this is how
// memory comes back. It requires that c.mu is held.
func (c *Counter) shrink() {
	if c.liveHigh > 1024 && c.live < c.liveHigh/4 {
		m := make(map[string]*keyState, len(c.keys))
		for name, ks := range c.keys {
			m[name] = ks
		}
		c.setKeys(m)
		c.liveHigh = c.live
	}
}
