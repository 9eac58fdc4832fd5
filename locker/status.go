package locker

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
)

// ServerStats is a snapshot of a server, as Server.Stats returns it.
type ServerStats struct {
	ID   string
	Keys []ServerKeyStats
	// Templates are the key templates, with their live keys and the
	// waits held on them. Keys made on demand appear only here, counted
	// under their template, never by name.
	Templates []ServerTemplateStats
}

// ServerKeyStats is a snapshot of one key of a server: its counter's
// KeyUsage and the waits the server holds for it.
type ServerKeyStats struct {
	KeyUsage
	// Waiters is the number of wait requests held for the key.
	Waiters int64
}

// ServerTemplateStats is a snapshot of one key template: its
// configuration, its live keys, and the waits held on them all.
type ServerTemplateStats struct {
	TemplateUsage
	// Waiters is the number of wait requests held for keys made from
	// the template.
	Waiters int64
}

// Stats returns a snapshot of every configured key and template.
func (s *Server) Stats() ServerStats {
	snap := s.counter.SnapshotAt(s.now())
	st := ServerStats{ID: s.cfg.ID, Keys: make([]ServerKeyStats, len(snap))}
	for i, k := range snap {
		st.Keys[i].KeyUsage = k
		st.Keys[i].Waiters = s.waitersOf(k.Name)
	}
	for _, t := range s.counter.Templates() {
		st.Templates = append(st.Templates, ServerTemplateStats{TemplateUsage: t, Waiters: s.waitersOf(t.Name)})
	}
	return st
}

// waitersOf returns the waits held under label: a configured key, or a
// template for all the keys made from it.
func (s *Server) waitersOf(label string) int64 {
	if v, ok := s.waitCount.Load(label); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// StatusPart is one limit of a key in a status document.
type StatusPart struct {
	Limit     int64  `json:"limit"`
	WindowMS  int64  `json:"window_ms"`
	Algorithm string `json:"algorithm"`
	// Burst is the gcra burst; 0 means Limit.
	Burst int64 `json:"burst,omitempty"`
	// Window is the index of the epoch-aligned window of WindowMS a take
	// now would count in.
	Window int64 `json:"window"`
	// Used is the tokens in use now (see PartUsage).
	Used int64 `json:"used"`
}

// StatusTemplate is one key template in a status document.
type StatusTemplate struct {
	Name string `json:"name"`
	// Spec is the template as --key takes it.
	Spec string `json:"spec"`
	// Live is the number of keys made from it that are live.
	Live    int   `json:"live"`
	Waiters int64 `json:"waiters"`
}

// KeyStatus answers "status KEY": one key, configured or a key a template
// matches, live or not.
type KeyStatus struct {
	Name string `json:"name"`
	// Spec is the key's configuration as --key takes it: for a key made
	// on demand, its template's.
	Spec string `json:"spec"`
	// Template is the name of the template a key made on demand matches;
	// empty for a configured key.
	Template string `json:"template,omitempty"`
	// Live reports whether the key has a counter: always for a
	// configured key; for a key a template matches, false means it would
	// be made, afresh, by its next take.
	Live bool `json:"live"`
	// Waiters is the number of wait requests held for the key.
	Waiters int64        `json:"waiters"`
	Parts   []StatusPart `json:"parts"`
}

// statusKeyDoc is one configured key in a status document: the fields a
// Client reads (StatusKey, of the first limit), the key's spec, and, for a
// key of several limits, every limit.
type statusKeyDoc struct {
	StatusKey
	Spec  string       `json:"spec"`
	Parts []StatusPart `json:"parts,omitempty"`
}

// statusParts converts the usage of a key's limits for a status document.
func statusParts(parts []PartUsage) []StatusPart {
	if len(parts) == 0 {
		return nil
	}
	out := make([]StatusPart, len(parts))
	for i, p := range parts {
		out[i] = StatusPart{Limit: p.Limit, WindowMS: p.Window.Milliseconds(), Algorithm: string(p.alg()),
			Burst: p.Burst, Window: p.WindowIndex, Used: p.Used}
	}
	return out
}

// statusJSON returns the document that answers a status request; its
// keys are the StatusKey a Client reads.
func (s *Server) statusJSON() []byte {
	st := s.Stats()
	doc := map[string]any{"id": st.ID, "protocol": ProtocolVersion}
	keys := make([]statusKeyDoc, len(st.Keys))
	for i, k := range st.Keys {
		keys[i] = statusKeyDoc{StatusKey: StatusKey{Name: k.Name, Limit: k.Limit, WindowMS: k.KeyConfig.Window.Milliseconds(),
			Window: k.WindowIndex, Granted: k.Granted, Waiters: k.Waiters},
			Spec: k.KeyConfig.String(), Parts: statusParts(k.Parts)}
	}
	doc["keys"] = keys
	tmpls := make([]StatusTemplate, len(st.Templates))
	for i, t := range st.Templates {
		tmpls[i] = StatusTemplate{Name: t.Name, Spec: t.KeyConfig.String(), Live: t.Live, Waiters: t.Waiters}
	}
	doc["templates"] = tmpls
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
	return marshalStatus(doc)
}

// keyStatusJSON returns the document that answers "status KEY", or an
// error reply for a key that is neither configured nor matched by a
// template.
func (s *Server) keyStatusJSON(key string) ([]byte, error) {
	rep, ok := s.counter.ReportAt(s.now(), key)
	if !ok {
		return nil, wireError(fmt.Sprintf("unknown key %q", key))
	}
	ks := KeyStatus{Name: key, Spec: rep.Config.String(), Live: rep.Live, Parts: statusParts(rep.Parts)}
	if rep.Template {
		ks.Template = rep.Config.Name
		if q := s.waiters[key]; q != nil { // the loop owns the queues, and answers status
			ks.Waiters = int64(q.len())
		}
	} else {
		ks.Waiters = s.waitersOf(key)
	}
	return marshalStatus(map[string]any{"id": s.cfg.ID, "protocol": ProtocolVersion, "key": ks}), nil
}

func marshalStatus(doc map[string]any) []byte {
	b, err := json.Marshal(doc)
	if err != nil {
		return appendError(nil, err)
	}
	return b
}
