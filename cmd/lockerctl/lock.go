package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// Exit statuses of lockerctl lock, beside COMMAND's own.
const (
	// exitNotLocked: the lock was not granted within --max-wait (or at
	// once, with --nonblock).
	exitNotLocked = 1
	// exitLeaseLost: the lease was lost while COMMAND ran; COMMAND was
	// sent SIGTERM, then SIGKILL after --kill-grace.
	exitLeaseLost = 3
)

// exitStatus ends a command with a status of its own; err, if not nil,
// is printed.
type exitStatus struct {
	code int
	err  error
}

func (e *exitStatus) Error() string {
	if e.err == nil {
		return "exit status " + strconv.Itoa(e.code)
	}
	return e.err.Error()
}

func (e *exitStatus) Unwrap() error { return e.err }

// LockCommand runs a command while holding a lock: flock(1) across hosts.
type LockCommand struct{ g *globals }

// Usage implements command.
func (c *LockCommand) Usage() string {
	return "lock NAME [--ttl D] [--max-wait D] [-n] [--shared] [--owner S] -- COMMAND [ARGS...]\n" +
		"                                 run COMMAND holding the lock NAME, renewing it; exit with COMMAND's status,\n" +
		"                                 1 if not granted within --max-wait, 2 on error, 3 if the lease was lost"
}

