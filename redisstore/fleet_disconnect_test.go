package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
	"github.com/dropboxsign-go/dropboxsign/internal/redistest"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/redis/go-redis/v9"
)

// Fleet runs with disconnections (fleettest.Disconnects) on Redis,
// standalone and Cluster: with the push, with the push cut, and with
// SIGKILLed disconnectors.

// pushCut cuts the store's pub/sub on every node: it takes the subscribe
// commands from the default user (so that a subscription killed is not
// made again within microseconds, and the workers can only learn of changes
// by their poll) and kills every pub/sub connection (CLIENT KILL TYPE
// pubsub), again at each call. The subscribe commands are given back when
// the test ends.
func pushCut(t *testing.T, nodes []string) func(context.Context) error {
	var clients []*redis.Client
	for _, addr := range nodes {
		c := redis.NewClient(&redis.Options{Addr: addr})
		clients = append(clients, c)
		t.Cleanup(func() {
			if err := c.Do(context.Background(), "acl", "setuser", "default", "+@all").Err(); err != nil {
				t.Errorf("giving the subscribe commands back on %s: %v", addr, err)
			}
			c.Close()
		})
	}
	taken := false
	return func(ctx context.Context) error {
		for _, c := range clients {
			if !taken {
				if err := c.Do(ctx, "acl", "setuser", "default", "-subscribe", "-psubscribe", "-ssubscribe").Err(); err != nil {
					return fmt.Errorf("%s: ACL SETUSER: %w", c.Options().Addr, err)
				}
			}
			if err := c.Do(ctx, "client", "kill", "type", "pubsub").Err(); err != nil {
				return fmt.Errorf("%s: CLIENT KILL TYPE pubsub: %w", c.Options().Addr, err)
			}
		}
		taken = true
		return nil
	}
}

// redisDisconnects runs cfg with a store of its own prefix on client,
// whose children reach the same Redis through env.
func redisDisconnects(t *testing.T, cfg fleettest.DisconnectConfig, client redis.UniversalClient, env []string) fleettest.Figures {
	t.Helper()
	p := prefix()
	store, err := redisstore.New(client, redisstore.Options{Prefix: p, LeaseTTL: fleetLease})
	if err != nil {
		t.Fatal(err)
	}
	cfg.StoreEnv = append(env, "FLEET_REDIS_PREFIX="+p, "FLEET_REDIS_LEASE="+fleetLease.String())
	return fleettest.CheckDisconnects(t, fleettest.RunDisconnects(t, cfg, store))
}

// Accounts disconnected at random moments (half of them while their
// refresh is in flight), 6 of them logged in again; then the same with the
// pub/sub cut for the whole run, the workers polling every second; then
// disconnectors SIGKILLed mid-way.
func TestFleetDisconnectsOnRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs of several seconds")
	}
	r := startRedis(t)
	client := r.Client(t)
	env := []string{"FLEET_REDIS_ADDR=" + r.Addr}
	t.Run("Push", func(t *testing.T) {
		redisDisconnects(t, fleettest.Disconnects("Redis"), client, env)
	})
	t.Run("PushCut", func(t *testing.T) {
		cfg := fleettest.Disconnects("Redis, pub/sub cut")
		cfg.Cut = pushCut(t, []string{r.Addr})
		redisDisconnects(t, cfg, client, env)
	})
	t.Run("KilledDisconnector", func(t *testing.T) {
		cfg := fleettest.Disconnects("Redis, SIGKILLed disconnector")
		cfg.Kills = 3
		redisDisconnects(t, cfg, client, env)
	})
}

// The same on a Redis Cluster of 3 masters, each with a replica: the
// accounts' keys and the change log on different masters, the pub/sub cut
// on every node.
func TestFleetDisconnectsOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of six servers and multi-process runs")
	}
	c := redistest.StartCluster(t, 3, 1)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRedirects: 16,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	env := []string{"FLEET_REDIS_CLUSTER=" + strings.Join(c.Addrs(), ",")}
	t.Run("Push", func(t *testing.T) {
		redisDisconnects(t, fleettest.Disconnects("Redis Cluster"), client, env)
	})
	t.Run("PushCut", func(t *testing.T) {
		cfg := fleettest.Disconnects("Redis Cluster, pub/sub cut")
		cfg.Cut = pushCut(t, c.Addrs())
		redisDisconnects(t, cfg, client, env)
	})
	t.Run("KilledDisconnector", func(t *testing.T) {
		cfg := fleettest.Disconnects("Redis Cluster, SIGKILLed disconnector")
		cfg.Kills = 3
		redisDisconnects(t, cfg, client, env)
	})
}
