package locker_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// exampleServer starts a server for the examples with keys and returns
// its endpoint and a function that stops it.
func exampleServer(keys ...locker.KeyConfig) (string, func()) {
	return startExample(locker.Config{Keys: keys})
}

// startExample runs a server with cfg on a free loopback port.
func startExample(cfg locker.Config) (string, func()) {
	cfg.Endpoints = []string{"tcp://127.0.0.1:*"}
	srv, err := locker.NewServer(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	<-srv.Ready()
	return srv.Endpoints()[0], func() { cancel(); <-done }
}

// Take asks once: go means call the API now, sorry means not in this
// window.
func ExampleClient_Take() {
	endpoint, stop := exampleServer(locker.KeyConfig{Name: "api", Limit: 2, Window: time.Hour})
	defer stop()

	client, err := locker.Dial(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx := context.Background()
	for i := 0; i < 3; i++ {
		d, err := client.Take(ctx, "api", 1)
		if err != nil {
			log.Fatal(err)
		}
		if d.OK {
			fmt.Println("go, remaining", d.Remaining)
		} else {
			fmt.Println("sorry")
		}
	}
	// Output:
	// go, remaining 1
	// go, remaining 0
	// sorry
}

// Wait blocks until the tokens are granted: here the first call takes the
// window's only token, and the second returns when the next window opens.
func ExampleClient_Wait() {
	endpoint, stop := exampleServer(locker.KeyConfig{Name: "api", Limit: 1, Window: 50 * time.Millisecond})
	defer stop()

	client, err := locker.Dial(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	first, err := client.Wait(ctx, "api", 1)
	if err != nil {
		log.Fatal(err)
	}
	second, err := client.Wait(ctx, "api", 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(first.OK, second.OK, second.Window > first.Window)
	// Output: true true true
}

// WaitUntil waits with a deadline: here the hour's only token is taken,
// so the deadline passes and the answer is sorry.
func ExampleClient_WaitUntil() {
	endpoint, stop := exampleServer(locker.KeyConfig{Name: "api", Limit: 1, Window: time.Hour})
	defer stop()

	client, err := locker.Dial(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx := context.Background()
	if _, err := client.Take(ctx, "api", 1); err != nil {
		log.Fatal(err)
	}
	d, err := client.WaitUntil(ctx, "api", 1, time.Now().Add(100*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.OK)
	// Output: false
}

// exampleLockServer starts a server that serves locks at once (a first
// start: no grace period) and returns its endpoint and a function that
// stops it.
func exampleLockServer() (string, func()) {
	return startExample(locker.Config{Locks: locker.LockTableConfig{NoGrace: true}})
}

// Lock waits for the lock, held by the server in a first come, first
// served queue; the lease renews itself until Unlock. Give the fence to
// the protected resource, and stop when Lost is closed.
func ExampleClient_Lock() {
	endpoint, stop := exampleLockServer()
	defer stop()
	client, err := locker.Dial(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lease, err := client.Lock(ctx, "nightly-backup", locker.LockOptions{TTL: 10 * time.Second, Owner: "backup-1"})
	if err != nil {
		log.Fatal(err)
	}
	select {
	case <-lease.Lost():
		log.Fatal(lease.Err()) // the work was not protected to its end
	default:
		fmt.Println("backing up, fence above zero:", lease.Fence() > 0)
	}
	if err := lease.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("released")
	// Output:
	// backing up, fence above zero: true
	// released
}

// TryLock does not wait: a held lock is refused with who holds it.
func ExampleClient_TryLock() {
	endpoint, stop := exampleLockServer()
	defer stop()
	client, err := locker.Dial(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx := context.Background()
	lease, err := client.TryLock(ctx, "licence", locker.LockOptions{Owner: "web1:4242"})
	if err != nil {
		log.Fatal(err)
	}
	_, err = client.TryLock(ctx, "licence", locker.LockOptions{Owner: "web2:77"})
	var busy *locker.LockBusyError
	if errors.As(err, &busy) {
		fmt.Println("busy, held by", busy.Owner)
	}
	lease.Unlock(ctx)
	if lease, err = client.TryLock(ctx, "licence", locker.LockOptions{Owner: "web2:77"}); err == nil {
		fmt.Println("granted after the release")
		lease.Unlock(ctx)
	}
	// Output:
	// busy, held by web1:4242
	// granted after the release
}
