// Command load drives a ZeroMQ go/sorry endpoint (lockerd, or the echo
// server of bench/echo) and prints a stats summary. Modes:
//
//	client  N goroutines share the Go client (locker.Client; -sockets spreads them over several)
//	req     N goroutines, each with its own REQ socket, one request at a time (lock step)
//	dealer  N DEALER sockets, one goroutine each, -inflight requests pipelined on each
//
// Example:
//
//	load -mode dealer -c 1 -inflight 32 -d 3s -endpoint tcp://127.0.0.1:7777 -json
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/lockerd/lockerd/bench/internal/benchmain"
	"github.com/lockerd/lockerd/loadstats"
	"github.com/lockerd/lockerd/locker"
)

func main() { benchmain.Main(run) }

type options struct {
	mode     string
	endpoint string
	c        int
	sockets  int
	inflight int
	d        time.Duration
	key      string
	json     bool
	name     string
	cpuprof  string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.mode, "mode", "dealer", "client, req or dealer")
	fs.StringVar(&o.endpoint, "endpoint", "tcp://127.0.0.1:7777", "endpoint to drive")
	fs.IntVar(&o.c, "c", 1, "goroutines (client, req) or DEALER sockets (dealer)")
	fs.IntVar(&o.sockets, "sockets", 1, "client mode: number of Go clients the goroutines are spread over")
	fs.IntVar(&o.inflight, "inflight", 32, "dealer mode: requests in flight per socket")
	fs.DurationVar(&o.d, "d", 3*time.Second, "duration")
	fs.StringVar(&o.key, "key", "bench", "key to take from")
	fs.BoolVar(&o.json, "json", false, "print one JSON object")
	fs.StringVar(&o.name, "name", "", "label of the summary")
	fs.StringVar(&o.cpuprof, "cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	stopProfile, err := benchmain.CPUProfile(o.cpuprof)
	if err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 1
	}
	defer stopProfile()
	s, err := drive(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 1
	}
	if o.json {
		s.WriteJSON(stdout)
	} else {
		s.WriteText(stdout)
	}
	return 0
}

// drive runs the load of o.mode against o.endpoint for o.d.
func drive(ctx context.Context, o options) (loadstats.Summary, error) {
	body := []byte("take " + o.key + " 1")
	opts := loadstats.Options{Name: o.name, Goroutines: o.c, Duration: o.d}
	switch o.mode {
	case "client":
		return driveClient(ctx, o, opts)
	case "req":
		return driveReq(ctx, o, opts, body)
	case "dealer":
		return driveDealer(ctx, o, opts, body)
	}
	return loadstats.Summary{}, fmt.Errorf("unknown mode %q", o.mode)
}

// driveClient spreads the goroutines over o.sockets Go clients.
func driveClient(ctx context.Context, o options, opts loadstats.Options) (loadstats.Summary, error) {
	if o.sockets < 1 || o.sockets > o.c {
		return loadstats.Summary{}, errors.New("sockets must be in 1..c")
	}
	clients := make([]*locker.Client, o.sockets)
	for i := range clients {
		c, err := locker.Dial(o.endpoint)
		if err != nil {
			return loadstats.Summary{}, err
		}
		defer c.Close()
		clients[i] = c
	}
	return loadstats.Run(ctx, opts, func(i int) (loadstats.Work, func(), error) {
		c := clients[i%len(clients)]
		return loadstats.Loop(func() (loadstats.Outcome, error) {
			d, err := c.Take(ctx, o.key, 1)
			if err != nil {
				return loadstats.Error, err
			}
			if d.OK {
				return loadstats.Go, nil
			}
			return loadstats.Sorry, nil
		}), nil, nil
	})
}

// driveReq gives each goroutine a REQ socket of its own, one request at
// a time.
func driveReq(ctx context.Context, o options, opts loadstats.Options, body []byte) (loadstats.Summary, error) {
	return loadstats.Run(ctx, opts, func(int) (loadstats.Work, func(), error) {
		return func(stop <-chan struct{}, w *loadstats.Worker) error {
			// Each socket is created, used and closed by its worker.
			sock, err := newSocket(zmq.REQ, o.endpoint)
			if err != nil {
				return err
			}
			defer sock.Close()
			return loadstats.Loop(func() (loadstats.Outcome, error) {
				if _, err := sock.SendBytes(body, 0); err != nil {
					return loadstats.Error, err
				}
				reply, err := sock.RecvBytes(0)
				if err != nil {
					return loadstats.Error, err
				}
				return loadstats.Classify(reply), nil
			})(stop, w)
		}, nil, nil
	})
}

// driveDealer gives each goroutine a DEALER socket with o.inflight
// requests pipelined on it.
func driveDealer(ctx context.Context, o options, opts loadstats.Options, body []byte) (loadstats.Summary, error) {
	if o.inflight < 1 {
		return loadstats.Summary{}, errors.New("inflight must be at least 1")
	}
	return loadstats.Run(ctx, opts, func(int) (loadstats.Work, func(), error) {
		return func(stop <-chan struct{}, w *loadstats.Worker) error {
			sock, err := newSocket(zmq.DEALER, o.endpoint)
			if err != nil {
				return err
			}
			defer sock.Close()
			return pipeline(sock, body, o.inflight, stop, w)
		}, nil, nil
	})
}

func newSocket(t zmq.Type, ep string) (*zmq.Socket, error) {
	s, err := zmq.NewSocket(t)
	if err != nil {
		return nil, err
	}
	s.SetLinger(0)
	s.SetRcvtimeo(2 * time.Second)
	if err := s.Connect(ep); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// pipeline keeps inflight requests [send time, "", body] in flight on a
// DEALER socket; the server echoes the first two frames, so the reply
// carries its own send time.
func pipeline(sock *zmq.Socket, body []byte, inflight int, stop <-chan struct{}, w *loadstats.Worker) error {
	var ts [8]byte
	send := func() error {
		binary.LittleEndian.PutUint64(ts[:], uint64(time.Now().UnixNano()))
		if _, err := sock.SendBytes(ts[:], zmq.SNDMORE); err != nil {
			return err
		}
		if _, err := sock.SendBytes(nil, zmq.SNDMORE); err != nil {
			return err
		}
		_, err := sock.SendBytes(body, 0)
		return err
	}
	for i := 0; i < inflight; i++ {
		if err := send(); err != nil {
			return err
		}
	}
	outstanding := inflight
	stopped := false
	for outstanding > 0 {
		if !stopped {
			select {
			case <-stop:
				stopped = true
			default:
			}
		}
		msg, err := sock.RecvMessageBytes(0)
		if err != nil {
			if stopped {
				return nil // the rest are lost: not counted
			}
			return err
		}
		outstanding--
		if len(msg) < 2 || len(msg[0]) != 8 {
			w.Observe(0, loadstats.Error)
		} else {
			sent := int64(binary.LittleEndian.Uint64(msg[0]))
			w.Observe(time.Duration(time.Now().UnixNano()-sent), loadstats.Classify(msg[len(msg)-1]))
		}
		if !stopped {
			if err := send(); err != nil {
				return err
			}
			outstanding++
		}
	}
	return nil
}
