// Command lockcmp measures lockerd's locks beside the lock recipes people
// use on Redis, etcd and ZooKeeper, in one run on one machine.
//
// It starts every server itself on free loopback ports, in a temporary
// directory: redis-server, etcd, a ZooKeeper JVM and a lockerd built from
// this repository. For each system it measures acquire-and-release cycles
// per second and the p50/p99 of a whole cycle with 1 goroutine, with 64
// goroutines each on its own lock, and with 16 goroutines contending for
// one lock; each round runs every system in turn (A B C D A B C D ...), and
// the table gives the medians over rounds and lockerd's ratio to each
// system per round. Every cycle checks that the lock excluded, and on the
// contended lock a second table counts hand-overs to another goroutine
// beside the cycles. It also measures lockerd's take throughput on a
// rate-limited key alone, beside lock traffic, and beside take traffic.
// And it measures the floor of a hand-over on one lock: the round trip of
// a bare ZeroMQ echo server, whose inverse bounds the hand-overs per
// second, with the one-lock targets set against it.
// Every server it started is stopped when it ends, on error and on SIGINT.
//
//	lockcmp -d 3s -rounds 3 -o RESULTS.md
//
// The systems:
//
//   - redis: SET NAME TOKEN NX PX TTL to acquire, retried after a short
//     jittered backoff (-redis-backoff) while the lock is taken, and a Lua
//     compare-and-delete to release (go-redis).
//   - etcd: a concurrency.Session per goroutine and its Mutex (the etcd
//     v3.5 Go client).
//   - zookeeper: the lock recipe of github.com/go-zookeeper/zk.
//   - lockerd: the acquire and release verbs (docs/locks.md) through the
//     Go client. A lockerd that does not serve them gets no figures.
//   - echo: no lock service; bench/echo, a ROUTER that sends every
//     message back, and one REQ client in one goroutine.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
