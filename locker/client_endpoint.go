package locker

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ErrBadEndpoint is wrapped by the *EndpointError that NewClient and Dial
// return for an endpoint a client cannot connect to.
var ErrBadEndpoint = errors.New("locker: bad endpoint")

// EndpointError says which endpoint NewClient refused, and why.
type EndpointError struct {
	Endpoint string
	Reason   string
}

// Error implements error.
func (e *EndpointError) Error() string {
	return fmt.Sprintf("%v %q: %s", ErrBadEndpoint, e.Endpoint, e.Reason)
}

// Unwrap returns ErrBadEndpoint.
func (e *EndpointError) Unwrap() error { return ErrBadEndpoint }

// checkEndpoint checks that ep is an endpoint a client socket can connect
// to: tcp://HOST:PORT (HOST a name, an IPv4 address or an IPv6 address in
// brackets; PORT 1 to 65535; an optional "SOURCE;" before it), or
// ipc://PATH or inproc://NAME. ZeroMQ refuses some bad endpoints only when
// it connects, and accepts others (a port that is not a number) and then
// never connects: both are refused here, before any socket exists.
func checkEndpoint(ep string) error {
	bad := func(why string) error {
		return &EndpointError{Endpoint: ep, Reason: why}
	}
	if ep == "" {
		return bad("empty endpoint")
	}
	if strings.ContainsFunc(ep, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return bad("control character in the endpoint")
	}
	scheme, addr, ok := strings.Cut(ep, "://")
	if !ok {
		return bad("want TRANSPORT://ADDRESS, e.g. tcp://127.0.0.1:7777")
	}
	switch scheme {
	case "ipc", "inproc":
		if addr == "" {
			return bad("no " + scheme + " address")
		}
		return nil
	case "tcp":
		if why := tcpProblem(addr); why != "" {
			return bad(why)
		}
		return nil
	default:
		return bad("unsupported transport " + strconv.Quote(scheme) + " (want tcp, ipc or inproc)")
	}
}

// tcpProblem says what is wrong with addr, the part of a tcp endpoint
// after "tcp://", or returns "" when it is an address a client socket can
// connect to.
func tcpProblem(addr string) string {
	if i := strings.IndexByte(addr, ';'); i >= 0 { // "SOURCE;HOST:PORT"
		if !validSource(addr[:i]) {
			return "source address before ';' must be an interface, HOST or HOST:PORT"
		}
		addr = addr[i+1:]
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "want tcp://HOST:PORT (an IPv6 address in brackets: tcp://[::1]:7777)"
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || port[0] < '0' || port[0] > '9' {
		return "port " + strconv.Quote(port) + " is not a number from 1 to 65535"
	}
	if err := checkHost(host, strings.HasPrefix(addr, "[")); err != nil {
		return err.Error()
	}
	return ""
}

// checkHost checks the host part of a tcp endpoint: an IP address (IPv6
// only in brackets) or a DNS name.
func checkHost(host string, bracketed bool) error {
	if host == "" {
		return errors.New("no host")
	}
	if ip := net.ParseIP(strings.SplitN(host, "%", 2)[0]); ip != nil {
		if ip.To4() == nil && !bracketed {
			return errors.New("an IPv6 address goes in brackets: tcp://[::1]:7777")
		}
		return nil
	}
	if bracketed {
		return errors.New("not an IPv6 address in brackets")
	}
	if !isAlnum(rune(host[0])) || strings.IndexFunc(host, notNameChar) >= 0 {
		return fmt.Errorf("host %q: not a name or an address", host)
	}
	return nil
}

// validSource reports whether src, the part of a tcp endpoint before ';',
// is made of the characters ZeroMQ takes there.
func validSource(src string) bool {
	if src == "" || !(isAlnum(rune(src[0])) || src[0] == '[' || src[0] == ':') {
		return false
	}
	return strings.IndexFunc(src, func(r rune) bool {
		return notNameChar(r) && !strings.ContainsRune(":%[]*", r)
	}) < 0
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// notNameChar reports whether r cannot be part of a host name.
func notNameChar(r rune) bool { return !isAlnum(r) && r != '-' && r != '.' && r != '_' }
