package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"
)

// zmtpGreeting is a ZMTP 3.0 greeting: signature, version 3.0, the NULL
// mechanism, as-server 0.
func zmtpGreeting() []byte {
	g := make([]byte, 64)
	g[0], g[9] = 0xff, 0x7f
	g[10], g[11] = 3, 0
	copy(g[12:], "NULL")
	return g
}

// zmtpReady is the READY command of a DEALER socket.
func zmtpReady() []byte {
	body := []byte("\x05READY\x0bSocket-Type")
	body = binary.BigEndian.AppendUint32(body, uint32(len("DEALER")))
	body = append(body, "DEALER"...)
	return append([]byte{0x04, byte(len(body))}, body...)
}

// dialIdle opens a TCP connection to addr and does the ZMTP handshake of
// a DEALER socket, as a client library would, then leaves it idle: the
// server keeps a session for it as for any connected client. It uses
// one file descriptor, where a libzmq socket in this process would use
// several.
func dialIdle(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(append(zmtpGreeting(), zmtpReady()...)); err != nil {
		c.Close()
		return nil, err
	}
	var in [64 + 2]byte
	if _, err := io.ReadFull(c, in[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if in[0] != 0xff || in[64] != 0x04 {
		c.Close()
		return nil, fmt.Errorf("not a ZMTP 3 greeting and READY: % x", in[:])
	}
	if _, err := io.ReadFull(c, make([]byte, in[65])); err != nil {
		c.Close()
		return nil, fmt.Errorf("ready: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// dialIdleN opens n idle connections, 64 at a time.
func dialIdleN(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialIdle(addr)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// idleConns compares, for each number of idle connections, a lockerd with
// them connected to a twin without, in alternating rounds of 64 busy
// goroutines.
func idleConns(ctx context.Context, o options, t *table) error {
	for _, n := range o.idle {
		logf(o, "idle connections: %d", n)
		args := []string{"--key", "bench=1000000000/1s", "--metrics-addr", ""}
		plain, err := startLockerd(o, "plain", args...)
		if err != nil {
			return err
		}
		idle, err := startLockerd(o, "idle", args...)
		if err != nil {
			plain.stop()
			return err
		}
		err = idleRounds(ctx, o, t, n, plain, idle)
		plain.stop()
		idle.stop()
		if err != nil {
			return err
		}
	}
	return nil
}

func idleRounds(ctx context.Context, o options, t *table, n int, plain, idle *proc) error {
	// Warm both up, so that the RSS before is that of a server that has
	// served.
	for _, p := range []*proc{plain, idle} {
		if _, err := benchRate(ctx, o, p.ep, "bench", 64); err != nil {
			return err
		}
	}
	before, err := idle.rss()
	if err != nil {
		return err
	}
	conns, err := dialIdleN(strings.TrimPrefix(idle.ep, "tcp://"), n)
	if err != nil {
		return fmt.Errorf("%d idle connections: %w", n, err)
	}
	defer closeAll(conns)
	// The server attaches a session after the handshake: ask it something
	// so that every session is in place before the RSS is read.
	if _, err := request(idle.ep, "ping", 5*time.Second); err != nil {
		return err
	}
	after, err := idle.rss()
	if err != nil {
		return err
	}
	var ratios []float64
	for r := 0; r < o.rounds; r++ {
		a, err := benchRate(ctx, o, plain.ep, "bench", 64)
		if err != nil {
			return err
		}
		b, err := benchRate(ctx, o, idle.ep, "bench", 64)
		if err != nil {
			return err
		}
		ratios = append(ratios, b/a)
	}
	sort.Float64s(ratios)
	per := float64(after-before) / float64(n)
	t.row(fmt.Sprintf("%d idle client connections: RSS", n),
		fmt.Sprintf("%.1f KiB per connection (%s → %s)", per/1024, mib(float64(before)), mib(float64(after))), "-",
		fmt.Sprintf("lockerd's VmRSS before and after %d TCP connections that did the ZMTP handshake of a DEALER socket and then stayed silent", n))
	t.row(fmt.Sprintf("%d idle client connections: 64 busy goroutines", n),
		fmt.Sprintf("**%.2f**x [%.2f..%.2f]", ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1]), "≥ 0.9x",
		fmt.Sprintf("decisions/s of `lockerctl bench -c 64 -d %s` against that lockerd over a twin without the connections, %d alternating rounds (median [min..max])", o.d, o.rounds))
	return nil
}
