// Command echo is a raw ZeroMQ ROUTER server that sends every message
// back as it came: the transport's limit for lockerd's benchmarks. It
// prints its bound endpoint on stdout, then serves until SIGINT/SIGTERM.
//
//	echo -endpoint tcp://127.0.0.1:*
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/lockerd/lockerd/bench/internal/benchmain"
)

func main() { benchmain.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ep := fs.String("endpoint", "tcp://127.0.0.1:*", "endpoint to bind")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := serve(ctx, *ep, stdout); err != nil {
		fmt.Fprintln(stderr, "echo:", err)
		return 1
	}
	return 0
}

// serve is the idiomatic pebbe ROUTER loop: one goroutine owns the
// socket, RecvMessageBytes then SendMessage per request.
func serve(ctx context.Context, ep string, stdout io.Writer) error {
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return err
	}
	defer sock.Close()
	sock.SetLinger(0)
	sock.SetRcvtimeo(100 * time.Millisecond)
	if err := sock.Bind(ep); err != nil {
		return err
	}
	last, _ := sock.GetLastEndpoint()
	fmt.Fprintln(stdout, last)
	for ctx.Err() == nil {
		msg, err := sock.RecvMessageBytes(0)
		if err != nil {
			continue // timeout or EINTR: look at ctx again
		}
		sock.SendMessageDontwait(msg)
	}
	return nil
}
