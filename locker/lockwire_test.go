package locker_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/lockerd/lockerd/locker"
)

// serveLocks answers the lock verbs on a ROUTER socket bound to a free
// loopback port with a LockTable, until the test ends: a stand-in for the
// server loop, which does not serve them yet, so that the wire design and
// the Python example of docs/locks.md are tried end to end now. Like the
// server, one goroutine owns the socket and the table, reads the clock and
// answers held acquisitions itself when the table reports their events.
func serveLocks(tb testing.TB, cfg locker.LockTableConfig) string {
	tb.Helper()
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		tb.Fatal(err)
	}
	sock.SetLinger(0)
	if err := sock.Bind("tcp://127.0.0.1:*"); err != nil {
		tb.Fatal(err)
	}
	ep, err := sock.GetLastEndpoint()
	if err != nil {
		tb.Fatal(err)
	}
	tbl, err := locker.NewLockTable(cfg, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer sock.Close()
		held := map[uint64][][]byte{} // ticket -> envelope
		var buf []byte
		var events []locker.LockEvent
		send := func(env [][]byte, body []byte) {
			for _, f := range env {
				sock.SendBytes(f, zmq.SNDMORE|zmq.DONTWAIT)
			}
			sock.SendBytes(body, zmq.DONTWAIT)
		}
		deliver := func(now time.Time) {
			events = tbl.DrainEvents(events[:0])
			for _, ev := range events {
				if env, ok := held[ev.Ticket]; ok && ev.Ticket != 0 {
					delete(held, ev.Ticket)
					send(env, locker.AppendLockReply(buf[:0], now, ev.Result))
				}
			}
		}
		poller := zmq.NewPoller()
		poller.Add(sock, zmq.POLLIN)
		for ctx.Err() == nil {
			now := time.Now()
			tbl.Advance(now)
			deliver(now)
			wait := 50 * time.Millisecond
			if next, ok := tbl.NextDeadline(); ok {
				wait = min(wait, max(time.Until(next)+time.Millisecond, 0))
			}
			if _, err := poller.Poll(wait); err != nil {
				continue
			}
			for {
				msg, err := sock.RecvMessageBytes(zmq.DONTWAIT)
				if err != nil {
					break
				}
				env, body := msg[:len(msg)-1], msg[len(msg)-1]
				now := time.Now()
				req, err := locker.ParseLockRequest(body)
				switch {
				case err != nil:
					send(env, locker.AppendError(buf[:0], err))
					continue
				case req.Verb == locker.LockNone:
					send(env, []byte("error not a lock request"))
					continue
				case req.Verb == locker.LockList:
					tbl.Advance(now)
					var locks []locker.LockInfo
					if len(req.Name) == 0 {
						locks = tbl.Locks(nil)
					} else if li, ok := tbl.Lock(string(req.Name)); ok {
						locks = []locker.LockInfo{li}
					}
					send(env, locker.AppendLockList(buf[:0], now, locks))
					continue
				case req.Verb == locker.LockAbandon:
					n := 0
					for ticket, e := range held {
						if envEqual(e, env) {
							req.Ticket = ticket
							if r := tbl.Apply(now, req); r.Count == 1 {
								delete(held, ticket)
								n++
							}
						}
					}
					deliver(now)
					send(env, locker.AppendLockReply(buf[:0], now, locker.LockResult{Status: locker.LockAbandoned, Count: n}))
					continue
				}
				res := tbl.Apply(now, req)
				if res.Status == locker.LockQueued {
					held[res.Ticket] = env
				} else {
					send(env, locker.AppendLockReply(buf[:0], now, res))
				}
				deliver(now)
			}
		}
	}()
	tb.Cleanup(func() { cancel(); wg.Wait() })
	return ep
}

func envEqual(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// pythonBlock returns the first ```python block of a Markdown file that
// contains marker.
func pythonBlock(tb testing.TB, path, marker string) string {
	tb.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	for rest := string(doc); ; {
		_, block, ok := strings.Cut(rest, "```python\n")
		if !ok {
			tb.Fatalf("%s: no python block with %q", path, marker)
		}
		block, rest, _ = strings.Cut(block, "```\n")
		if strings.Contains(block, marker) {
			return block
		}
	}
}

// lockPyDriver uses the Lock class of docs/locks.md as its users would,
// and checks what they rely on: a second holder is refused, a waiter gets
// the lock when it is released, fences increase, a revocation and a
// break reach the holder through its renewals, and a lost lease is
// reported when the block ends.
const lockPyDriver = `
import sys, threading, time
import zmq

exec(open(sys.argv[1]).read())
ep = sys.argv[2]

def admin(body):
    s = zmq.Context.instance().socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(ep)
    s.send_string(body)
    assert s.poll(5000), "no answer to " + body
    r = s.recv_string()
    s.close()
    return r

def wait_for(cond):
    for _ in range(1000):
        if cond():
            return
        time.sleep(0.01)
    raise SystemExit("condition never held")

fences = []
with Lock("nightly", endpoint=ep, ttl_ms=3000) as lock:
    fences.append(lock.fence)
    try:
        Lock("nightly", endpoint=ep, max_wait_ms=0, owner="other").acquire()
        raise SystemExit("a second holder of a mutex")
    except LockBusy as e:
        assert lock.owner in str(e), str(e)

first = Lock("job", endpoint=ep, ttl_ms=3000, owner="first")
first.acquire()
fences.append(first.fence)
got = threading.Event()
def second():
    with Lock("job", endpoint=ep, ttl_ms=3000, max_wait_ms=20000, owner="second") as l2:
        fences.append(l2.fence)
        got.set()
t = threading.Thread(target=second)
t.start()
wait_for(lambda: '"owner":"second"' in admin("locks job"))
assert not got.is_set()
first.release()
t.join(20)
assert got.is_set(), "the waiter never got the lock"

r = Lock("rev", endpoint=ep, ttl_ms=600)
r.acquire()
assert admin("revoke rev") == "revoking 1"
assert r.revoked.wait(10), "revocation not seen"
r.release()

b = Lock("brk", endpoint=ep, ttl_ms=600)
b.acquire()
fences.append(b.fence)
assert admin("break brk").startswith("broken 1 ")
assert b.lost.wait(10), "break not seen"
try:
    b.release()
    raise SystemExit("release after a break did not raise LockLost")
except LockLost:
    pass

assert fences == sorted(set(fences)), fences
assert admin("locks") == '{"locks":[]}', admin("locks")
print("ok", len(fences))
`

// TestLockPythonExample runs the Python `with lock:` example of
// docs/locks.md, with Debian's python3-zmq, against the lock verbs.
func TestLockPythonExample(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import zmq").Run(); err != nil {
		t.Skipf("no python3-zmq (%v): apt-get install python3-zmq", err)
	}
	ep := serveLocks(t, locker.LockTableConfig{NoGrace: true})
	dir := t.TempDir()
	lib := filepath.Join(dir, "lock.py")
	if err := os.WriteFile(lib, []byte(pythonBlock(t, "../docs/locks.md", "class Lock")), 0o644); err != nil {
		t.Fatal(err)
	}
	driver := filepath.Join(dir, "driver.py")
	if err := os.WriteFile(driver, []byte(lockPyDriver), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, driver, lib, ep).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || ctx.Err() != nil {
			t.Fatalf("python example: %v\n%s", err, out)
		}
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "ok 4" {
		t.Fatalf("python example printed %q, want \"ok 4\"", got)
	}
}
