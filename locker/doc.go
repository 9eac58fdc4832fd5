// Package locker is a rate limiter served over ZeroMQ: many processes on
// many hosts ask a lockerd server before each call to a hard-capped API,
// and the server answers go (call now) or sorry (not yet) from a
// fixed-window counter. Nothing is ever unlocked: capacity comes back by
// itself when the next window opens.
//
// # Windows
//
// Each key has a limit of tokens per window. Windows are aligned to the
// Unix epoch: window k of a key with window length T covers
// [k·T, (k+1)·T), so servers and clients agree on boundaries without
// talking. A request takes N tokens, all or none.
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
