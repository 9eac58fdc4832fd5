package peer

import (
	"strconv"
	"time"
)

// PeerStats returns a snapshot of the other members heard from, sorted by
// id.
func (n *Node) PeerStats() []PeerStat {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m.stats(n.now())
}

// ConfigMismatch reports whether some member heard from has a different
// configuration digest.
func (n *Node) ConfigMismatch() bool {
	for _, p := range n.PeerStats() {
		if p.ConfigMismatch {
			return true
		}
	}
	return false
}

// StatusExtra returns the "peers" and "federation" fields of the status
// document; it suits locker.Config.StatusExtra and does not block for
// long.
func (n *Node) StatusExtra() map[string]any {
	n.mu.Lock()
	now := n.now()
	stats := n.m.stats(now)
	digest, dropped, untracked := n.m.digest, n.m.dropped, n.m.untracked
	n.mu.Unlock()
	type peerJSON struct {
		ID             string  `json:"id"`
		Up             bool    `json:"up"`
		LastSeen       string  `json:"last_seen,omitempty"`
		LastSeenMS     int64   `json:"last_seen_ms_ago"`
		Messages       uint64  `json:"messages"`
		ClockOffsetMS  float64 `json:"clock_offset_ms"`
		ConfigMismatch bool    `json:"config_mismatch"`
	}
	peers := make([]peerJSON, len(stats))
	up, mismatch := 0, false
	for i, p := range stats {
		peers[i] = peerJSON{ID: p.Name, Up: p.Up, LastSeen: p.LastSeen.UTC().Format(time.RFC3339Nano),
			LastSeenMS: now.Sub(p.LastSeen).Milliseconds(), Messages: p.Messages,
			ClockOffsetMS: float64(p.ClockOffset) / 1e6, ConfigMismatch: p.ConfigMismatch}
		if p.Up {
			up++
		}
		mismatch = mismatch || p.ConfigMismatch
	}
	return map[string]any{
		"peers": peers,
		"federation": map[string]any{
			"id": n.cfg.ID, "mode": n.cfg.Mode.String(), "publish": n.cfg.Publish,
			"members": len(n.members), "rank": n.rank, "peers_expected": len(n.others), "peers_up": up,
			"heartbeat_ms": n.cfg.Heartbeat.Milliseconds(), "config_digest": strconv.FormatUint(digest, 16),
			"config_mismatch": mismatch, "dropped_outbound": dropped, "untracked_reports": untracked,
		},
	}
}
