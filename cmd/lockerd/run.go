package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/metrics"
	"github.com/lockerd/lockerd/peer"
	zmq "github.com/pebbe/zmq4"
	"github.com/spf13/pflag"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // could not serve: a bind failed, say
	exitUsage = 2 // bad flags or configuration; nothing was bound
)

// run is lockerd's whole life: it returns the exit status once ctx is done
// and the server has stopped.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "lockerd:", err)
		return exitUsage
	}
	if o.version {
		fmt.Fprintf(stdout, "lockerd %s (revision %s)\n", Version, Revision)
		return exitOK
	}
	log := o.logger(stderr)
	if err := serve(ctx, o, args, log); err != nil {
		fmt.Fprintln(stderr, "lockerd:", err)
		return exitError
	}
	return exitOK
}

// serve runs the server until ctx is done, with its metrics endpoint,
// reloading the config file on SIGHUP.
func serve(ctx context.Context, o *options, args []string, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	reg := metrics.NewRegistry()
	m, err := metrics.New(reg, metrics.BuildInfo{Version: Version, Revision: Revision})
	if err != nil {
		return err
	}
	cfg := locker.Config{
		Endpoints:  o.binds,
		Keys:       o.keys,
		ID:         o.id,
		MaxWait:    o.maxWait,
		MaxWaiters: o.maxWaiters,
		Logger:     log,
		Observer:   m,
		Locks:      o.locks.cfg,
		Federated:  o.publish != "",
	}
	var curve *locker.CurveServer
	if o.secretKey != "" {
		if curve, err = locker.NewCurveServer(o.secretKey, o.allowedKeys); err != nil {
			return err
		}
		defer curve.Close() // deferred first, so it runs after the server stopped
		cfg.Security = curve.Apply
		log.Info("CURVE on", "public_key", curve.PublicKey(), "allowed_clients", len(o.allowedKeys))
	}
	var node *peer.Node
	if o.publish != "" {
		// Set before the server runs; called only from its loop.
		cfg.StatusExtra = func() map[string]any { return node.StatusExtra() }
	}
	srv, err := locker.NewServer(cfg)
	if err != nil {
		return err
	}
	m.SetStats(srv)
	if o.publish != "" {
		mode, _ := peer.ParseMode(o.federation) // checked by parseOptions
		pc := peer.Config{ID: o.id, Publish: o.publish, Peers: o.peers, Mode: mode,
			Heartbeat: o.heartbeat, Logger: log.With("component", "peer")}
		if curve != nil {
			// Members share the server key pair: each PUB admits only
			// that key, and each SUB checks it, so a stranger can neither
			// read the stream nor publish grants.
			peerCurve, err := locker.NewCurveServer(o.secretKey, []string{curve.PublicKey()})
			if err != nil {
				return err
			}
			defer peerCurve.Close()
			sub, err := locker.CurveClient(curve.PublicKey(), locker.CurveKeyPair{Secret: o.secretKey})
			if err != nil {
				return err
			}
			pc.PubSecurity, pc.SubSecurity = peerCurve.Apply, sub
		}
		node, err = peer.New(pc, srv.Counter())
		if err != nil {
			return err
		}
		m.SetPeers(peerStats{node})
		nodeDone := make(chan error, 1)
		go func() { nodeDone <- node.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-nodeDone; !errors.Is(err, peer.ErrNodeClosed) {
				log.Error("federation", "err", err)
			}
		}()
		select {
		case <-node.Ready():
		case err := <-nodeDone:
			nodeDone <- err
			return err
		}
	}

	loopDone := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		err := srv.Run(ctx)
		close(loopDone)
		done <- err
	}()
	if o.metricsAddr != "" {
		ln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			cancel()
			<-done
			return fmt.Errorf("metrics: %w", err)
		}
		ready := metrics.Closed(srv.Ready(), "server not bound")
		if node != nil {
			ready = metrics.All(ready, peersHeard(node, o, time.Now()))
		}
		h := metrics.Handler(reg, metrics.Health{
			Live:  metrics.Running(srv.Ready(), loopDone),
			Ready: ready,
		})
		httpDone := make(chan error, 1)
		go func() { httpDone <- metrics.Serve(ctx, ln, h) }()
		defer func() {
			cancel()
			if err := <-httpDone; err != nil {
				log.Error("metrics", "err", err)
			}
		}()
		log.Info("serving metrics", "addr", ln.Addr().String())
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case err := <-done:
			if errors.Is(err, locker.ErrServerClosed) {
				log.Info("stopped")
				return nil
			}
			return err
		case <-hup:
			reload(srv, curve, o, args, log)
		}
	}
}

