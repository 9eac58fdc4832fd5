package metrics_test

import (
	"context"
	"log"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/metrics"
)

// This is how lockerd wires a server to its metrics: the Metrics is the
// server's Observer, the server is the Metrics' StatsSource, and the
// probes follow the server's request loop.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	reg := metrics.NewRegistry()
	m, err := metrics.New(reg, metrics.BuildInfo{Version: "1.0.0", Revision: "abc123"})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := locker.NewServer(locker.Config{Observer: m})
	if err != nil {
		log.Fatal(err)
	}
	m.SetStats(srv)
	// m.SetPeers(node) once federation runs.

	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		srv.Run(ctx)
	}()
	h := metrics.Handler(reg, metrics.Health{
		Live:  metrics.Running(srv.Ready(), loopDone),
		Ready: metrics.Closed(srv.Ready(), "server not bound"),
	})
	if err := metrics.ListenAndServe(ctx, metrics.DefaultAddr, h); err != nil {
		log.Print(err)
	}
}
