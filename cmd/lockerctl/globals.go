package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/curve"
	zmq "github.com/pebbe/zmq4"
	"github.com/spf13/pflag"
)

// DefaultServer is the server asked when neither --server nor
// LOCKER_SERVER says otherwise.
const DefaultServer = "tcp://localhost:7777"

// globals are the flags every command takes.
type globals struct {
	stdout, stderr io.Writer
	flags          *pflag.FlagSet

	servers     []string
	timeout     time.Duration
	curveServer string
	curveSecret string
}

func newGlobals(stdout, stderr io.Writer) *globals {
	g := &globals{stdout: stdout, stderr: stderr}
	def := []string{DefaultServer}
	if env := os.Getenv("LOCKER_SERVER"); env != "" {
		def = strings.Split(env, ",")
	}
	fs := pflag.NewFlagSet("global", pflag.ContinueOnError)
	fs.StringSliceVarP(&g.servers, "server", "s", def, "server endpoint; repeat or separate with commas to fail over (env LOCKER_SERVER)")
	fs.DurationVar(&g.timeout, "timeout", 2*time.Second, "how long the command waits for an answer, from all servers together (beyond the time a server holds a wait)")
	fs.StringVar(&g.curveServer, "curve-server", "", "the server's CURVE public key, or a FILE holding it")
	fs.StringVar(&g.curveSecret, "curve-secret", "", "this client's CURVE secret key FILE (see keygen)")
	g.flags = fs
	return g
}

// flagSet returns a flag set for a command that also takes the global
// flags.
func (g *globals) flagSet(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(g.stderr)
	fs.AddFlagSet(g.flags)
	return fs
}

// parse parses a command's flags and refuses stray arguments.
func (g *globals) parse(fs *pflag.FlagSet, c command, args []string) error {
	if err := g.parseArgs(fs, c, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// parseArgs parses a command's flags, leaving its arguments in fs.Args.
func (g *globals) parseArgs(fs *pflag.FlagSet, c command, args []string) error {
	fs.Usage = func() {
		fmt.Fprintf(g.stderr, "Usage: lockerctl %s\n\nFlags:\n%s", c.Usage(), fs.FlagUsages())
	}
	return fs.Parse(args)
}

// session returns a client of the servers and a context bounded by
// --timeout, for a command that does not wait; done releases both.
func (g *globals) session(ctx context.Context) (client *locker.Client, cctx context.Context, done func(), err error) {
	client, err = g.client()
	if err != nil {
		return nil, nil, nil, err
	}
	cctx, cancel := g.withTimeout(ctx)
	return client, cctx, func() { cancel(); client.Close() }, nil
}

const (
	// firstHold is the longest the first wait request may be held. A
	// server that is not there is noticed after it plus --timeout, so
	// wait fails about as fast as probe does.
	firstHold = 500 * time.Millisecond
	// holdChunk is the longest any later wait request may be held: a
	// server that dies while holding one is noticed within holdChunk plus
	// --timeout. Servers cap holds at their --max-wait (30s by default).
	holdChunk = 5 * time.Second
)

// clientConfig returns the configuration of the command's client. It
// makes one attempt on each server, and the attempts share --timeout, so
// that the command gets its answer within --timeout (plus the time a
// server may hold a wait) however many servers it has to try.
func (g *globals) clientConfig() (locker.ClientConfig, error) {
	if g.timeout <= 0 {
		return locker.ClientConfig{}, fmt.Errorf("--timeout %s: want a positive duration", g.timeout)
	}
	for _, s := range g.servers {
		if s == "" {
			return locker.ClientConfig{}, fmt.Errorf("empty endpoint in --server or LOCKER_SERVER (%q)", strings.Join(g.servers, ","))
		}
	}
	n := len(g.servers)
	cfg := locker.ClientConfig{
		Endpoints: g.servers,
		Timeout:   max(g.timeout/time.Duration(n), time.Millisecond),
		Attempts:  n,
		FirstHold: firstHold,
		Hold:      holdChunk,
	}
	sec, err := g.security()
	if err != nil {
		return locker.ClientConfig{}, err
	}
	cfg.Security = sec
	return cfg, nil
}

// client returns a client configured by clientConfig.
func (g *globals) client() (*locker.Client, error) {
	cfg, err := g.clientConfig()
	if err != nil {
		return nil, err
	}
	c, err := locker.NewClient(cfg)
	var be *locker.EndpointError
	if errors.As(err, &be) {
		return nil, fmt.Errorf("--server %q: %s", be.Endpoint, be.Reason)
	}
	return c, err
}

// withTimeout bounds a command that does not wait: its answer is due
// within --timeout, whatever the number of servers it tries.
func (g *globals) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, g.timeout)
}

func (g *globals) security() (func(*zmq.Socket) error, error) {
	switch {
	case g.curveServer == "" && g.curveSecret == "":
		return nil, nil
	case g.curveServer == "" || g.curveSecret == "":
		return nil, errors.New("--curve-server and --curve-secret go together")
	}
	sp, err := curve.ReadKey(g.curveServer)
	if err != nil {
		return nil, fmt.Errorf("--curve-server: %w", err)
	}
	sec, err := curve.ReadKey(g.curveSecret)
	if err != nil {
		return nil, fmt.Errorf("--curve-secret: %w", err)
	}
	return curve.Client(sp, curve.KeyPair{Secret: sec})
}

// explain explains a timeout in terms of what the user asked for. ctx is
// the command's own context: when it ended, the user interrupted.
func (g *globals) explain(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", ctx.Err())
	case errors.Is(err, locker.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from %s within %s", g.serverList(), g.timeout)
	}
	return err
}

// serverList names the servers asked, for messages.
func (g *globals) serverList() string { return strings.Join(g.servers, ", ") }
