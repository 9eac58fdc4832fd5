package curve

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// zapHandler is the process's ZeroMQ authentication handler (RFC 27). It
// owns a REP socket bound at the fixed inproc endpoint that libzmq asks;
// libzmq only asks it about sockets of the default context, which is the
// one the locker and peer packages use for every socket. It is used
// instead of the binding's own handler so that allow lists are guarded by
// a mutex and can change at run time.
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
		return fmt.Errorf("curve: start authentication: %w", err)
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
	defer func() {
		// Unbinding an inproc endpoint frees its name at once; Close
		// leaves that to libzmq's reaper thread, and a handler started
		// again before it ran would find the name still taken.
		sock.Unbind(zapEndpoint)
		sock.Close()
	}()
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
