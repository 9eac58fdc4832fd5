package locker

import (
	"net"
	"strings"
	"testing"

	zmq "github.com/pebbe/zmq4"
)

// FuzzCheckEndpoint checks that checkEndpoint never panics, and that
// ZeroMQ connects a client socket to every endpoint it accepts: an
// endpoint Dial lets through must never fail later. Only inproc and
// loopback tcp endpoints are connected, so the fuzzer never reaches out
// of the machine (nor resolves names).
func FuzzCheckEndpoint(f *testing.F) {
	for _, ep := range []string{
		"tcp://127.0.0.1:7777", "tcp://[::1]:7777", "tcp://localhost:1",
		"tcp://127.0.0.1:0;127.0.0.1:7777", "tcp://eth0;10.0.0.1:5", "ipc:///tmp/x",
		"inproc://x", "tcp://127.0.0.1", "tcp://::1:7777", "", ",", "tcp://[fe80::1%lo]:9",
	} {
		f.Add(ep)
	}
	f.Fuzz(func(t *testing.T, ep string) {
		if checkEndpoint(ep) != nil {
			return
		}
		if !strings.HasPrefix(ep, "inproc://") && !loopbackTCP(ep) {
			return
		}
		s, err := zmq.NewSocket(zmq.DEALER)
		if err != nil {
			t.Skip(err)
		}
		defer s.Close()
		s.SetLinger(0)
		s.SetIpv6(true)
		if err := s.Connect(ep); err != nil {
			t.Fatalf("checkEndpoint(%q) accepted it, Connect refused it: %v", ep, err)
		}
	})
}

// loopbackTCP reports whether ep is tcp to a loopback IP address.
func loopbackTCP(ep string) bool {
	addr, ok := strings.CutPrefix(ep, "tcp://")
	if !ok {
		return false
	}
	if i := strings.IndexByte(addr, ';'); i >= 0 {
		addr = addr[i+1:]
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
