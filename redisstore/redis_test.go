package redisstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// redisServer is a real redis-server on a free loopback port, started and
// stopped by the test.
type redisServer struct{ *redistest.Server }

// startRedis starts redis-server, or skips the test when it is not
// installed, except under CI (CI=true), where its absence fails the run.
func startRedis(t *testing.T) *redisServer { return &redisServer{redistest.Start(t)} }

func (r *redisServer) Client(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

var prefixes int

// prefix returns a key prefix no other test in this process used.
func prefix() string {
	prefixes++
	return fmt.Sprintf("test%d:", prefixes)
}
