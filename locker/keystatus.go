package locker

import "time"

// PartUsage is one limit of a key and how much of it is in use.
type PartUsage struct {
	Part
	// WindowIndex is the index of the epoch-aligned window of the part's
	// length that a take at the snapshot's instant would count in.
	WindowIndex int64
	// Used is the tokens in use at the snapshot's instant (see
	// Algorithm.PeekAt): granted in the window for a fixed part, in the
	// last window's length for a sliding part, not yet back for a gcra
	// part. The first part of a federated key counts those known to be
	// granted by peers too.
	Used int64
}

// KeyReport is one key as Counter.ReportAt sees it.
type KeyReport struct {
	// Name is the key asked for.
	Name string
	// Config is the key's configuration, or, for a key a template
	// matches, the template's.
	Config KeyConfig
	// Template reports whether the key is made on demand from Config.
	Template bool
	// Live reports whether the key has a counter: always for a
	// configured key; for a key a template matches, whether it is live
	// (else its parts are reported as a new key would have them).
	Live bool
	// Parts are the key's limits, the first one first.
	Parts []PartUsage
}

// ReportAt returns the state of key at now, a configured key or a key a
// template matches, live or not, and false for a key that is neither. It
// makes, moves and drops nothing.
func (c *Counter) ReportAt(now time.Time, key string) (KeyReport, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks := c.find(key)
	live := ks != nil
	if ks == nil {
		t := c.match(key)
		if t == nil || validKeyName(key) != nil {
			return KeyReport{}, false
		}
		ks = c.newKey(&t.keySource) // as it would be made, not kept
	}
	return KeyReport{Name: key, Config: *ks.cfg(), Template: ks.tmpl() != nil, Live: live, Parts: ks.partsAt(now)}, true
}

// partsAt returns the usage of every limit of ks at now. It requires that
// the Counter's mutex is held.
func (ks *keyState) partsAt(now time.Time) []PartUsage {
	parts := ks.cfg().Parts()
	out := make([]PartUsage, len(parts))
	for i, a := range ks.algs() {
		out[i].Part = parts[i]
		if i == 0 {
			out[i].WindowIndex, out[i].Used = ks.peek(now)
			continue
		}
		out[i].WindowIndex, out[i].Used = a.PeekAt(now)
	}
	return out
}
