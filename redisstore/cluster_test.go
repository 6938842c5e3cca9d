package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
	"github.com/dropboxsign-go/dropboxsign/internal/redistest"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

// The Redis store on a real Redis Cluster of 3 masters, each with a
// replica: the conformance suite (listing goes over every master), the
// watch tests, the fleet, a SIGKILLed lease holder, a failover of the master that holds an
// account's keys mid-run, and saves that wait for a replica surviving their
// master's death.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of six servers and multi-process runs")
	}
	c := redistest.StartCluster(t, 3, 1)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRedirects: 16,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { client.Close() })

	t.Run("Conformance", func(t *testing.T) {
		for name, sealer := range map[string]*dropboxsign.Sealer{"plain": nil, "sealed": mustSealer(t, bytes.Repeat([]byte{9}, 32))} {
			t.Run(name, func(t *testing.T) {
				conformance(t, client, func() redis.UniversalClient { return clusterEnv(c).client(t, "") }, redisstore.Options{Sealer: sealer})
			})
		}
	})

	// Disconnect, Replace and Watch: the change log's stream and the
	// accounts' hashes on different masters, the subscription on one node,
	// killed on every node.
	t.Run("Watch", func(t *testing.T) { runWatchTests(t, clusterEnv(c)) })
	t.Run("DisconnectWaitsForAReplica", func(t *testing.T) {
		ctx := ctxFor(t)
		p := prefix()
		store, err := redisstore.New(client, redisstore.Options{Prefix: p, WaitReplicas: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Replace(ctx, "acct", &oauth2.Token{AccessToken: "at", RefreshToken: "rt"}); err != nil {
			t.Fatalf("Replace: %v", err)
		}
		if err := store.Disconnect(ctx, "acct"); err != nil {
			t.Fatalf("Disconnect: %v", err)
		}
		if _, err := store.Load(ctx, "acct"); !errors.Is(err, dropboxsign.ErrDisconnected) {
			t.Errorf("Load after Disconnect: %v", err)
		}
	})

	fleet := func(t *testing.T, kill time.Duration) (fleettest.Config, *redisstore.Store, string) {
		p := prefix()
		store, err := redisstore.New(client, redisstore.Options{Prefix: p, LeaseTTL: fleetLease})
		if err != nil {
			t.Fatal(err)
		}
		return fleettest.Config{Replicas: 4, Accounts: 50, Duration: 8 * time.Second, Lifetime: 4 * time.Second, Callers: 4, KillAfter: kill,
			StoreEnv:   []string{"FLEET_REDIS_CLUSTER=" + strings.Join(c.Addrs(), ","), "FLEET_REDIS_PREFIX=" + p, "FLEET_REDIS_LEASE=" + fleetLease.String()},
			LockerEnv:  []string{"FLEET_REDIS_LEASE=" + lockerLease.String()},
			LockHolder: lockHolder(client, p)}, store, p
	}
	t.Run("Fleet", func(t *testing.T) {
		cfg, store, _ := fleet(t, 0)
		fleettest.Check(t, cfg, fleettest.Run(t, cfg, store))
	})
	t.Run("FleetSurvivesAKilledLockHolder", func(t *testing.T) {
		cfg, store, _ := fleet(t, 3*time.Second)
		fleettest.Check(t, cfg, fleettest.Run(t, cfg, store))
	})

	// A manual failover (CLUSTER FAILOVER on the replica: it waits until the
	// replica has every write, then swaps roles) of the master that holds
	// account 0's token, while the fleet refreshes: nothing is lost. The
	// failover begins once every replica has called every account with a
	// refreshed token (no replica depends on a seeded one), and the test
	// measures when it is done; calls may fail only for a replica and
	// account whose token stopped serving before then (fleettest.CheckOutage:
	// none, unless the machine is very slow).
	t.Run("FleetSurvivesAFailover", func(t *testing.T) {
		cfg, store, p := fleet(t, 0)
		f := fleettest.New(t, cfg, store)
		key := p + "token:" + fleettest.Key(0)
		var from, to string
		var begun, done time.Time
		rep := f.Phase(fleettest.Phase{Replicas: 4, Duration: 8 * time.Second, Callers: 4, During: func(ctx context.Context, w *fleettest.Workers) {
			if !w.WaitFresh(ctx) {
				return
			}
			master, replica := c.MasterOf(key)
			from, to = master.Addr, replica.Addr
			begun = time.Now()
			if out, err := redistest.Cmd(replica.Addr, "cluster", "failover"); err != nil || out != "OK" {
				t.Errorf("CLUSTER FAILOVER: %q, %v", out, err)
				return
			}
			for ctx.Err() == nil { // it runs in the background: wait for the swap
				if now, _ := c.MasterOf(key); now != nil && now.Addr == to {
					done = time.Now()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}})
		if begun.IsZero() {
			t.Fatalf("the replicas never all moved off the seeded tokens in %v: no failover", cfg.Duration)
		}
		if done.IsZero() {
			now, _ := c.MasterOf(key)
			t.Fatalf("account 0's slot did not move from %s to %s (its master: %v)", from, to, now)
		}
		t.Logf("failover of %s to %s %.1f s after the start, done in %v: %d API calls, %d failed, %d refreshes, %d stale refresh tokens",
			from, to, begun.Sub(rep.Started).Seconds(), done.Sub(begun).Round(time.Millisecond), rep.Calls, rep.Failures, rep.Server.Refreshes, rep.Server.StaleRefreshTokens)
		fleettest.CheckOutage(t, rep, begun, done)
		if n := f.Valid(); n != cfg.Accounts {
			t.Errorf("%d of %d accounts valid after the failover", n, cfg.Accounts)
		}
	})

	// WaitReplicas: a save returns once a replica has it, so that the
	// master's death (SIGKILL, then the replica's promotion) loses none of
	// the saves that returned; asking for more replicas than there are is
	// an error, though the token is written.
	t.Run("WaitReplicasSurvivesAKilledMaster", func(t *testing.T) {
		ctx := ctxFor(t)
		p := prefix()
		store, err := redisstore.New(client, redisstore.Options{Prefix: p, WaitReplicas: 1})
		if err != nil {
			t.Fatal(err)
		}
		saved := map[string]*oauth2.Token{}
		for i := range 30 {
			key := fmt.Sprint("acct-", i)
			tok := &oauth2.Token{AccessToken: fmt.Sprint("at-", i), RefreshToken: fmt.Sprint("rt-", i), Expiry: time.Now().Add(time.Hour)}
			if err := store.Save(ctx, key, nil, tok); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			saved[key] = tok
		}
		master, replica := c.MasterOf(p + "token:acct-0")
		master.Stop() // SIGKILL: no shutdown, no last sync
		deadline := time.Now().Add(20 * time.Second)
		for {
			if now, _ := c.MasterOf(p + "token:acct-0"); now != nil && now.Addr == replica.Addr {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the replica was not promoted within 20 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		// go-redis learns the new slot map at its next reload (on errors, or
		// every few seconds): ask for it now rather than wait.
		client.ReloadState(ctx)
		deadline = time.Now().Add(20 * time.Second)
		for key, tok := range saved {
			for {
				got, err := store.Load(ctx, key)
				if err == nil {
					if got.AccessToken != tok.AccessToken {
						t.Errorf("%s: %q after the failover, want %q", key, got.AccessToken, tok.AccessToken)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %v after the failover", key, err)
				}
				// The slot map go-redis read may predate the promotion (the
				// node it asked had not heard of it yet): ask again.
				client.ReloadState(ctx)
				time.Sleep(50 * time.Millisecond)
			}
		}
		master.Start() // back, as the new master's replica
		c.WaitHealthy()
		greedy, _ := redisstore.New(client, redisstore.Options{Prefix: p, WaitReplicas: 2, WaitTimeout: 200 * time.Millisecond})
		tok := &oauth2.Token{AccessToken: "at-greedy", RefreshToken: "rt-greedy"}
		err = greedy.Save(ctx, "greedy", nil, tok)
		// (0 or 1 of them: the restarted node may still be syncing.)
		if err == nil || errors.Is(err, dropboxsign.ErrConflict) || !strings.Contains(err.Error(), "written, but only") || !strings.Contains(err.Error(), "of 2 replicas had it") {
			t.Errorf("waiting for 2 replicas of 1: %v", err)
		}
		if got, err := greedy.Load(ctx, "greedy"); err != nil || got.AccessToken != tok.AccessToken {
			t.Errorf("written all the same: %v, %v", got, err)
		}
	})
}
