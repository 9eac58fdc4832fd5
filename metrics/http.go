package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is where lockerd serves metrics unless told otherwise.
const DefaultAddr = ":9777"

// shutdownTimeout bounds how long Serve waits for scrapes in flight once
// its context is done.
const shutdownTimeout = 5 * time.Second

// MaxConns is the most connections Serve holds at once. Beyond it, new
// connections wait in the kernel's accept queue, where they hold no file
// descriptor of the process: however many clients connect to the metrics
// port, the request sockets keep the descriptors they need. A scraper or
// two and the probes need a few.
const MaxConns = 32

// Timeouts of the metrics server: short, so that idle or slow
// connections give their place back soon.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 30 * time.Second // above Prometheus' default scrape interval of 15s
)

// Check reports whether a component is healthy: nil if it is, or why
// not. It is called on every probe and must not block.
type Check func() error

// Health holds the checks behind the probe endpoints. A nil Check
// passes.
type Health struct {
	// Live backs /healthz: it passes while the request loop runs.
	Live Check
	// Ready backs /readyz: it passes once the server is bound and, when
	// federating, once peers have been heard or their wait timed out.
	Ready Check
}

// Closed returns a Check that passes once ch is closed, and until then
// fails with an error saying what is awaited. Server.Ready gives such a
// channel.
func Closed(ch <-chan struct{}, what string) Check {
	err := fmt.Errorf("metrics: %s", what)
	return func() error {
		select {
		case <-ch:
			return nil
		default:
			return err
		}
	}
}

// Running returns a Check that passes once started is closed and until
// stopped is closed: the liveness of a loop that closes started when it
// begins and stopped when it returns.
func Running(started, stopped <-chan struct{}) Check {
	notStarted := errors.New("metrics: request loop not started")
	ended := errors.New("metrics: request loop stopped")
	return func() error {
		select {
		case <-stopped:
			return ended
		default:
		}
		select {
		case <-started:
			return nil
		default:
			return notStarted
		}
	}
}

// All returns a Check that passes when every non-nil check passes, and
// otherwise fails with the first failure.
func All(checks ...Check) Check {
	return func() error {
		for _, c := range checks {
			if c == nil {
				continue
			}
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	}
}

// Handler returns an http.Handler serving /metrics from g and the
// probes /healthz and /readyz from h. A probe answers 200 "ok" when its
// check passes and 503 with the reason otherwise.
func Handler(g prometheus.Gatherer, h Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		// A failing collector should not hide the others.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.Handle("GET /healthz", probe(h.Live))
	mux.Handle("GET /readyz", probe(h.Ready))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<html><head><title>lockerd</title></head><body><h1>lockerd</h1>`+
			`<p><a href="/metrics">/metrics</a> <a href="/healthz">/healthz</a> <a href="/readyz">/readyz</a></p></body></html>`+"\n")
	})
	return mux
}

// probe answers 200 when c passes and 503 otherwise.
func probe(c Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if c != nil {
			if err := c(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, err)
				return
			}
		}
		io.WriteString(w, "ok\n")
	})
}

// Serve serves h on ln until ctx is done, then shuts down, waiting up to
// five seconds for requests in flight, and returns nil. It returns an
// error, and closes ln, if serving fails before that. It does not leave
// goroutines behind. It holds at most MaxConns connections at once.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
	}
	ln = LimitListener(ln, MaxConns)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
	}
	<-errc // http.ErrServerClosed
	if err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}

// ListenAndServe listens on the TCP address addr and calls Serve. An
// error to listen is returned at once.
func ListenAndServe(ctx context.Context, addr string, h http.Handler) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listen: %w", err)
	}
	return Serve(ctx, ln, h)
}

// LimitListener returns a listener that accepts at most n connections at
// once from ln: its Accept waits until one of them is closed. Closing it
// closes ln and ends a waiting Accept.
func LimitListener(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), closed: make(chan struct{})}
}

// limitListener is a net.Listener with a semaphore of connections.
type limitListener struct {
	net.Listener
	slots     chan struct{} // one element per open connection
	closed    chan struct{}
	closeOnce sync.Once
}

// Accept waits for a free slot, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

// Close closes the listener and ends a waiting Accept.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitConn gives its slot back when closed, once.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close closes the connection and frees its slot.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
