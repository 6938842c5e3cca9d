package redisstore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/redistest"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/redis/go-redis/v9"
)

// The census and re-seal on a Redis Cluster of 3 masters: keys in every
// slot's master, listed in bytewise order, each exactly once, in passes
// over every master.
func TestClusterSeals(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of three servers")
	}
	c := redistest.StartCluster(t, 3, 0)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRedirects: 16,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { client.Close() })

	runSealTests(t, func(t *testing.T) sealEnv { return redisSealEnv(client) })
	t.Run("SmallPasses", func(t *testing.T) {
		defer redisstore.SetSealPassKeys(4)()
		runSealTests(t, func(t *testing.T) sealEnv { return redisSealEnv(client) })
	})

	t.Run("EveryKeyOnce", func(t *testing.T) {
		ctx := ctxFor(t)
		env := redisSealEnv(client)
		s := env.Open(t, mustSealer(t, sealKey(1)))
		var want []string
		for i := range 300 {
			k := fmt.Sprintf("acct-%d", i)
			if i%3 == 0 {
				k = fmt.Sprintf("Acct-é%d", i)
			}
			if err := s.Save(ctx, k, nil, sealToken(k)); err != nil {
				t.Fatal(err)
			}
			want = append(want, k)
		}
		slices.Sort(want)
		// The keys are spread over every master.
		var mu sync.Mutex
		var sizes []int64
		if err := client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			n, err := m.DBSize(ctx).Result()
			mu.Lock()
			sizes = append(sizes, n)
			mu.Unlock()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if len(sizes) != 3 || slices.Contains(sizes, 0) {
			t.Fatalf("keys per master: %v, want keys on each of 3", sizes)
		}
		for _, pass := range []int{7, 10000} {
			restore := redisstore.SetSealPassKeys(pass)
			for _, limit := range []int{5, 500} {
				if got := keysOf(inspectAll(t, s, limit)); !slices.Equal(got, want) {
					t.Errorf("pass %d, limit %d: listed %d keys, want %d (each once, in order)", pass, limit, len(got), len(want))
				}
			}
			restore()
		}
		r, err := dropboxsign.Census(ctx, env.Open(t, mustSealer(t, sealKey(2), sealKey(1))))
		if err != nil || r.Tokens != len(want) || r.ByKey[dropboxsign.KeyID(sealKey(1))] != len(want) {
			t.Errorf("census: %+v, %v", r, err)
		}
	})
}
