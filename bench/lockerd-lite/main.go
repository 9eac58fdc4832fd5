// Command lockerd-lite runs a bare locker.Server with benchmark keys and
// can write a CPU profile of the whole run: the harness for profiling the
// server under bench/load, which cmd/lockerd (no profiling flag) is not.
// It prints its bound endpoint on stdout and serves until SIGINT/SIGTERM.
//
//	lockerd-lite -endpoint 'tcp://127.0.0.1:*' -key bench=1000000000/1s -cpuprofile cpu.prof
//	go tool pprof -top lockerd-lite cpu.prof
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/lockerd/lockerd/bench/internal/benchmain"
	"github.com/lockerd/lockerd/locker"
)

func main() { benchmain.Main(run) }

type keyFlags []locker.KeyConfig

func (k *keyFlags) String() string { return fmt.Sprint(*k) }
func (k *keyFlags) Set(s string) error {
	name, spec, ok1 := strings.Cut(s, "=")
	lim, win, ok2 := strings.Cut(spec, "/")
	n, err1 := strconv.ParseInt(lim, 10, 64)
	w, err2 := time.ParseDuration(win)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return fmt.Errorf("bad key %q, want NAME=LIMIT/WINDOW", s)
	}
	*k = append(*k, locker.KeyConfig{Name: name, Limit: n, Window: w})
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lockerd-lite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ep := fs.String("endpoint", "tcp://127.0.0.1:*", "endpoint to bind")
	prof := fs.String("cpuprofile", "", "write a CPU profile to this file")
	var keys keyFlags
	fs.Var(&keys, "key", "NAME=LIMIT/WINDOW (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	stopProfile, err := benchmain.CPUProfile(*prof)
	if err != nil {
		fmt.Fprintln(stderr, "lockerd-lite:", err)
		return 1
	}
	defer stopProfile()
	srv, err := locker.NewServer(locker.Config{Endpoints: []string{*ep}, Keys: keys, ID: "lockerd-lite"})
	if err != nil {
		fmt.Fprintln(stderr, "lockerd-lite:", err)
		return 1
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
		fmt.Fprintln(stdout, srv.Endpoints()[0])
	case err := <-errc:
		fmt.Fprintln(stderr, "lockerd-lite:", err)
		return 1
	}
	if err := <-errc; err != nil && !errors.Is(err, locker.ErrServerClosed) {
		fmt.Fprintln(stderr, "lockerd-lite:", err)
		return 1
	}
	return 0
}
