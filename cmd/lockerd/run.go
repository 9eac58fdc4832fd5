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
	"github.com/lockerd/lockerd/locker/curve"
	"github.com/lockerd/lockerd/metrics"
	"github.com/lockerd/lockerd/peer"
	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
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

// serve runs lockerd until ctx is done or one of its parts ends. The
// parts are the request server, the federation node, the metrics
// endpoint and the SIGHUP reloader; each starts in one function and
// reports its end on one channel. The first part to end stops the
// others, and serve returns once all have ended: an end that ctx did not
// ask for, or any error, is returned, so lockerd never serves with a part
// missing. Held waits are answered as at shutdown.
func serve(ctx context.Context, o *options, args []string, log *slog.Logger) error {
	// Every listener is bound before the server says "serving".
	ln, err := listenMetrics(o.metricsAddr)
	if err != nil {
		return err
	}
	if ln != nil {
		defer ln.Close() // closed already, unless a step below failed
	}
	reg := metrics.NewRegistry()
	m, err := metrics.New(reg, metrics.BuildInfo{Version: Version, Revision: Revision})
	if err != nil {
		return err
	}
	cs, err := newCurve(o, log)
	if err != nil {
		return err
	}
	if cs != nil {
		defer cs.Close() // runs after every part ended
	}
	var node *peer.Node
	srv, err := locker.NewServer(serverConfig(o, log, m, cs, &node))
	if err != nil {
		return err
	}
	m.SetStats(srv)

	p := newParts(ctx, log)
	defer p.cancel()
	if o.publish != "" {
		closeFed, err := startFederation(p, o, srv, cs, &node, log)
		if err != nil {
			return err
		}
		defer closeFed()
		m.SetPeers(peerStats{node})
		// The server answers only once the federation is bound.
		if !p.await(node.Ready()) {
			return p.wait()
		}
	}
	loopDone := startServer(p, srv)
	if ln != nil {
		startMetrics(p, ln, reg, health(srv, loopDone, node, o), log)
	}
	startReload(p, srv, cs, o, args, log)
	err = p.wait()
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// listenMetrics binds the metrics address, unless it is empty.
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ln, nil
}

// newCurve returns the CURVE server of the request sockets, or nil when
// CURVE is off.
func newCurve(o *options, log *slog.Logger) (*curve.Server, error) {
	if o.secretKey == "" {
		return nil, nil
	}
	cs, err := curve.NewServer(o.secretKey, o.allowedKeys)
	if err != nil {
		return nil, err
	}
	log.Info("CURVE on", "public_key", cs.PublicKey(), "allowed_clients", len(o.allowedKeys))
	return cs, nil
}

// serverConfig is the request server's configuration. When federating,
// the status document carries the federation's fields from *node, which
// is set before the server runs.
func serverConfig(o *options, log *slog.Logger, m *metrics.Metrics, cs *curve.Server, node **peer.Node) locker.Config {
	cfg := locker.Config{
		Endpoints:  o.binds,
		Keys:       o.keys,
		ID:         o.id,
		MaxWait:    o.maxWait,
		MaxWaiters: o.maxWaiters,
		MaxKeys:    o.maxKeys,
		Logger:     log,
		Observer:   m,
		Locks:      o.locks.cfg,
		Federated:  o.publish != "",
	}
	if cs != nil {
		cfg.Security, cfg.ClientAllowed = cs.Apply, cs.Allowed
	}
	if o.publish != "" {
		// Called only from the server loop, once *node is set.
		cfg.StatusExtra = func() map[string]any { return (*node).StatusExtra() }
	}
	return cfg
}

// startServer starts the request server as a part. The returned channel
// is closed when its loop has returned.
func startServer(p *parts, srv *locker.Server) <-chan struct{} {
	stopped := make(chan struct{})
	p.start("server", func(ctx context.Context) error {
		defer close(stopped)
		err := srv.Run(ctx)
		if errors.Is(err, locker.ErrServerClosed) {
			return nil
		}
		return err
	})
	return stopped
}

// runNode runs a federation node; tests replace it to make the
// federation fail while lockerd serves.
var runNode = (*peer.Node).Run

// startFederation makes the server's counter a member of the federation
// and starts its node as a part, setting *node. The returned function
// releases what the node used, once it has stopped.
func startFederation(p *parts, o *options, srv *locker.Server, cs *curve.Server, node **peer.Node, log *slog.Logger) (func(), error) {
	mode, _ := peer.ParseMode(o.federation) // checked by parseOptions
	pc := peer.Config{ID: o.id, Publish: o.publish, Peers: o.peers, Mode: mode,
		Heartbeat: o.heartbeat, Logger: log.With("component", "peer")}
	var peerCurve *curve.Server
	if cs != nil {
		// Members share the server key pair: each PUB admits only that
		// key, and each SUB checks it, so a stranger can neither read
		// the stream nor publish grants.
		var err error
		if peerCurve, err = curve.NewServer(o.secretKey, []string{cs.PublicKey()}); err != nil {
			return nil, err
		}
		sub, err := curve.Client(cs.PublicKey(), curve.KeyPair{Secret: o.secretKey})
		if err != nil {
			peerCurve.Close()
			return nil, err
		}
		pc.PubSecurity, pc.SubSecurity = peerCurve.Apply, sub
	}
	release := func() {
		if peerCurve != nil {
			peerCurve.Close()
		}
	}
	n, err := peer.New(pc, srv.Counter())
	if err != nil {
		release()
		return nil, err
	}
	*node = n
	p.start("federation", func(ctx context.Context) error {
		err := runNode(n, ctx)
		if errors.Is(err, peer.ErrNodeClosed) {
			return nil
		}
		return err
	})
	return release, nil
}

// health is what /healthz and /readyz check: the request loop runs; the
// server is bound and, when federating, the peers were heard.
func health(srv *locker.Server, loopDone <-chan struct{}, node *peer.Node, o *options) metrics.Health {
	ready := metrics.Closed(srv.Ready(), "server not bound")
	if node != nil {
		ready = metrics.All(ready, peersHeard(node, o, time.Now()))
	}
	return metrics.Health{Live: metrics.Running(srv.Ready(), loopDone), Ready: ready}
}

// startMetrics serves /metrics and the probes on ln as a part.
func startMetrics(p *parts, ln net.Listener, reg *prometheus.Registry, h metrics.Health, log *slog.Logger) {
	handler := metrics.Handler(reg, h)
	log.Info("serving metrics", "addr", ln.Addr().String())
	p.start("metrics", func(ctx context.Context) error { return metrics.Serve(ctx, ln, handler) })
}

// startReload starts, as a part, the loop that reloads the configuration
// on SIGHUP.
func startReload(p *parts, srv *locker.Server, cs *curve.Server, o *options, args []string, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	p.start("reload", func(ctx context.Context) error {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				reload(srv, cs, o, args, log)
			}
		}
	})
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
func reload(srv *locker.Server, cs *curve.Server, old *options, args []string, log *slog.Logger) {
	var msgs strings.Builder
	o, err := parseOptions(args, &msgs)
	if err != nil {
		log.Error("reload failed, keeping the old configuration", "err", err)
		return
	}
	if (o.secretKey != "") != (cs != nil) {
		log.Error("reload failed, keeping the old configuration", "err", "turning CURVE on or off needs a restart")
		return
	}
	if err := srv.Counter().Reconfigure(o.keys); err != nil {
		log.Error("reload failed, keeping the old configuration", "err", err)
		return
	}
	srv.Counter().SetMaxKeys(o.maxKeys)
	if cs != nil {
		cs.SetAllowed(o.allowedKeys)
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
