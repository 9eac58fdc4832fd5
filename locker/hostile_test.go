package locker_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/lockertest"
	zmq "github.com/pebbe/zmq4"
)

// mustDealer returns a DEALER socket connected to ep, closed at cleanup.
// The socket belongs to the calling goroutine.
func mustDealer(tb testing.TB, ep string) *zmq.Socket {
	tb.Helper()
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		tb.Fatal(err)
	}
	s.SetLinger(0)
	s.SetRcvtimeo(5 * time.Second)
	if err := s.Connect(ep); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func tcpAddr(ep string) string { return strings.TrimPrefix(ep, "tcp://") }

// TestHostileInput throws what a network can deliver at a server and
// checks after each that a well-behaved client is still answered.
func TestHostileInput(t *testing.T) {
	_, ep := newTestServer(t, locker.Config{MaxMsgSize: 64 << 10})
	good := lockertest.NewClient(t, locker.ClientConfig{Endpoints: []string{ep}, Timeout: 2 * time.Second, Attempts: 1})
	stillServing := func(t *testing.T) {
		t.Helper()
		if _, err := good.Ping(t.Context()); err != nil {
			t.Fatalf("server stopped answering: %v", err)
		}
	}
	rawTCP := func(payload []byte) func(t *testing.T) {
		return func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", tcpAddr(ep), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
			conn.Write(payload)
			// The server reads its greeting, finds junk and hangs up;
			// whatever it does, it must not hang up on others.
			buf := make([]byte, 512)
			for {
				if _, err := conn.Read(buf); err != nil {
					break
				}
			}
		}
	}
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(i * 7)
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"raw tcp junk", rawTCP(junk)},
		{"http request", rawTCP([]byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))},
		{"zmtp greeting then junk", rawTCP(append([]byte{0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0}, junk...))},
		{"dealer without delimiter", func(t *testing.T) {
			d := mustDealer(t, ep)
			d.SendBytes([]byte("take default"), 0)
			msg, err := d.RecvMessageBytes(0)
			if err != nil || len(msg) != 1 || !bytes.HasPrefix(msg[0], []byte("go ")) && !bytes.HasPrefix(msg[0], []byte("sorry ")) {
				t.Fatalf("reply=%q, %v, want one frame go/sorry", msg, err)
			}
		}},
		{"hundreds of frames", func(t *testing.T) {
			d := mustDealer(t, ep)
			parts := make([]any, 300)
			for i := range parts {
				parts[i] = "x"
			}
			d.SendMessage(parts...)
			msg, err := d.RecvMessageBytes(0)
			if err != nil || len(msg) != 1 || !bytes.HasPrefix(msg[0], []byte("error ")) {
				t.Fatalf("reply=%q, %v, want one error frame", msg, err)
			}
		}},
		{"binary body", func(t *testing.T) {
			d := mustDealer(t, ep)
			d.SendBytes(nil, zmq.SNDMORE)
			d.SendBytes([]byte{0, 1, 2, 0xff, 0xfe, '\n'}, 0)
			msg, err := d.RecvMessageBytes(0)
			if err != nil || len(msg) != 2 || (string(msg[1]) != "go" && string(msg[1]) != "sorry") {
				t.Fatalf("reply=%q, %v, want a bare go or sorry (legacy)", msg, err)
			}
		}},
		{"4 MiB frame", func(t *testing.T) {
			d := mustDealer(t, ep)
			d.SetRcvtimeo(500 * time.Millisecond)
			d.SendBytes(make([]byte, 4<<20), 0)
			if msg, err := d.RecvMessageBytes(0); err == nil {
				t.Fatalf("oversize frame was answered: %d frames", len(msg))
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t)
			stillServing(t)
		})
	}
}

// TestUnknownKeysDoNotGrowMemory sends many requests for distinct unknown
// keys and checks that every one is answered with an error and that the
// heap does not grow with their number.
func TestUnknownKeysDoNotGrowMemory(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	srv, ep := newTestServer(t, locker.Config{})
	d := mustDealer(t, ep)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	const inFlight = 256
	send := func(i int) {
		var id [8]byte
		binary.BigEndian.PutUint64(id[:], uint64(i))
		d.SendBytes(id[:], zmq.SNDMORE)
		d.SendBytes(nil, zmq.SNDMORE)
		d.SendBytes([]byte(fmt.Sprintf("take unknown-%d", i)), 0)
	}
	run := func(from, to int) {
		sent, got := from, from
		for ; sent < to && sent-from < inFlight; sent++ {
			send(sent)
		}
		for got < to {
			msg, err := d.RecvMessageBytes(0)
			if err != nil {
				t.Fatalf("after %d replies: %v", got, err)
			}
			if len(msg) != 3 || !bytes.HasPrefix(msg[2], []byte("error unknown key")) {
				t.Fatalf("reply=%q, want error unknown key", msg)
			}
			got++
			if sent < to {
				send(sent)
				sent++
			}
		}
	}
	run(0, n/10) // warm up buffers and pools
	before := heap()
	run(n/10, n)
	after := heap()
	t.Logf("heap in use: %d KiB before, %d KiB after %d unknown keys", before>>10, after>>10, n)
	if after > before+4<<20 {
		t.Fatalf("heap grew by %d KiB over %d unknown keys", (after-before)>>10, n)
	}
	if len(srv.Stats().Keys) != 1 {
		t.Fatalf("keys=%d, want only default", len(srv.Stats().Keys))
	}
}
