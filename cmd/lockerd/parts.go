package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
)

// parts runs the parts of lockerd (server, federation, metrics, reload),
// each in its own goroutine, and collects their ends on one channel. The
// first part to end cancels the context of all the others.
//
// Its methods are called from one goroutine, the one that serves.
type parts struct {
	ctx     context.Context
	cancel  context.CancelFunc
	log     *slog.Logger
	ends    chan partEnd
	running int
	err     error // the first failure, or nil
}

// partEnd is how and why a part ended.
type partEnd struct {
	name string
	err  error
}

// errUnasked is how a part ends that returned while nobody asked it to.
var errUnasked = errors.New("stopped while lockerd was serving")

func newParts(ctx context.Context, log *slog.Logger) *parts {
	ctx, cancel := context.WithCancel(ctx)
	return &parts{ctx: ctx, cancel: cancel, log: log, ends: make(chan partEnd)}
}

// start runs the part name: run must return once its context is done. A
// panic in run ends the part with an error, after its stack is logged.
func (p *parts) start(name string, run func(ctx context.Context) error) {
	p.running++
	go func() {
		var err error
		defer func() {
			if r := recover(); r != nil {
				p.log.Error("panic", "part", name, "panic", r, "stack", string(debug.Stack()))
				err = fmt.Errorf("panic: %v", r)
			}
			p.ends <- partEnd{name, err}
		}()
		err = run(p.ctx)
	}()
}

// await blocks until ready is closed, and reports true, or until a part
// ends, and reports false: then every other part has been told to stop,
// and wait returns why.
func (p *parts) await(ready <-chan struct{}) bool {
	select {
	case <-ready:
		return true
	case e := <-p.ends:
		p.ended(e)
		return false
	}
}

// wait blocks until every part has ended. It returns the first failure:
// an error, or an end while the context was not done.
func (p *parts) wait() error {
	for p.running > 0 {
		p.ended(<-p.ends)
	}
	p.cancel()
	return p.err
}

// ended records the end e and stops the other parts.
func (p *parts) ended(e partEnd) {
	p.running--
	if e.err == nil && p.ctx.Err() == nil {
		e.err = errUnasked
	}
	if e.err != nil && p.err == nil {
		p.err = fmt.Errorf("%s: %w", e.name, e.err)
		p.log.Error("stopping: a part of lockerd ended", "part", e.name, "err", e.err)
	}
	p.cancel()
}