// peersHeard is ready once every peer has been heard from, or once
// peerWait heartbeats have passed since start: a peer that is down must
// not keep the others out of service.
func peersHeard(node *peer.Node, o *options, start time.Time) metrics.Check {
	others := map[string]bool{}
	for _, p := range o.peers {
		if p != "" && p != o.publish {
			others[p] = true
		}
	}
	wait := peerWait * o.heartbeat
	if wait <= 0 {
		wait = peerWait * peer.DefaultHeartbeat
	}
	return func() error {
		up := 0
		for _, p := range node.PeerStats() {
			if p.Up {
				up++
			}
		}
		if up >= len(others) || time.Since(start) >= wait {
			return nil
		}
		return fmt.Errorf("%d of %d peers heard; waiting up to %s", up, len(others), wait)
	}
}

// peerWait is how many heartbeats /readyz waits for silent peers.
const peerWait = 10

// peerStats adapts a federation node to the metrics package.
type peerStats struct{ n *peer.Node }

// PeerStats implements metrics.PeerSource.
func (p peerStats) PeerStats() []metrics.PeerStat {
	ps := p.n.PeerStats()
	out := make([]metrics.PeerStat, len(ps))
	for i, s := range ps {
		out[i] = metrics.PeerStat{Name: s.Name, Up: s.Up, Messages: s.Messages, ClockOffset: s.ClockOffset}
	}
	return out
}

// reload re-reads the flags and config file and applies the keys. An
// invalid configuration is logged and the old one stays. Settings other
// than keys need a restart.
func reload(srv *locker.Server, curve *locker.CurveServer, old *options, args []string, log *slog.Logger) {
	var msgs strings.Builder
	o, err := parseOptions(args, &msgs)
	if err != nil {
		log.Error("reload failed, keeping the old configuration", "err", err)
		return
	}
	if (o.secretKey != "") != (curve != nil) {
		log.Error("reload failed, keeping the old configuration", "err", "turning CURVE on or off needs a restart")
		return
	}
	if err := srv.Counter().Reconfigure(o.keys); err != nil {
		log.Error("reload failed, keeping the old configuration", "err", err)
		return
	}
	if curve != nil {
		curve.SetAllowed(o.allowedKeys)
	}
	warnLockReload(old.locks, o.locks, log)
	if strings.Join(o.binds, " ") != strings.Join(old.binds, " ") || o.maxWait != old.maxWait || o.maxWaiters != old.maxWaiters {
		log.Warn("reload applies keys only; restart lockerd to change endpoints or wait limits")
	}
	names := make([]string, len(o.keys))
	for i, k := range o.keys {
		names[i] = k.String()
	}
	log.Info("reloaded", "keys", strings.Join(names, " "))
}

// flushSockets gives replies queued at shutdown (the sorry answers to held
// waits) a moment to leave, without ever hanging: every socket is closed
// by then, and each has a short linger. It terminates the process's
// ZeroMQ context, so it is called once, by main, as the process ends.
func flushSockets() {
	done := make(chan struct{})
	go func() {
		zmq.Term()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(500 * time.Millisecond):
	}
}
