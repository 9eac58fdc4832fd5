// Package locker is a rate limiter served over ZeroMQ: many processes on
// many hosts ask a lockerd server before each call to a hard-capped API,
// and the server answers go (call now) or sorry (not yet). Nothing is
// ever unlocked: capacity comes back by itself. The same server also
// serves leased locks (mutexes, semaphores, read/write locks) with fencing
// tokens.
//
// # Keys and algorithms
//
// Each key has a limit of tokens per window, counted by one of three
// algorithms: fixed (windows aligned to the Unix epoch: window k of a key
// with window length T covers [k·T, (k+1)·T), so servers and clients
// agree on boundaries without talking), sliding (no interval of length T
// holds more than the limit) or gcra (tokens come back one every T/limit,
// with a burst). A key may carry several limits (10/1s+5000/1h), and a
// template (tenant:*) makes a key per name on demand. A request takes N
// tokens, all or none.
//
// # Files
//
// The counter is in counter.go, keyconfig.go, algorithm.go, sliding.go,
// gcra.go, template.go, sweep.go and reload.go; federation support for
// package peer in federation*.go; the wire protocol in protocol.go and
// lockproto.go; the server loop in server.go, handlers.go, waiters.go,
// status.go and server_locks.go; the lock table, a deterministic state
// machine driven by (request, time), in locktable*.go; the client in
// client*.go.
//
// # Wire protocol
//
// One request is one ZeroMQ message whose last frame is UTF-8 text; every
// frame before it is returned unchanged with the one reply, so a plain REQ
// socket works, and a DEALER socket may put a request id there and keep
// many requests in flight. PROTOCOL.md in the repository is the contract:
//
//	take KEY [N]            -> go REMAINING RESET_MS WINDOW | sorry RETRY_MS WINDOW
//	wait KEY [N] [MAX_MS]   -> the same, held until granted or MAX_MS passes
//	cancel KEY              -> cancelled COUNT, withdrawing the waits held
//	                           on KEY with the same envelope
//	ping                    -> pong SERVER_ID
//	status [KEY]            -> a JSON document: every key, or one
//	acquire, renew, release, abandon, revoke, break, locks
//	                        -> the lock verbs (PROTOCOL.md, "Locks")
//	anything else           -> go | sorry, as take default 1
//	bad arguments           -> error MESSAGE
//
// # Server
//
//	srv, err := locker.NewServer(locker.Config{
//		Endpoints: []string{"tcp://*:7777"},
//		Keys:      []locker.KeyConfig{{Name: "api", Limit: 5, Window: 800 * time.Millisecond}},
//	})
//	if err != nil { ... }
//	err = srv.Run(ctx) // until ctx is done: ErrServerClosed
//
// # Client
//
//	c, err := locker.Dial("tcp://lockerd-1:7777", "tcp://lockerd-2:7777")
//	if err != nil { ... }
//	defer c.Close()
//	d, err := c.Take(ctx, "api", 1) // d.OK: go or sorry
//	d, err = c.Wait(ctx, "api", 1)  // blocks until go, or ctx is done
//	lease, err := c.Lock(ctx, "nightly", locker.LockOptions{TTL: time.Minute})
//	// ... lease.Fence(), <-lease.Lost(), lease.Unlock(ctx)
//
// A Client is safe for use by many goroutines; they share one socket.
//
// # Security
//
// Config.Security and ClientConfig.Security set a socket up before it
// binds or connects, and Config.ClientAllowed lets the server refuse the
// requests of a client key on connections already open. Package
// locker/curve provides all three for CURVE.
package locker
