//go:build linux && !lockerpipe

package locker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// wakeup is how callers wake the client's loop: an eventfd that the loop
// waits on with epoll, next to its DEALER socket's ZMQ_FD. A caller writes
// it directly, so a request reaches a sleeping loop in one hop.
//
// wake is safe for concurrent use; close runs once, after the loop ended.
type wakeup struct {
	mu sync.RWMutex
	fd int // -1 once closed
}

func newWakeup() (*wakeup, error) {
	fd, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return nil, fmt.Errorf("locker: client eventfd: %w", errno)
	}
	return &wakeup{fd: int(fd)}, nil
}

// start has nothing to start: no goroutine stands between callers and the
// loop.
func (w *wakeup) start(*Client) {}

func (w *wakeup) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	w.mu.RLock()
	if w.fd >= 0 {
		syscall.Write(w.fd, one[:]) // EAGAIN: the counter is full, so it is readable
	}
	w.mu.RUnlock()
}

func (w *wakeup) close() {
	w.mu.Lock()
	if w.fd >= 0 {
		syscall.Close(w.fd)
		w.fd = -1
	}
	w.mu.Unlock()
}

// loopPoller waits, on the loop goroutine, until the DEALER socket may
// have input, the wakeup is written, or a timeout passes.
type loopPoller struct {
	evfd int
	epfd int // the wakeup and the socket
	idle int // the wakeup alone: for sleeps with nothing pending
	// idleFile is idle as a file of the runtime's poller: a sleep with
	// nothing pending parks the loop goroutine there instead of blocking
	// its thread in epoll_wait. A thread blocked in a system call keeps
	// its P (GOMAXPROCS slot) until sysmon takes it back, which can take
	// up to 10 ms when the process is busy: every idle client of a
	// process would then, each time it goes to sleep, hold one of the
	// process's Ps and strand the goroutines queued on it. idleConn is
	// its raw connection.
	idleFile *os.File
	idleConn syscall.RawConn
	// woken is when the loop was last woken by a caller or by input; it
	// parks in the runtime's poller only after idleParkAfter without
	// either, so a client in use sleeps between calls as before, in
	// epoll_wait, and hands its socket to lone callers at once.
	woken  time.Time
	sock   *zmq.Socket
	sockFd int // -1 when no socket is watched
	events [2]syscall.EpollEvent
	drain  [8]byte
}

func newLoopPoller(w *wakeup) (*loopPoller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("locker: client epoll: %w", err)
	}
	idle, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("locker: client epoll: %w", err)
	}
	p := &loopPoller{evfd: w.fd, epfd: epfd, idle: idle, sockFd: -1}
	for _, fd := range []int{epfd, idle} {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(w.fd)}
		if err := syscall.EpollCtl(fd, syscall.EPOLL_CTL_ADD, w.fd, &ev); err != nil {
			p.close()
			return nil, fmt.Errorf("locker: client epoll: %w", err)
		}
	}
	// An epoll descriptor is readable while one of its own is ready:
	// the runtime's poller can watch it. Non-blocking, os.NewFile
	// registers it there.
	if err := syscall.SetNonblock(idle, true); err != nil {
		p.close()
		return nil, fmt.Errorf("locker: client epoll: %w", err)
	}
	p.idleFile = os.NewFile(uintptr(idle), "locker-client-idle")
	rc, err := p.idleFile.SyscallConn()
	if err != nil {
		p.close()
		return nil, fmt.Errorf("locker: client epoll: %w", err)
	}
	p.idleConn = rc
	p.woken = time.Now()
	return p, nil
}

// watch makes wait return when sock may have input. ZMQ_FD only says
// that the socket's state may have changed; wait checks ZMQ_EVENTS
// before it sleeps, which is what the ZMQ_FD contract asks.
func (p *loopPoller) watch(sock *zmq.Socket) error {
	p.unwatch()
	fd, err := sock.GetFd()
	if err != nil {
		return fmt.Errorf("locker: client socket fd: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("locker: client epoll: %w", err)
	}
	p.sock, p.sockFd = sock, fd
	return nil
}

// unwatch forgets the socket; call it before closing the socket.
func (p *loopPoller) unwatch() {
	if p.sockFd >= 0 {
		syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, p.sockFd, nil)
		p.sock, p.sockFd = nil, -1
	}
}

// wait sleeps up to timeout unless the socket already has input. It
// reports whether it slept the whole timeout, with nothing to wake it.
// With idle set (nothing pending) it waits for the wakeup alone and
// unlocks own while it sleeps, so that a caller may use the socket.
func (p *loopPoller) wait(timeout time.Duration, idle bool, own *sync.Mutex) (timedOut bool) {
	var n int
	var err error
	if idle {
		own.Unlock()
		if time.Since(p.woken) < idleParkAfter {
			n, err = syscall.EpollWait(p.idle, p.events[:], int((timeout+time.Millisecond-1)/time.Millisecond))
		} else {
			n, err = p.parkIdle(timeout)
		}
		own.Lock()
	} else {
		if p.sock != nil {
			if ev, err := p.sock.GetEvents(); err == nil && ev&zmq.POLLIN != 0 {
				return false
			}
		}
		ms := int((timeout + time.Millisecond - 1) / time.Millisecond)
		n, err = syscall.EpollWait(p.epfd, p.events[:], ms)
	}
	if err != nil {
		return false // EINTR: the loop looks around and comes back
	}
	for _, ev := range p.events[:n] {
		if int(ev.Fd) == p.evfd {
			syscall.Read(p.evfd, p.drain[:])
		}
	}
	if n > 0 {
		p.woken = time.Now()
	}
	return n == 0
}

// idleParkAfter is how long a loop must have gone unwoken before it
// sleeps parked in the runtime's poller (see loopPoller.woken).
const idleParkAfter = 250 * time.Millisecond

// parkIdle waits up to timeout for the wakeup, parked in the runtime's
// poller (see idleFile), and returns what epoll_wait on idle returned: 0
// events when the timeout passed.
func (p *loopPoller) parkIdle(timeout time.Duration) (int, error) {
	if p.idleConn == nil {
		return syscall.EpollWait(p.idle, p.events[:], int((timeout+time.Millisecond-1)/time.Millisecond))
	}
	if err := p.idleFile.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		// Not in the runtime's poller after all: block as before.
		p.idleConn = nil
		return p.parkIdle(timeout)
	}
	var n int
	var werr error
	err := p.idleConn.Read(func(fd uintptr) bool {
		n, werr = syscall.EpollWait(int(fd), p.events[:], 0)
		return n > 0 || werr != nil && werr != syscall.EINTR
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return n, werr
}

func (p *loopPoller) close() {
	p.unwatch()
	syscall.Close(p.epfd)
	if p.idleFile != nil {
		p.idleFile.Close() // closes idle
	} else {
		syscall.Close(p.idle)
	}
}
