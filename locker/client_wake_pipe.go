//go:build !linux || lockerpipe

package locker

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// wakeup is how callers wake the client's loop where there is no eventfd:
// a channel to a goroutine that owns the sending end of an inproc pipe the
// loop polls next to its DEALER socket. (Build with -tags lockerpipe to
// use it on Linux.)
type wakeup struct {
	ch   chan struct{}
	pipe string
}

var pipeSeq atomic.Uint64

func newWakeup() (*wakeup, error) {
	return &wakeup{
		ch:   make(chan struct{}, 1),
		pipe: "inproc://locker-client-" + strconv.FormatUint(pipeSeq.Add(1), 10),
	}, nil
}

// start runs the goroutine that owns the sending end of the pipe; the
// loop has bound the receiving end.
func (w *wakeup) start(c *Client) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		w.run(c)
	}()
}

func (w *wakeup) run(c *Client) {
	push, err := zmq.NewSocket(zmq.PUSH)
	if err != nil {
		c.log.Error("client pipe", "err", err)
		return
	}
	defer push.Close()
	push.SetLinger(0)
	push.SetSndhwm(4)
	if err := push.Connect(w.pipe); err != nil {
		c.log.Error("client pipe", "err", err)
		return
	}
	for {
		select {
		case <-c.done:
			push.SendBytes(nil, zmq.DONTWAIT) // let the loop see done now
			return
		case <-w.ch:
			// A full pipe already holds a wake-up: dropping is fine.
			push.SendBytes(nil, zmq.DONTWAIT)
		}
	}
}

func (w *wakeup) wake() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

func (w *wakeup) close() {}

// loopPoller waits, on the loop goroutine, until the DEALER socket or the
// pipe has input, or a timeout passes.
type loopPoller struct {
	pull   *zmq.Socket
	poller *zmq.Poller
	idle   *zmq.Poller // the pipe alone: for sleeps with nothing pending
}

func newLoopPoller(w *wakeup) (*loopPoller, error) {
	pull, err := zmq.NewSocket(zmq.PULL)
	if err == nil {
		err = pull.SetLinger(0)
	}
	if err == nil {
		err = pull.Bind(w.pipe)
	}
	if err != nil {
		if pull != nil {
			pull.Close()
		}
		return nil, fmt.Errorf("locker: client pipe: %w", err)
	}
	idle := zmq.NewPoller()
	idle.Add(pull, zmq.POLLIN)
	return &loopPoller{pull: pull, idle: idle}, nil
}

func (p *loopPoller) watch(sock *zmq.Socket) error {
	p.poller = zmq.NewPoller()
	p.poller.Add(p.pull, zmq.POLLIN)
	p.poller.Add(sock, zmq.POLLIN)
	return nil
}

// unwatch leaves the pipe alone in the poller, so a loop with no socket
// still wakes for new calls.
func (p *loopPoller) unwatch() {
	p.poller = zmq.NewPoller()
	p.poller.Add(p.pull, zmq.POLLIN)
}

// wait sleeps up to timeout unless a socket has input. It reports
// whether it slept the whole timeout, with nothing to wake it. With idle
// set (nothing pending) it polls the pipe alone and unlocks own while it
// sleeps, so that a caller may use the DEALER socket.
func (p *loopPoller) wait(timeout time.Duration, idle bool, own *sync.Mutex) (timedOut bool) {
	if p.poller == nil {
		p.unwatch()
	}
	poller := p.poller
	if idle {
		poller = p.idle
		own.Unlock()
	}
	polled, err := poller.Poll(timeout)
	if idle {
		own.Lock()
	}
	if err != nil {
		return false
	}
	for _, s := range polled {
		if s.Socket != p.pull {
			continue
		}
		for { // drain wake-ups
			if _, err := p.pull.RecvBytes(zmq.DONTWAIT); err != nil {
				break
			}
		}
	}
	return len(polled) == 0
}

func (p *loopPoller) close() { p.pull.Close() }
