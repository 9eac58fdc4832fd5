package locker

import (
	"encoding/json"
	"sync/atomic"
)

// ServerStats is a snapshot of a server, as Server.Stats returns it.
type ServerStats struct {
	ID   string
	Keys []ServerKeyStats
}

// ServerKeyStats is a snapshot of one key of a server: its counter's
// KeyUsage and the waits the server holds for it.
type ServerKeyStats struct {
	KeyUsage
	// Waiters is the number of wait requests held for the key.
	Waiters int64
}

// Stats returns a snapshot of every key.
func (s *Server) Stats() ServerStats {
	snap := s.counter.SnapshotAt(s.now())
	st := ServerStats{ID: s.cfg.ID, Keys: make([]ServerKeyStats, len(snap))}
	for i, k := range snap {
		st.Keys[i].KeyUsage = k
		if v, ok := s.waitCount.Load(k.Name); ok {
			st.Keys[i].Waiters = v.(*atomic.Int64).Load()
		}
	}
	return st
}

// statusJSON returns the document that answers a status request; its
// keys are the StatusKey a Client reads.
func (s *Server) statusJSON() []byte {
	st := s.Stats()
	doc := map[string]any{"id": st.ID, "protocol": ProtocolVersion}
	keys := make([]StatusKey, len(st.Keys))
	for i, k := range st.Keys {
		keys[i] = StatusKey{Name: k.Name, Limit: k.Limit, WindowMS: k.KeyConfig.Window.Milliseconds(),
			Window: k.WindowIndex, Granted: k.Granted, Waiters: k.Waiters}
	}
	doc["keys"] = keys
	if s.locks != nil { // the loop owns the lock table, and answers status
		doc["locks"] = s.locks.statusDoc(s.now(), s.cfg.Federated)
	}
	if s.cfg.StatusExtra != nil {
		for k, v := range s.cfg.StatusExtra() {
			if _, taken := doc[k]; !taken {
				doc[k] = v
			}
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return AppendError(nil, err)
	}
	return b
}
