// Package curve secures lockerd's ZeroMQ sockets with CURVE (CurveZMQ):
// key pairs and the files that hold them, allow lists of client keys,
// and the process-wide ZAP handler that admits only the keys on a list.
//
// A server socket is made a CURVE server with a Server, whose Apply
// method is a locker.Config.Security and whose Allowed method is a
// locker.Config.ClientAllowed; a client socket is made a CURVE client
// with the function Client returns, a locker.ClientConfig.Security.
//
// The ZAP handler answers only for sockets of the default ZeroMQ
// context, which is the one the locker and peer packages use.
package curve

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	zmq "github.com/pebbe/zmq4"
)

// keyLen is the length of a CURVE key in Z85 text.
const keyLen = 40

const z85Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

var errNoCurve = errors.New("curve: libzmq has no CURVE support")

// KeyPair is a CURVE key pair in Z85 text. The zero value holds no key.
type KeyPair struct {
	Public string
	Secret string
}

// NewKeyPair generates a new key pair. It fails when libzmq was built
// without CURVE.
func NewKeyPair() (KeyPair, error) {
	if !zmq.HasCurve() {
		return KeyPair{}, errNoCurve
	}
	pub, sec, err := zmq.NewCurveKeypair()
	if err != nil {
		return KeyPair{}, fmt.Errorf("curve: generate key pair: %w", err)
	}
	return KeyPair{Public: pub, Secret: sec}, nil
}

// WriteKeyPair writes kp to PREFIX.pub (mode 0644) and PREFIX.key
// (mode 0600), one Z85 key per file. It refuses to overwrite either file.
func WriteKeyPair(prefix string, kp KeyPair) error {
	pub, sec := prefix+".pub", prefix+".key"
	for _, p := range []string{pub, sec} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("curve: %s exists; not overwriting a key", p)
		}
	}
	if err := writeExcl(sec, kp.Secret+"\n", 0o600); err != nil {
		return err
	}
	if err := writeExcl(pub, kp.Public+"\n", 0o644); err != nil {
		os.Remove(sec)
		return err
	}
	return nil
}

func writeExcl(path, text string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("curve: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("curve: write %s: %w", path, err)
	}
	return f.Close()
}

// parseKey checks that s is a Z85 CURVE key and returns it.
func parseKey(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) != keyLen {
		return "", fmt.Errorf("curve: a CURVE key is %d Z85 characters, got %d", keyLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(z85Alphabet, rune(s[i])) {
			return "", fmt.Errorf("curve: not a Z85 CURVE key: character %q", s[i])
		}
	}
	return s, nil
}

// ReadKey returns the key in file path: the first line that is
// neither blank nor a # comment. As a convenience, a path that is itself a
// 40-character key and names no file is returned as the key.
func ReadKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if k, kerr := parseKey(path); kerr == nil && os.IsNotExist(err) {
			return k, nil
		}
		return "", fmt.Errorf("curve: read key: %w", err)
	}
	keys, err := parseKeyLines(b, path)
	if err != nil {
		return "", err
	}
	if len(keys) != 1 {
		return "", fmt.Errorf("curve: %s: want exactly one key, found %d", path, len(keys))
	}
	return keys[0], nil
}

func parseKeyLines(b []byte, name string) ([]string, error) {
	var keys []string
	// Split, not a bufio.Scanner: a line of any length gets its line
	// number in the error, not "token too long".
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, err := parseKey(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// SecretKeyFileMode checks that a secret key file is not readable by group
// or others, and returns an error naming the file if it is.
func SecretKeyFileMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("curve: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("curve: secret key %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	return nil
}

// ReadAllowList reads the public keys that may connect: from a file of
// keys, one per line (# comments allowed), or from every *.pub file in a
// directory. An empty list is an error: it would lock everyone out.
func ReadAllowList(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("curve: allow list: %w", err)
	}
	var keys []string
	if fi.IsDir() {
		files, err := filepath.Glob(filepath.Join(path, "*.pub"))
		if err != nil {
			return nil, fmt.Errorf("curve: allow list: %w", err)
		}
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("curve: allow list: %w", err)
			}
			ks, err := parseKeyLines(b, f)
			if err != nil {
				return nil, err
			}
			keys = append(keys, ks...)
		}
	} else {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("curve: allow list: %w", err)
		}
		if keys, err = parseKeyLines(b, path); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("curve: allow list %s has no keys", path)
	}
	return keys, nil
}

