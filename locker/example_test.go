package locker_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// exampleServer starts a server for the examples and returns its endpoint
// and a function that stops it.
func exampleServer(keys ...locker.KeyConfig) (string, func()) {
	srv, err := locker.NewServer(locker.Config{Endpoints: []string{"tcp://127.0.0.1:*"}, Keys: keys})
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
