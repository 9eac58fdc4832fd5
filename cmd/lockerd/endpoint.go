package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// endpointUse is how lockerd uses an endpoint: it binds --bind and
// --publish, and connects to each --peer.
type endpointUse uint8

const (
	useBind    endpointUse = iota // --bind: a wildcard host or port is fine
	usePublish                    // --publish: bound, but peers must find it again
	useConnect                    // --peer: a host and a port to reach
)

// maxIPCPath is the longest ipc path ZeroMQ accepts: a Unix socket path
// (sun_path) of 108 bytes, one of them the terminating NUL.
const maxIPCPath = 107

// checkEndpoint reports why endpoint cannot serve for use, or nil. It
// checks the forms ZeroMQ accepts (tcp://HOST:PORT, with an IPv6 host in
// brackets; ipc://PATH; inproc://NAME) without resolving a name or
// binding anything, so that a mistake is a usage error when the flags are
// read, not a log line once lockerd already serves.
func checkEndpoint(endpoint string, use endpointUse) error {
	transport, addr, ok := strings.Cut(endpoint, "://")
	if !ok {
		return errors.New("want an endpoint like tcp://host:port")
	}
	switch transport {
	case "tcp":
		return checkTCP(addr, use)
	case "ipc":
		switch {
		case addr == "":
			return errors.New("an ipc endpoint needs a path, like ipc:///run/lockerd.sock")
		case addr == "*" && use != useBind:
			return errors.New("ipc://* picks a random path: peers could not find it")
		case len(addr) > maxIPCPath:
			return fmt.Errorf("ipc path of %d bytes, at most %d", len(addr), maxIPCPath)
		}
		return nil
	case "inproc":
		if addr == "" {
			return errors.New("an inproc endpoint needs a name")
		}
		return nil
	}
	return fmt.Errorf("transport %q: want tcp, ipc or inproc", transport)
}

// checkTCP checks the part of a tcp endpoint after tcp://. A connecting
// endpoint may name the source address first: SOURCE;HOST:PORT.
func checkTCP(addr string, use endpointUse) error {
	if src, dst, ok := strings.Cut(addr, ";"); ok {
		if use != useConnect {
			return errors.New("a source address (SOURCE;HOST:PORT) is for --peer only")
		}
		if err := checkHostPort(src, useBind); err != nil {
			return fmt.Errorf("source address: %w", err)
		}
		addr = dst
	}
	return checkHostPort(addr, use)
}

// checkHostPort checks HOST:PORT, where HOST is a name, an IPv4 address,
// an IPv6 address in brackets, or * to bind every interface.
func checkHostPort(addr string, use endpointUse) error {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return err
	}
	if err := checkHost(host, use); err != nil {
		return err
	}
	return checkPort(port, use)
}

// splitHostPort splits HOST:PORT at the last colon, or after the closing
// bracket of an IPv6 address.
func splitHostPort(addr string) (host, port string, err error) {
	if strings.HasPrefix(addr, "[") {
		end := strings.IndexByte(addr, ']')
		if end < 0 {
			return "", "", errors.New("an IPv6 address needs its closing ], like tcp://[::1]:7777")
		}
		host, rest := addr[:end+1], addr[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return "", "", errors.New("a tcp endpoint needs host and port, like tcp://[::1]:7777")
		}
		return host, rest[1:], nil
	}
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", "", errors.New("a tcp endpoint needs host and port, like tcp://127.0.0.1:7777")
	}
	return addr[:i], addr[i+1:], nil
}

// checkHost checks the host of a tcp endpoint.
func checkHost(host string, use endpointUse) error {
	switch {
	case host == "":
		return errors.New("a tcp endpoint needs host and port, like tcp://127.0.0.1:7777")
	case host == "*":
		if use == useConnect {
			return errors.New("* binds every interface; a peer needs a host to connect to")
		}
		return nil
	case strings.HasPrefix(host, "["):
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() {
			return fmt.Errorf("%s is not an IPv6 address", host)
		}
		return nil
	case strings.Contains(host, ":"):
		return fmt.Errorf("an IPv6 address goes in brackets, like tcp://[%s]:7777", host)
	}
	if strings.IndexFunc(host, notHostChar) >= 0 {
		return fmt.Errorf("host %q: want a name, an IPv4 address or an IPv6 address in brackets", host)
	}
	return nil
}

// notHostChar reports whether c cannot be part of a host name, an IPv4
// address or an interface name.
func notHostChar(c rune) bool {
	return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_')
}

// checkPort checks the port of a tcp endpoint: 1 to 65535, or, when
// binding with --bind, * or 0 for a port the system picks.
func checkPort(port string, use endpointUse) error {
	if port == "*" || port == "0" {
		switch use {
		case useBind:
			return nil
		case usePublish:
			return fmt.Errorf("port %s is picked at random: peers could not find it", port)
		}
		return fmt.Errorf("port %s: a peer needs a port to connect to", port)
	}
	if port == "" {
		return errors.New("a tcp endpoint needs host and port, like tcp://127.0.0.1:7777")
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	return nil
}
