package locker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// CurveKeyLen is the length of a CURVE key in Z85 text.
const CurveKeyLen = 40

const z85Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

// CurveKeyPair is a CURVE key pair in Z85 text.
type CurveKeyPair struct {
	Public string
	Secret string
}

// NewCurveKeyPair generates a new key pair. It fails when libzmq was built
// without CURVE.
func NewCurveKeyPair() (CurveKeyPair, error) {
	if !zmq.HasCurve() {
		return CurveKeyPair{}, errors.New("locker: libzmq has no CURVE support")
	}
	pub, sec, err := zmq.NewCurveKeypair()
	if err != nil {
		return CurveKeyPair{}, fmt.Errorf("locker: generate key pair: %w", err)
	}
	return CurveKeyPair{Public: pub, Secret: sec}, nil
}

// WriteCurveKeyPair writes kp to PREFIX.pub (mode 0644) and PREFIX.key
// (mode 0600), one Z85 key per file. It refuses to overwrite either file.
func WriteCurveKeyPair(prefix string, kp CurveKeyPair) error {
	pub, sec := prefix+".pub", prefix+".key"
	for _, p := range []string{pub, sec} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("locker: %s exists; not overwriting a key", p)
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
		return fmt.Errorf("locker: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("locker: write %s: %w", path, err)
	}
	return f.Close()
}

// ParseCurveKey checks that s is a Z85 CURVE key and returns it.
func ParseCurveKey(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) != CurveKeyLen {
		return "", fmt.Errorf("locker: a CURVE key is %d Z85 characters, got %d", CurveKeyLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(z85Alphabet, rune(s[i])) {
			return "", fmt.Errorf("locker: not a Z85 CURVE key: character %q", s[i])
		}
	}
	return s, nil
}

// ReadCurveKey returns the key in file path: the first line that is
// neither blank nor a # comment. As a convenience, a path that is itself a
// 40-character key and names no file is returned as the key.
func ReadCurveKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if k, kerr := ParseCurveKey(path); kerr == nil && os.IsNotExist(err) {
			return k, nil
		}
		return "", fmt.Errorf("locker: read key: %w", err)
	}
	keys, err := parseKeyLines(b, path)
	if err != nil {
		return "", err
	}
	if len(keys) != 1 {
		return "", fmt.Errorf("locker: %s: want exactly one key, found %d", path, len(keys))
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
		k, err := ParseCurveKey(line)
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
		return fmt.Errorf("locker: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("locker: secret key %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	return nil
}

// ReadAllowList reads the public keys that may connect: from a file of
// keys, one per line (# comments allowed), or from every *.pub file in a
// directory. An empty list is an error: it would lock everyone out.
func ReadAllowList(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("locker: allow list: %w", err)
	}
	var keys []string
	if fi.IsDir() {
		files, err := filepath.Glob(filepath.Join(path, "*.pub"))
		if err != nil {
			return nil, fmt.Errorf("locker: allow list: %w", err)
		}
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("locker: allow list: %w", err)
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
			return nil, fmt.Errorf("locker: allow list: %w", err)
		}
		if keys, err = parseKeyLines(b, path); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("locker: allow list %s has no keys", path)
	}
	return keys, nil
}

// CurveServer makes sockets CURVE servers that admit only the clients on
// an allow list. Its allow list can be replaced while sockets are in use.
//
// It is safe for concurrent use. Close it when no socket uses it any more.
type CurveServer struct {
	secret string
	public string
	domain string
}

// NewCurveServer returns a CurveServer with the given secret key that
// admits the public keys in allowed. It starts the process's ZAP handler
// if it is not running yet.
func NewCurveServer(secret string, allowed []string) (*CurveServer, error) {
	if !zmq.HasCurve() {
		return nil, errors.New("locker: libzmq has no CURVE support")
	}
	sec, err := ParseCurveKey(secret)
	if err != nil {
		return nil, err
	}
	pub, err := zmq.AuthCurvePublic(sec)
	if err != nil {
		return nil, fmt.Errorf("locker: public key of secret: %w", err)
	}
	domain, err := zap.register(allowed)
	if err != nil {
		return nil, err
	}
	return &CurveServer{secret: sec, public: pub, domain: domain}, nil
}

// PublicKey returns the server's public key, which clients need.
func (c *CurveServer) PublicKey() string { return c.public }

// SetAllowed replaces the allow list. Connections already made stay open,
// but a Server whose socket c applied refuses every request from a key
// that is no longer on the list, held waits included, with an error.
func (c *CurveServer) SetAllowed(allowed []string) { zap.set(c.domain, allowed) }

// Apply makes s a CURVE server; use it as Config.Security. It must be
// called before s binds.
func (c *CurveServer) Apply(s *zmq.Socket) error {
	if err := s.ServerAuthCurve(c.domain, c.secret); err != nil {
		return fmt.Errorf("locker: curve server: %w", err)
	}
	return nil
}

// Close forgets the allow list, so the domain admits nobody, and stops
// the ZAP handler when no other CurveServer uses it. It is idempotent.
func (c *CurveServer) Close() { zap.unregister(c.domain) }

