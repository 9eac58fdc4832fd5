// Command redislimit is the usual alternative to lockerd: a fixed-window
// limiter in Redis through go-redis, one Lua script per decision doing
// INCRBY on the window's key and PEXPIRE when the key is new. It drives
// it from -c goroutines and prints the same summary as the other bench
// programs.
//
//	redislimit -addr 127.0.0.1:6379 -c 64 -d 3s -json
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockerd/lockerd/loadstats"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// script returns 1 (go) or 0 (sorry). KEYS[1] is the window's key;
// ARGV is n, the window in ms, the limit.
var script = redis.NewScript(`
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if n > tonumber(ARGV[3]) then
  return 0
end
return 1
`)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("redislimit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:6379", "redis address")
	c := fs.Int("c", 64, "goroutines")
	d := fs.Duration("d", 3*time.Second, "duration")
	key := fs.String("key", "bench", "key to take from")
	limit := fs.Int64("limit", 1_000_000_000, "tokens per window")
	window := fs.Duration("window", time.Second, "window")
	asJSON := fs.Bool("json", false, "print one JSON object")
	name := fs.String("name", "", "label of the summary")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// One connection per goroutine, as a pool of the default size would
	// make goroutines queue for connections.
	rdb := redis.NewClient(&redis.Options{Addr: *addr, PoolSize: max(*c, 10)})
	defer rdb.Close()
	if err := script.Load(ctx, rdb).Err(); err != nil {
		fmt.Fprintln(stderr, "redislimit:", err)
		return 1
	}
	w := window.Milliseconds()
	wstr := strconv.FormatInt(w, 10)
	lstr := strconv.FormatInt(*limit, 10)
	s, err := loadstats.Run(ctx, loadstats.Options{Name: *name, Goroutines: *c, Duration: *d},
		func(int) (loadstats.Work, func(), error) {
			return loadstats.Loop(func() (loadstats.Outcome, error) {
				k := *key + ":" + strconv.FormatInt(time.Now().UnixMilli()/w, 10)
				v, err := script.Run(ctx, rdb, []string{k}, "1", wstr, lstr).Int64()
				if err != nil {
					return loadstats.Error, err
				}
				if v == 1 {
					return loadstats.Go, nil
				}
				return loadstats.Sorry, nil
			}), nil, nil
		})
	if err != nil {
		fmt.Fprintln(stderr, "redislimit:", err)
	}
	if *asJSON {
		s.WriteJSON(stdout)
	} else {
		s.WriteText(stdout)
	}
	return 0
}
