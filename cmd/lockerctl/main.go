// Command lockerctl asks a lockerd server for go or sorry from a shell:
//
//	lockerctl wait -k api && curl https://api.example.com/...
//
// Exit status: 0 go, 1 sorry, 2 error, no answer, output that could not
// be written, or interrupted (a wait ended by SIGINT or SIGTERM exits 2,
// not 130, so that scripts need to tell only three cases apart).
//
// lockerctl lock runs a command while holding a lock, as flock(1) does on
// one host:
//
//	lockerctl lock nightly-backup --max-wait 10m -- /usr/local/bin/backup
//
// It exits with the command's status; 1 if the lock was not granted in
// time, 2 on error, 3 if the lease was lost while the command ran.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lockerd/lockerd/locker"
	"github.com/spf13/pflag"
)

// Version and Revision are stamped at build time with
// -ldflags "-X main.Version=... -X main.Revision=...".
var (
	Version  = "dev"
	Revision = "unknown"
)

// Exit statuses: the contract scripts rely on.
const (
	exitGo    = 0
	exitSorry = 1
	exitError = 2
)

// errSorry ends a command that was told sorry; the reply is already
// printed.
var errSorry = errors.New("sorry")

// command is one subcommand.
type command interface {
	// Run runs the command with its own arguments.
	Run(ctx context.Context, args []string) error
	// Usage returns the command's usage text.
	Usage() string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run runs lockerctl and returns its exit status. Output that could not
// be written all makes the status 2, whatever the command's outcome: a
// script must not act on an answer it did not get.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	out := &checkedWriter{w: stdout}
	code := dispatch(ctx, args, out, stderr)
	if out.err != nil {
		fmt.Fprintln(stderr, "lockerctl: writing the output:", out.err)
		return exitError
	}
	return code
}

// checkedWriter keeps the first error a write returned.
type checkedWriter struct {
	w   io.Writer
	err error
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	c.err = err
	return n, err
}

// dispatch runs a subcommand and maps its result to an exit status.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := newGlobals(stdout, stderr)
	commands := map[string]command{
		"probe":  &ProbeCommand{g: g},
		"wait":   &WaitCommand{g: g},
		"ping":   &PingCommand{g: g},
		"status": &StatusCommand{g: g},
		"keygen": &KeygenCommand{g: g},
		"bench":  &BenchCommand{g: g},
		"lock":   &LockCommand{g: g},
		"locks":  &LocksCommand{g: g},
		"unlock": &UnlockCommand{g: g},
		"revoke": &RevokeCommand{g: g},
	}
	order := []string{"probe", "wait", "ping", "status", "keygen", "bench", "lock", "locks", "unlock", "revoke"}
	usage := func() {
		fmt.Fprintf(stderr, "Usage: lockerctl [global flags] COMMAND [flags]\n\nCommands:\n")
		for _, name := range order {
			fmt.Fprintf(stderr, "  %s\n", commands[name].Usage())
		}
		fmt.Fprintf(stderr, "\nGlobal flags (also accepted after the command):\n%s\nExit status: 0 go, 1 sorry, 2 error, no answer or interrupted;\nlock: COMMAND's status, 1 not granted, 2 error, 3 lease lost.\n", g.flags.FlagUsages())
	}
	fs := pflag.NewFlagSet("lockerctl", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SetInterspersed(false)
	fs.AddFlagSet(g.flags)
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = usage
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitGo
		}
		fmt.Fprintln(stderr, "lockerctl:", err)
		return exitError
	}
	if *version {
		fmt.Fprintf(stdout, "lockerctl %s (revision %s)\n", Version, Revision)
		return exitGo
	}
	if fs.NArg() == 0 {
		usage()
		return exitError
	}
	cmd, ok := commands[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "lockerctl: unknown command %q\n", fs.Arg(0))
		usage()
		return exitError
	}
	err := cmd.Run(ctx, fs.Args()[1:])
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return exitGo
	case errors.Is(err, errSorry):
		return exitSorry
	}
	if es, ok := err.(*exitStatus); ok { // lock: COMMAND's status, or its own
		if es.err != nil {
			fmt.Fprintln(stderr, "lockerctl:", describe(es.err))
		}
		return es.code
	}
	fmt.Fprintln(stderr, "lockerctl:", describe(err))
	return exitError
}

// describe says what went wrong for the user: a server's refusal as the
// server put it, anything else as the error says it.
func describe(err error) string {
	var se *locker.ServerError
	if errors.As(err, &se) {
		return "server: " + se.Msg
	}
	return err.Error()
}