// Server makes sockets CURVE servers that admit only the clients on an
// allow list. Its allow list can be replaced while sockets are in use.
//
// Use NewServer to make one; the zero value is not usable. It is safe for
// concurrent use. Close it when no socket uses it any more.
type Server struct {
	secret string
	public string
	domain string
}

// NewServer returns a Server with the given secret key that admits the
// public keys in allowed. It starts the process's ZAP handler if it is
// not running yet.
func NewServer(secret string, allowed []string) (*Server, error) {
	if !zmq.HasCurve() {
		return nil, errNoCurve
	}
	sec, err := parseKey(secret)
	if err != nil {
		return nil, err
	}
	pub, err := zmq.AuthCurvePublic(sec)
	if err != nil {
		return nil, fmt.Errorf("curve: public key of secret: %w", err)
	}
	domain, err := zap.register(allowed)
	if err != nil {
		return nil, err
	}
	return &Server{secret: sec, public: pub, domain: domain}, nil
}

// PublicKey returns the server's public key, which clients need.
func (c *Server) PublicKey() string { return c.public }

// SetAllowed replaces the allow list. New connections are checked against
// it at once; connections already made stay open, so a server that must
// refuse a removed key on them checks each request with Allowed.
func (c *Server) SetAllowed(allowed []string) { zap.set(c.domain, allowed) }

// Allowed reports whether userID, the User-Id that the ZAP handler gives
// each connection it admits (the client's public key in Z85), is on the
// allow list now. It is false for every key once c is closed. Use it as
// locker.Config.ClientAllowed, so that a key removed by SetAllowed is
// refused on connections that are already open.
func (c *Server) Allowed(userID string) bool { return zap.allowed(c.domain, userID) }

// Apply makes s a CURVE server; use it as locker.Config.Security. It
// must be called before s binds.
func (c *Server) Apply(s *zmq.Socket) error {
	if err := s.ServerAuthCurve(c.domain, c.secret); err != nil {
		return fmt.Errorf("curve: server: %w", err)
	}
	return nil
}

// Close forgets the allow list, so the domain admits nobody, and stops
// the ZAP handler when no other Server uses it. It is idempotent.
func (c *Server) Close() { zap.unregister(c.domain) }

// Client returns a function that makes a socket a CURVE client of the
// server with public key serverPublic, using the client key pair kp; use
// it as locker.ClientConfig.Security. When kp has only a secret key, the
// public key is derived from it.
func Client(serverPublic string, kp KeyPair) (func(*zmq.Socket) error, error) {
	if !zmq.HasCurve() {
		return nil, errNoCurve
	}
	sp, err := parseKey(serverPublic)
	if err != nil {
		return nil, fmt.Errorf("curve: server key: %w", err)
	}
	if kp.Public == "" && kp.Secret != "" {
		if kp.Public, err = zmq.AuthCurvePublic(kp.Secret); err != nil {
			return nil, fmt.Errorf("curve: public key of secret: %w", err)
		}
	}
	if _, err := parseKey(kp.Secret); err != nil {
		return nil, fmt.Errorf("curve: client secret key: %w", err)
	}
	return func(s *zmq.Socket) error {
		if err := s.ClientAuthCurve(sp, kp.Public, kp.Secret); err != nil {
			return fmt.Errorf("curve: client: %w", err)
		}
		return nil
	}, nil
}
