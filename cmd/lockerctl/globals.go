package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/lockerd/lockerd/locker"
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
	fs.DurationVar(&g.timeout, "timeout", 2*time.Second, "how long to wait for an answer (beyond the time the server holds a wait)")
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
	fs.Usage = func() {
		fmt.Fprintf(g.stderr, "Usage: lockerctl %s\n\nFlags:\n%s", c.Usage(), fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// client returns a client that makes one attempt per request: a command
// must answer within its timeout, not three times that.
func (g *globals) client() (*locker.Client, error) {
	if g.timeout <= 0 {
		return nil, fmt.Errorf("--timeout %s: want a positive duration", g.timeout)
	}
	cfg := locker.ClientConfig{Endpoints: g.servers, Timeout: g.timeout, Attempts: 1}
	if len(g.servers) > 1 {
		cfg.Attempts = len(g.servers) // one try on each
	}
	sec, err := g.security()
	if err != nil {
		return nil, err
	}
	cfg.Security = sec
	return locker.NewClient(cfg)
}

func (g *globals) security() (func(*zmq.Socket) error, error) {
	switch {
	case g.curveServer == "" && g.curveSecret == "":
		return nil, nil
	case g.curveServer == "" || g.curveSecret == "":
		return nil, errors.New("--curve-server and --curve-secret go together")
	}
	sp, err := locker.ReadCurveKey(g.curveServer)
	if err != nil {
		return nil, fmt.Errorf("--curve-server: %w", err)
	}
	sec, err := locker.ReadCurveKey(g.curveSecret)
	if err != nil {
		return nil, fmt.Errorf("--curve-secret: %w", err)
	}
	return locker.CurveClient(sp, locker.CurveKeyPair{Secret: sec})
}

// explain explains a timeout in terms of what the user asked for.
func (g *globals) explain(err error) error {
	if errors.Is(err, locker.ErrTimeout) {
		return fmt.Errorf("no answer from %s within %s", g.serverList(), g.timeout)
	}
	return err
}

// serverList names the servers asked, for messages.
func (g *globals) serverList() string { return strings.Join(g.servers, ", ") }
