package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// pipelined sends n requests body(i) over one DEALER socket with up to
// inflight in flight, and waits for every answer.
func pipelined(ep string, n, inflight int, body func(i int) string) error {
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetLinger(0)
	s.SetRcvtimeo(10 * time.Second)
	if err := s.Connect(ep); err != nil {
		return err
	}
	sent, got := 0, 0
	for got < n {
		for sent < n && sent-got < inflight {
			if _, err := s.SendMessage("", body(sent)); err != nil {
				return err
			}
			sent++
		}
		if _, err := s.RecvMessageBytes(0); err != nil {
			return fmt.Errorf("answer %d of %d: %w", got, n, err)
		}
		got++
	}
	return nil
}

// federation runs three federated lockerd with K keys each, for each K
// in o.fedKeys, loads all three at once through pipelined DEALER sockets
// spreading their takes over the K keys, and counts what the members
// publish with a SUB socket subscribed to all three.
func federation(ctx context.Context, o options, t *table) error {
	for _, k := range o.fedKeys {
		logf(o, "federation: %d keys", k)
		if err := fedRun(ctx, o, t, k); err != nil {
			return err
		}
	}
	return nil
}

func fedRun(ctx context.Context, o options, t *table, keys int) error {
	conf := filepath.Join(o.work, "fed.conf")
	if err := writeKeys(conf, keys, "f", "1000000000/1s"); err != nil {
		return err
	}
	var pubs []string
	for i := 0; i < 3; i++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		pubs = append(pubs, "tcp://127.0.0.1:"+strconv.Itoa(port))
	}
	var members []*proc
	defer func() {
		for _, m := range members {
			m.stop()
		}
	}()
	for i, pub := range pubs {
		args := []string{"--config", conf, "--metrics-addr", "", "--publish", pub}
		for _, p := range pubs {
			args = append(args, "--peer", p)
		}
		m, err := startLockerd(o, "fed"+strconv.Itoa(i+1), args...)
		if err != nil {
			return err
		}
		members = append(members, m)
	}
	sub, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		return err
	}
	defer sub.Close()
	sub.SetLinger(0)
	sub.SetRcvhwm(0)
	sub.SetRcvtimeo(100 * time.Millisecond)
	sub.SetSubscribe("")
	for _, p := range pubs {
		if err := sub.Connect(p); err != nil {
			return err
		}
	}
	// count receives on the SUB socket until stop: messages and bytes.
	count := func(stop <-chan struct{}) (msgs, bytes int64) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			msg, err := sub.RecvMessageBytes(0)
			if err != nil {
				continue
			}
			msgs++
			for _, f := range msg {
				bytes += int64(len(f))
			}
		}
	}
	// Idle: heartbeats alone.
	stop := make(chan struct{})
	time.AfterFunc(time.Second, func() { close(stop) })
	count(stop) // let the subscriptions settle
	stop = make(chan struct{})
	t0 := time.Now()
	time.AfterFunc(o.d, func() { close(stop) })
	im, ib := count(stop)
	idle := time.Since(t0).Seconds()

	var decisions atomic.Int64
	stop = make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, len(members))
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := load(m.ep, keys, stop, &decisions); err != nil {
				errs <- err
			}
		}()
	}
	t0 = time.Now()
	time.AfterFunc(o.d, func() { close(stop) })
	lm, lb := count(stop)
	busy := time.Since(t0).Seconds()
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	rate := float64(decisions.Load()) / busy
	t.row(fmt.Sprintf("federation, 3 members, %d key(s) in use", keys),
		fmt.Sprintf("%.0f msg/s, %.0f KiB/s at %.0f decisions/s (%.3f msg per decision); idle %.0f msg/s, %.1f KiB/s",
			float64(lm)/busy, float64(lb)/busy/1024, rate, float64(lm)/float64(max(decisions.Load(), 1)),
			float64(im)/idle, float64(ib)/idle/1024), "-",
		fmt.Sprintf("all that the 3 members publish, counted by one SUB socket subscribed to the 3, over %s while each member is loaded by one DEALER socket with 32 takes in flight spread over %d key(s), and over %s idle", o.d, keys, o.d))
	return nil
}

// load keeps 32 takes in flight on one DEALER socket to ep, round-robin
// over keys f0..f(keys-1), until stop, and counts the answers.
func load(ep string, keys int, stop <-chan struct{}, decisions *atomic.Int64) error {
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetLinger(0)
	s.SetRcvtimeo(5 * time.Second)
	if err := s.Connect(ep); err != nil {
		return err
	}
	next := 0
	send := func() error {
		_, err := s.SendMessage("", "take f"+strconv.Itoa(next%keys)+" 1")
		next++
		return err
	}
	for i := 0; i < 32; i++ {
		if err := send(); err != nil {
			return err
		}
	}
	for out := 32; out > 0; out-- {
		if _, err := s.RecvMessageBytes(0); err != nil {
			return err
		}
		decisions.Add(1)
		select {
		case <-stop:
			continue
		default:
		}
		if err := send(); err != nil {
			return err
		}
		out++
	}
	return nil
}
