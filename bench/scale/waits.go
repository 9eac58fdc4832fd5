package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// heldWaits has one lockerd hold o.waits wait requests on a key with no
// token left, sent from 4 DEALER sockets, and reads its RSS before and
// after.
func heldWaits(ctx context.Context, o options, t *table) error {
	logf(o, "held waits: %d", o.waits)
	p, err := startLockerd(o, "waits", "--key", "hold=1/1h", "--max-waiters", strconv.Itoa(o.waits),
		"--max-wait", "10m", "--metrics-addr", "")
	if err != nil {
		return err
	}
	defer p.stop()
	if r, err := request(p.ep, "take hold 1", 5*time.Second); err != nil || r[:2] != "go" {
		return fmt.Errorf("take hold 1: %q, %v", r, err)
	}
	before, err := p.rss()
	if err != nil {
		return err
	}
	const sockets = 4
	var socks []*zmq.Socket
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	for i := 0; i < sockets; i++ {
		s, err := zmq.NewSocket(zmq.DEALER)
		if err != nil {
			return err
		}
		socks = append(socks, s)
		s.SetLinger(0)
		s.SetSndhwm(0)
		if err := s.Connect(p.ep); err != nil {
			return err
		}
	}
	for i := 0; i < o.waits; i++ {
		if _, err := socks[i%sockets].SendMessage("", "wait hold 1 600000"); err != nil {
			return err
		}
	}
	// Wait until the server holds them all.
	var held int64
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if held, err = waiters(p.ep, "hold"); err == nil && held >= int64(o.waits) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server holds %d waits of %d (%v)", held, o.waits, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	after, err := p.rss()
	if err != nil {
		return err
	}
	per := float64(after-before) / float64(o.waits)
	t.row(fmt.Sprintf("%d held waits", o.waits),
		fmt.Sprintf("%.0f bytes per held wait (%s → %s)", per, mib(float64(before)), mib(float64(after))), "≤ 1 KiB",
		fmt.Sprintf("lockerd's VmRSS before and after it holds %d `wait hold 1 600000` requests (sent over 4 DEALER sockets) on a key with no token left, until status counts them all", o.waits))
	return nil
}

// waiters returns the waiters of key in the server's status.
func waiters(ep, key string) (int64, error) {
	r, err := request(ep, "status", 5*time.Second)
	if err != nil {
		return 0, err
	}
	var st struct {
		Keys []struct {
			Name    string `json:"name"`
			Waiters int64  `json:"waiters"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(r), &st); err != nil {
		return 0, fmt.Errorf("status: %w", err)
	}
	for _, k := range st.Keys {
		if k.Name == key {
			return k.Waiters, nil
		}
	}
	return 0, fmt.Errorf("no key %s in status", key)
}
