package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Version and Revision are stamped at build time with
// -ldflags "-X main.Version=... -X main.Revision=...".
var (
	Version  = "dev"
	Revision = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal interrupts a slow shutdown
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	flushSockets()
	os.Exit(code)
}
