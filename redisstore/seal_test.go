package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/storetest"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/redis/go-redis/v9"
)

// The shared census and re-seal checks, and their helpers, are storetest's.
var (
	sealToken    = storetest.SealToken
	sealKey      = storetest.SealKey
	inspectAll   = storetest.InspectAll
	keysOf       = storetest.KeysOf
	runSealTests = storetest.RunSealEnv
)

type sealEnv = storetest.SealEnv

func redisSealEnv(client redis.UniversalClient) sealEnv {
	p := prefix()
	return sealEnv{
		Open: func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.SealInspector {
			st, err := redisstore.New(client, redisstore.Options{Prefix: p, Sealer: s})
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		Changes: func(t *testing.T) int64 {
			n, err := client.XLen(context.Background(), p+"changes").Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				t.Fatal(err)
			}
			return n
		},
		Fingerprint: func(t *testing.T, key string) string {
			return client.HGet(context.Background(), p+"token:"+key, "fp").Val()
		},
		SetBlob: func(t *testing.T, key string, blob []byte) {
			if err := client.HSet(context.Background(), p+"token:"+key, "blob", blob).Err(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// sealersOn is storetest's WithSealers for stores of client with opts: a
// prefix of their own for each test, opened under any Sealer.
func sealersOn(client redis.UniversalClient, opts redisstore.Options) func(*testing.T, *dropboxsign.Sealer) dropboxsign.Store {
	var mu sync.Mutex
	prefixes := map[*testing.T]string{}
	return func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.Store {
		mu.Lock()
		p, ok := prefixes[t]
		if !ok {
			p = prefix()
			prefixes[t] = p
		}
		mu.Unlock()
		o := opts
		o.Prefix, o.Sealer = p, s
		st, err := redisstore.New(client, o)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
}
func TestSeals(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	runSealTests(t, func(t *testing.T) sealEnv { return redisSealEnv(c) })
	// Passes that keep fewer keys than the listing holds: each page of
	// the listing after a pass's keys runs a pass of its own.
	t.Run("SmallPasses", func(t *testing.T) {
		defer redisstore.SetSealPassKeys(4)()
		runSealTests(t, func(t *testing.T) sealEnv { return redisSealEnv(c) })
	})
	t.Run("SkipsOtherTypes", func(t *testing.T) {
		ctx := ctxFor(t)
		p := prefix()
		var skipped []string
		s, err := redisstore.New(c, redisstore.Options{Prefix: p, Skipped: func(rk, typ string) { skipped = append(skipped, rk+" "+typ) }})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"a", "c"} {
			if err := s.Save(ctx, k, nil, sealToken(k)); err != nil {
				t.Fatal(err)
			}
		}
		c.Set(ctx, p+"token:b", "x", 0)
		seals, err := s.InspectSeals(ctx, "", 10)
		if err != nil || !slices.Equal(keysOf(seals), []string{"a", "c"}) {
			t.Errorf("InspectSeals: %v, %v", keysOf(seals), err)
		}
		if !slices.Equal(skipped, []string{p + "token:b string"}) {
			t.Errorf("skipped %q", skipped)
		}
	})
}
