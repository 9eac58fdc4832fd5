package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"

	zmq "github.com/pebbe/zmq4"

	"github.com/lockerd/lockerd/loadstats"
)

// The floor of a hand-over: on one lock each hand-over is a release sent
// to the server and a grant sent back to the next holder, so it costs at
// least one round trip. The echo system measures a bare ZeroMQ round trip
// to bench/echo (a ROUTER that sends every message back) from one REQ
// socket and one goroutine, in the same run as the locks.

// echoRun names the echo runs.
const echoRun = sysEcho + " c=1"

// echoBody is the size of a release of the contended lock.
var echoBody = []byte("release lockcmp.r1.one16.0 1796142740350491")

// echoClient is one REQ socket, used by one goroutine at a time.
type echoClient struct{ sock *zmq.Socket }

func newEchoClient(ep string) (*echoClient, error) {
	s, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		return nil, err
	}
	// Relaxed and correlated: after a timed-out receive the socket can
	// send again, and a late reply is dropped.
	for _, set := range []func() error{
		func() error { return s.SetLinger(0) },
		func() error { return s.SetReqRelaxed(1) },
		func() error { return s.SetReqCorrelate(1) },
		func() error { return s.SetRcvtimeo(lockerdTimeout) },
		func() error { return s.SetSndtimeo(lockerdTimeout) },
		func() error { return s.Connect(ep) },
	} {
		if err := set(); err != nil {
			s.Close()
			return nil, err
		}
	}
	return &echoClient{sock: s}, nil
}

func (e *echoClient) close() { e.sock.Close() }

// roundTrip sends echoBody and receives it back.
func (e *echoClient) roundTrip(context.Context) error {
	if _, err := e.sock.SendBytes(echoBody, 0); err != nil {
		return err
	}
	b, err := e.sock.RecvBytes(0)
	if err != nil {
		return err
	}
	if !bytes.Equal(b, echoBody) {
		return fmt.Errorf("echo answered %q", b)
	}
	return nil
}

// startEcho starts the echo binary bin on a free loopback port.
func startEcho(dir, bin string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	p, err := startProc(dir, sysEcho, bin, "-endpoint", ep)
	return p, ep, err
}

// buildEcho builds bench/echo of the enclosing repository into dir.
func buildEcho(ctx context.Context, dir string) (string, error) {
	return buildRepo(ctx, "./bench/echo", filepath.Join(dir, sysEcho))
}

func (b *bench) connectEcho(ctx context.Context, p *proc, addr string) error {
	e, err := newEchoClient(addr)
	if err != nil {
		return fmtErr(sysEcho, err)
	}
	b.echo = e
	return p.waitReady(ctx, startLimit, e.roundTrip)
}

// measureEcho measures round trips to the echo server from one goroutine.
func (b *bench) measureEcho(ctx context.Context) error {
	var errs errRecorder
	s, err := loadstats.Run(ctx, loadstats.Options{Name: echoRun, Goroutines: 1, Duration: b.o.d},
		func(int) (loadstats.Work, func(), error) {
			return loop(ctx, b.echo.roundTrip, &errs), nil, nil
		})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	b.record(s, errs.first)
	return nil
}