// forwarded are the signals passed on to COMMAND.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// Run implements command.
func (c *LockCommand) Run(ctx context.Context, args []string) error {
	fs := c.g.flagSet("lock")
	ttl := fs.Duration("ttl", 0, "lease to ask for, renewed at a third of it (0: the server's default)")
	maxWait := fs.Duration("max-wait", 0, "give up (exit 1) if the lock is not granted within this long (0: wait until interrupted)")
	nonblock := fs.BoolP("nonblock", "n", false, "do not wait: exit 1 at once if the lock is held")
	shared := fs.Bool("shared", false, "hold the lock shared (a reader, or one of a semaphore's holders)")
	owner := fs.String("owner", "", "owner shown in listings (default HOST:PID)")
	grace := fs.Duration("kill-grace", 5*time.Second, "after the lease is lost, how long COMMAND has between SIGTERM and SIGKILL")
	fs.Usage = func() {
		fmt.Fprintf(c.g.stderr, "Usage: lockerctl %s\n\nFlags:\n%s", c.Usage(), fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	dash := fs.ArgsLenAtDash()
	switch {
	case fs.NArg() == 0, dash == 0:
		return errors.New("lock: missing NAME")
	case dash < 0 || dash == fs.NArg():
		return errors.New("lock: missing -- COMMAND [ARGS...]")
	case dash != 1:
		return fmt.Errorf("lock: one NAME before --, got %q", fs.Args()[:dash])
	case *ttl < 0, *maxWait < 0:
		return errors.New("lock: --ttl and --max-wait must not be negative")
	case *grace <= 0:
		return fmt.Errorf("lock: --kill-grace %s: want a positive duration", *grace)
	}
	name, argv := fs.Arg(0), fs.Args()[dash:]
	if err := locker.ValidKeyName(name); err != nil {
		return fmt.Errorf("lock %q: %w", name, err)
	}
	client, err := c.g.client()
	if err != nil {
		return err
	}
	defer client.Close()
	// A server that does not answer is an error (2) at once, not a
	// lock that is never granted.
	pctx, cancel := c.g.withTimeout(ctx)
	_, err = client.Ping(pctx)
	cancel()
	if err != nil {
		return c.g.explain(ctx, err)
	}
	lease, err := c.acquire(ctx, client, name, *maxWait, *nonblock, locker.LockOptions{TTL: *ttl, Shared: *shared, Owner: *owner})
	if err != nil {
		return err
	}
	return c.runHolding(ctx, lease, argv, *grace)
}

// acquire gets the lease, mapping a lock not granted in time to exit 1.
func (c *LockCommand) acquire(ctx context.Context, client *locker.Client, name string, maxWait time.Duration, nonblock bool, o locker.LockOptions) (*locker.Lease, error) {
	lctx, cancel := ctx, context.CancelFunc(func() {})
	if maxWait > 0 {
		lctx, cancel = context.WithTimeout(ctx, maxWait)
	}
	defer cancel()
	var lease *locker.Lease
	var err error
	if nonblock {
		lease, err = client.TryLock(lctx, name, o)
	} else {
		lease, err = client.Lock(lctx, name, o)
	}
	var busy *locker.LockBusyError
	switch {
	case err == nil:
		return lease, nil
	case ctx.Err() != nil:
		return nil, fmt.Errorf("interrupted while waiting for lock %s: %w", name, ctx.Err())
	case errors.As(err, &busy):
		return nil, &exitStatus{code: exitNotLocked, err: fmt.Errorf("lock %s not granted: %s", name, describeBusy(busy))}
	case errors.Is(err, context.DeadlineExceeded):
		return nil, &exitStatus{code: exitNotLocked, err: fmt.Errorf("lock %s not granted within %s", name, maxWait)}
	}
	return nil, c.g.explain(ctx, err)
}

func describeBusy(b *locker.LockBusyError) string {
	owner := b.Owner
	if owner == "" {
		owner = "nobody yet"
	}
	return fmt.Sprintf("%d holders (oldest %s), %d waiters, could be free in %s", b.Holders, owner, b.Waiters, b.FreeIn.Round(time.Millisecond))
}

// outFile returns the file under w, so that COMMAND writes to it
// directly, or w.
func outFile(w io.Writer) io.Writer {
	if cw, ok := w.(*checkedWriter); ok {
		w = cw.w
	}
	return w
}

// runHolding runs argv while lease is held, and releases it after.
func (c *LockCommand) runHolding(ctx context.Context, lease *locker.Lease, argv []string, grace time.Duration) error {
	release := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), c.g.timeout)
		defer cancel()
		return lease.Unlock(ctx)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LOCKER_LOCK="+lease.Name(), "LOCKER_FENCE="+strconv.FormatInt(lease.Fence(), 10))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, outFile(c.g.stdout), c.g.stderr
	// Its own process group, so that a lost lease stops all of it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, forwarded...)
	defer signal.Stop(sigc)
	if ctx.Err() != nil { // interrupted before sigc was there to see it
		release()
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if err := cmd.Start(); err != nil {
		release()
		return fmt.Errorf("lock %s: %w", lease.Name(), err)
	}
	pgid := cmd.Process.Pid
	group := func(s syscall.Signal) { syscall.Kill(-pgid, s) }
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	lost, revoked := lease.Lost(), lease.Revoked()
	var kill <-chan time.Time
	var lostErr error
wait:
	for {
		select {
		case <-done:
			break wait
		case s := <-sigc:
			group(s.(syscall.Signal))
		case <-revoked:
			// Asked to release: COMMAND should finish now.
			revoked = nil
			fmt.Fprintf(c.g.stderr, "lockerctl: lock %s revoked: sending SIGTERM to the command\n", lease.Name())
			group(syscall.SIGTERM)
		case <-lost:
			lost = nil
			lostErr = lease.Err()
			fmt.Fprintf(c.g.stderr, "lockerctl: %v: sending SIGTERM to the command, SIGKILL in %s\n", lostErr, grace)
			group(syscall.SIGTERM)
			t := time.NewTimer(grace)
			defer t.Stop()
			kill = t.C
		case <-kill:
			kill = nil
			group(syscall.SIGKILL)
		}
	}
	if lostErr != nil {
		group(syscall.SIGKILL) // what is left of the group
		release()
		return &exitStatus{code: exitLeaseLost, err: fmt.Errorf("lock %s: %w", lease.Name(), lostErr)}
	}
	code := commandStatus(cmd)
	if err := release(); err != nil {
		if errors.Is(err, locker.ErrLeaseExpired) || errors.Is(err, locker.ErrLeaseBroken) || errors.Is(err, locker.ErrLeaseRevoked) {
			// Lost as the command ended: it may not have been protected
			// to its end.
			return &exitStatus{code: exitLeaseLost, err: fmt.Errorf("lock %s: %w", lease.Name(), err)}
		}
		fmt.Fprintf(c.g.stderr, "lockerctl: lock %s: release: %s (the lease ends on its own)\n", lease.Name(), describe(err))
	}
	if code == 0 {
		return nil
	}
	return &exitStatus{code: code}
}

// commandStatus is COMMAND's exit status as a shell gives it: 128+N when
// it was killed by signal N.
func commandStatus(cmd *exec.Cmd) int {
	if cmd.ProcessState == nil {
		return exitError
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if code := cmd.ProcessState.ExitCode(); code >= 0 {
		return code
	}
	return exitError
}