// CurveClient returns a function that makes a socket a CURVE client of the
// server with public key serverPublic, using the client key pair kp; use it
// as ClientConfig.Security.
func CurveClient(serverPublic string, kp CurveKeyPair) (func(*zmq.Socket) error, error) {
	if !zmq.HasCurve() {
		return nil, errors.New("locker: libzmq has no CURVE support")
	}
	sp, err := ParseCurveKey(serverPublic)
	if err != nil {
		return nil, fmt.Errorf("locker: server key: %w", err)
	}
	if kp.Public == "" && kp.Secret != "" {
		if kp.Public, err = zmq.AuthCurvePublic(kp.Secret); err != nil {
			return nil, fmt.Errorf("locker: public key of secret: %w", err)
		}
	}
	if _, err := ParseCurveKey(kp.Secret); err != nil {
		return nil, fmt.Errorf("locker: client secret key: %w", err)
	}
	return func(s *zmq.Socket) error {
		if err := s.ClientAuthCurve(sp, kp.Public, kp.Secret); err != nil {
			return fmt.Errorf("locker: curve client: %w", err)
		}
		return nil
	}, nil
}

// zapHandler is the process's ZeroMQ authentication handler (RFC 27). It
// owns a REP socket bound at the fixed inproc endpoint that libzmq asks;
// libzmq only asks it about sockets of the default context, which is the
// one this package uses for every socket. It is used instead of the
// binding's own handler so that allow lists are guarded by a mutex and can
// change at run time.
type zapHandler struct {
	// life serialises starting and stopping the handler; mu guards
	// domains and is never held while waiting for the handler.
	life    sync.Mutex
	running bool
	stop    chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	domains map[string]map[string]bool
	seq     int
}

var zap = &zapHandler{domains: make(map[string]map[string]bool)}

const zapEndpoint = "inproc://zeromq.zap.01"

func (z *zapHandler) register(allowed []string) (string, error) {
	z.life.Lock()
	defer z.life.Unlock()
	if !z.running {
		if err := z.start(); err != nil {
			return "", err
		}
		z.running = true
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	z.seq++
	domain := "lockerd-" + strconv.Itoa(z.seq)
	z.domains[domain] = keySet(allowed)
	return domain, nil
}

func keySet(keys []string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

func (z *zapHandler) set(domain string, allowed []string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if _, ok := z.domains[domain]; ok {
		z.domains[domain] = keySet(allowed)
	}
}

func (z *zapHandler) unregister(domain string) {
	z.life.Lock()
	defer z.life.Unlock()
	z.mu.Lock()
	_, ok := z.domains[domain]
	delete(z.domains, domain)
	empty := len(z.domains) == 0
	z.mu.Unlock()
	if ok && empty && z.running {
		close(z.stop)
		<-z.done
		z.running = false
	}
}

// checkedDomain returns the ZAP domain of a CURVE server socket when this
// package's handler authenticates it, so that the User-Id of each
// request can be checked against the domain's current allow list; ""
// otherwise.
func checkedDomain(sock *zmq.Socket) string {
	if m, err := sock.GetMechanism(); err != nil || m != zmq.CURVE {
		return ""
	}
	domain, err := sock.GetZapDomain()
	if err != nil {
		return ""
	}
	zap.mu.Lock()
	defer zap.mu.Unlock()
	if _, ok := zap.domains[domain]; !ok {
		return ""
	}
	return domain
}

// userAllowed reports whether a request with the User-Id user may be
// served: always when requests are not checked, else when user is on the
// allow list of the socket's domain now. The handler gives each
// connection the client's public key as User-Id.
func (s *Server) userAllowed(user string) bool {
	return s.zapDomain == "" || zap.allowed(s.zapDomain, user)
}

func (z *zapHandler) allowed(domain, key string) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.domains[domain][key]
}

// start binds the handler's socket and starts its goroutine; z.life is held.
func (z *zapHandler) start() error {
	errc := make(chan error, 1)
	z.stop, z.done = make(chan struct{}), make(chan struct{})
	go z.loop(errc, z.stop, z.done)
	if err := <-errc; err != nil {
		return fmt.Errorf("locker: start authentication: %w", err)
	}
	return nil
}

func (z *zapHandler) loop(errc chan<- error, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	sock, err := zmq.NewSocket(zmq.REP)
	if err == nil {
		sock.SetLinger(0)
		err = sock.Bind(zapEndpoint)
		if err != nil {
			sock.Close()
		}
	}
	errc <- err
	if err != nil {
		return
	}
	defer sock.Close()
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	for {
		select {
		case <-stop:
			return
		default:
		}
		if p, _ := poller.Poll(100 * time.Millisecond); len(p) == 0 {
			continue
		}
		req, err := sock.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			continue
		}
		sock.SendMessage(z.answer(req)...)
	}
}

// answer returns the ZAP reply frames for a ZAP request: version,
// request id, domain, address, identity, mechanism, credentials.
func (z *zapHandler) answer(req [][]byte) []any {
	if len(req) < 6 {
		return []any{"1.0", "", "500", "malformed request", "", ""}
	}
	version, id, domain, mech := string(req[0]), req[1], string(req[2]), string(req[5])
	if version != "1.0" {
		return []any{"1.0", id, "500", "bad version", "", ""}
	}
	if mech == "NULL" && domain == "" {
		// A plaintext socket that asked for nothing: not ours to refuse.
		return []any{version, id, "200", "OK", "", ""}
	}
	if mech != "CURVE" || len(req) < 7 || len(req[6]) != 32 {
		return []any{version, id, "400", "CURVE required", "", ""}
	}
	key := zmq.Z85encode(string(req[6]))
	if !z.allowed(domain, key) {
		return []any{version, id, "400", "key not allowed", "", ""}
	}
	return []any{version, id, "200", "OK", key, ""}
}
