package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// cycle is one measured operation: acquire then release a lock, or a take.
type cycle func(ctx context.Context) error

// acquire takes a lock, waiting for it, and returns what releases it.
type acquire func(ctx context.Context) (release func(context.Context) error, err error)

// system is one lock service under test. Its client is shared by every
// goroutine, as one process would share it.
type system interface {
	// worker prepares one goroutine's acquisitions of the lock name;
	// done releases what the goroutine holds (nil: nothing).
	worker(ctx context.Context, name string) (a acquire, done func(), err error)
	close()
}

// errLost is a release that found the lock held by someone else.
var errLost = errors.New("the lock was no longer ours at release")

// redisLocks is the usual Redis lock: SET NX PX with a random token,
// retried after a short backoff while taken, and a Lua compare-and-delete.
type redisLocks struct {
	rdb     *redis.Client
	ttl     time.Duration
	backoff time.Duration
}

var redisUnlock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

func newRedis(ctx context.Context, addr string, conns int, ttl, backoff time.Duration) (*redisLocks, error) {
	// One connection per goroutine: a smaller pool would make goroutines
	// queue for connections rather than for locks.
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: max(conns, 10)})
	if err := redisUnlock.Load(ctx, rdb).Err(); err != nil {
		rdb.Close()
		return nil, err
	}
	return &redisLocks{rdb: rdb, ttl: ttl, backoff: backoff}, nil
}

func (r *redisLocks) worker(_ context.Context, name string) (acquire, func(), error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := hex.EncodeToString(b[:]) + ":"
	n := 0
	return func(ctx context.Context) (func(context.Context) error, error) {
		n++
		token := prefix + strconv.Itoa(n)
		for {
			ok, err := r.rdb.SetNX(ctx, name, token, r.ttl).Result()
			if err != nil {
				return nil, err
			}
			if ok {
				break
			}
			// Jitter in [backoff/2, 3*backoff/2), so contenders do not
			// retry in step.
			d := r.backoff/2 + time.Duration(mrand.Int64N(int64(r.backoff)+1))
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		return func(ctx context.Context) error {
			v, err := redisUnlock.Run(ctx, r.rdb, []string{name}, token).Int64()
			if err != nil {
				return err
			}
			if v != 1 {
				return errLost
			}
			return nil
		}, nil
	}, nil, nil
}

func (r *redisLocks) close() { r.rdb.Close() }

// etcdLocks is etcd's own recipe: a session (a lease kept alive) per
// goroutine and a concurrency.Mutex on it.
type etcdLocks struct {
	cli *clientv3.Client
	ttl int
}

func newEtcd(addr string, ttl time.Duration) (*etcdLocks, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{addr},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, err
	}
	return &etcdLocks{cli: cli, ttl: max(int(ttl/time.Second), 1)}, nil
}

func (e *etcdLocks) ping(ctx context.Context) error {
	_, err := e.cli.Get(ctx, "lockcmp-ping")
	return err
}

func (e *etcdLocks) worker(ctx context.Context, name string) (acquire, func(), error) {
	s, err := concurrency.NewSession(e.cli, concurrency.WithTTL(e.ttl), concurrency.WithContext(ctx))
	if err != nil {
		return nil, nil, err
	}
	m := concurrency.NewMutex(s, "/lockcmp/"+name)
	return func(ctx context.Context) (func(context.Context) error, error) {
		if err := m.Lock(ctx); err != nil {
			return nil, err
		}
		return m.Unlock, nil
	}, func() { s.Close() }, nil
}

func (e *etcdLocks) close() { e.cli.Close() }

// zkLocks is the lock recipe of go-zookeeper: an ephemeral sequential node
// under the lock's path, and a watch on the node before it.
type zkLocks struct {
	conn *zk.Conn
	stop func() bool
}

type zkQuiet struct{}

func (zkQuiet) Printf(string, ...any) {}

func newZooKeeper(ctx context.Context, addr string, ttl time.Duration) (*zkLocks, error) {
	conn, _, err := zk.Connect([]string{addr}, ttl, zk.WithLogger(zkQuiet{}))
	if err != nil {
		return nil, err
	}
	// The recipe's Lock takes no context: closing the connection is what
	// ends a wait when the run is interrupted.
	stop := context.AfterFunc(ctx, conn.Close)
	return &zkLocks{conn: conn, stop: stop}, nil
}

func (z *zkLocks) ping(context.Context) error {
	_, _, err := z.conn.Exists("/")
	return err
}

func (z *zkLocks) worker(_ context.Context, name string) (acquire, func(), error) {
	l := zk.NewLock(z.conn, "/lockcmp/"+name, zk.WorldACL(zk.PermAll))
	unlock := func(context.Context) error { return l.Unlock() }
	return func(context.Context) (func(context.Context) error, error) {
		if err := l.Lock(); err != nil {
			return nil, err
		}
		return unlock, nil
	}, nil, nil
}

func (z *zkLocks) close() {
	z.stop()
	z.conn.Close()
}

// unavailable is a system that gets no figures, and why.
type unavailable struct{ why string }

func (u unavailable) Error() string { return u.why }

func fmtErr(system string, err error) error { return fmt.Errorf("%s: %w", system, err) }
