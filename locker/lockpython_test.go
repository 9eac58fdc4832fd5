package locker_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
)

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

// lockPyDriver uses the Lock class of PROTOCOL.md as its users would,
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
// PROTOCOL.md, with Debian's python3-zmq, against a server.
func TestLockPythonExample(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import zmq").Run(); err != nil {
		t.Skipf("no python3-zmq (%v): apt-get install python3-zmq", err)
	}
	ep := lockertest.NewServer(t, locker.Config{Locks: locker.LockTableConfig{NoGrace: true}}).Endpoint
	dir := t.TempDir()
	lib := filepath.Join(dir, "lock.py")
	if err := os.WriteFile(lib, []byte(pythonBlock(t, "../PROTOCOL.md", "class Lock")), 0o644); err != nil {
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
