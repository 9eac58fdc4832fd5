// Package benchmain is the entry point the bench programs of this module
// share: each program's main is one call to Main with its run function.
package benchmain

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Run is a program's body: it parses args, writes to stdout and stderr,
// stops when ctx ends, and returns the exit status.
type Run func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// Main calls run with the command-line arguments, the standard output and
// error, and a context that ends on SIGINT or SIGTERM, then exits with
// the status run returns.
func Main(run Run) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
