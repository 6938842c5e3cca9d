package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
	"github.com/dropboxsign-go/dropboxsign/internal/storetest"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

func TestMain(m *testing.M) {
	fleettest.Main(func() (dropboxsign.Store, error) {
		ttl, _ := time.ParseDuration(os.Getenv("FLEET_REDIS_LEASE"))
		var c redis.UniversalClient = redis.NewClient(&redis.Options{Addr: os.Getenv("FLEET_REDIS_ADDR")})
		if addrs := os.Getenv("FLEET_REDIS_CLUSTER"); addrs != "" {
			c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
		}
		return redisstore.New(c, redisstore.Options{Prefix: os.Getenv("FLEET_REDIS_PREFIX"), LeaseTTL: ttl})
	})
	os.Exit(m.Run())
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	key := bytes.Repeat([]byte{7}, 32)
	for name, opts := range map[string]redisstore.Options{
		"plain":     {},
		"encrypted": {Sealer: mustSealer(t, key)},
	} {
		t.Run(name, func(t *testing.T) {
			conformance(t, c, func() redis.UniversalClient { return r.Client(t) }, opts)
		})
	}
}

// conformance runs storetest on stores of client with opts (each with a
// prefix of its own), looking at a key's record with HGETALL, and giving
// each a peer on a client of its own from another (as another process's).
func conformance(t *testing.T, client redis.UniversalClient, another func() redis.UniversalClient, opts redisstore.Options) {
	var mu sync.Mutex
	prefixOf := map[dropboxsign.Store]string{}
	storetest.Run(t, func(t *testing.T) dropboxsign.Store {
		opts.Prefix = prefix()
		s, err := redisstore.New(client, opts)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		prefixOf[s] = opts.Prefix
		return s
	},
		storetest.WithRaw(func(s dropboxsign.Store, key string) []byte {
			mu.Lock()
			rk := prefixOf[s] + "token:" + key
			mu.Unlock()
			f, err := client.HGetAll(context.Background(), rk).Result()
			if err != nil || len(f) == 0 {
				return nil
			}
			var b strings.Builder
			for k, v := range f {
				fmt.Fprintf(&b, "%s=%s\n", k, v)
			}
			return []byte(b.String())
		}),
		storetest.WithPeer(func(t *testing.T, s dropboxsign.Store) dropboxsign.Store {
			mu.Lock()
			o := opts
			o.Prefix = prefixOf[s]
			mu.Unlock()
			peer, err := redisstore.New(another(), o)
			if err != nil {
				t.Fatal(err)
			}
			return peer
		}),
		storetest.WithSealers(sealersOn(client, opts)))
}

func TestEncryptionAtRestAndKeyRotation(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx := ctxFor(t)
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	p := prefix()
	tok := &oauth2.Token{AccessToken: "access-secret-1234", RefreshToken: "refresh-secret-5678", Expiry: time.Now().Add(time.Hour)}

	before, _ := redisstore.New(c, redisstore.Options{Prefix: p, Sealer: mustSealer(t, oldKey)})
	if err := before.Save(ctx, "acct", nil, tok); err != nil {
		t.Fatal(err)
	}
	raw, _ := c.HGetAll(ctx, p+"token:acct").Result()
	for field, v := range raw {
		if strings.Contains(v, "secret") {
			t.Errorf("field %s holds a token in the clear: %q", field, v)
		}
	}

	// Rotation: the new key first, the old one still there to open.
	rotated, _ := redisstore.New(c, redisstore.Options{Prefix: p, Sealer: mustSealer(t, newKey, oldKey)})
	got, err := rotated.Load(ctx, "acct")
	if err != nil || got.RefreshToken != tok.RefreshToken {
		t.Fatalf("after rotation: %v, %v", got, err)
	}
	next := &oauth2.Token{AccessToken: "access-secret-2", RefreshToken: "refresh-secret-2"}
	if err := rotated.Save(ctx, "acct", got, next); err != nil { // saved again: sealed with the new key
		t.Fatal(err)
	}
	newOnly, _ := redisstore.New(c, redisstore.Options{Prefix: p, Sealer: mustSealer(t, newKey)})
	if got, err := newOnly.Load(ctx, "acct"); err != nil || got.AccessToken != next.AccessToken {
		t.Fatalf("with the old key dropped: %v, %v", got, err)
	}
	// A token sealed with a key no longer configured, a store without keys,
	// and a blob copied to another account's key: clear errors.
	if _, err := before.Load(ctx, "acct"); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("old key only: %v", err)
	}
	plain, _ := redisstore.New(c, redisstore.Options{Prefix: p})
	if _, err := plain.Load(ctx, "acct"); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("no keys: %v", err)
	}
	c.Copy(ctx, p+"token:acct", p+"token:other", 0, true)
	if _, err := newOnly.Load(ctx, "other"); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Errorf("moved blob: %v", err)
	}
	// Plain tokens stored before encryption was turned on still load.
	plain.Save(ctx, "legacy", nil, tok)
	if got, err := newOnly.Load(ctx, "legacy"); err != nil || got.AccessToken != tok.AccessToken {
		t.Errorf("legacy plain token: %v, %v", got, err)
	}
	c.HSet(ctx, p+"token:junk", "blob", "not a token", "fp", "x")
	if _, err := plain.Load(ctx, "junk"); err == nil || !strings.Contains(err.Error(), "not a token") {
		t.Errorf("junk: %v", err)
	}
}

// A holder that dies leaves its lease to lapse; a live holder renews it.
func TestLeaseLapsesWhenItsHolderDiesAndIsRenewedWhileHeld(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx := ctxFor(t)
	p := prefix()
	s, _ := redisstore.New(c, redisstore.Options{Prefix: p, LeaseTTL: 300 * time.Millisecond})

	c.Set(ctx, p+"lock:acct", "a-dead-process", 300*time.Millisecond)
	start := time.Now()
	unlock, err := s.Lock(ctx, "acct")
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Errorf("took a lease held by another owner after %v", time.Since(start))
	}

	// Held for several TTLs: renewed, so nobody else gets it. Renewals come
	// every TTL/3: a machine that starves this process for 2/3 of the TTL
	// lets the lease lapse, which no lease can prevent. A heartbeat of the
	// test's own tells: a lapse then is the machine's, not the store's.
	beat := startHeartbeat()
	for range 4 {
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := s.Lock(short, "acct")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			if gap := beat.stop(); gap >= 200*time.Millisecond {
				t.Logf("the lease lapsed while this process was starved for %v (≥ 2/3 of its TTL): not a renewal failure", gap)
				beat = nil
				break
			} else {
				t.Fatalf("lease not renewed: a second Lock got %v (the process was never starved for more than %v)", err, gap)
			}
		}
	}
	if beat != nil {
		beat.stop()
	}
	unlock()
	// The release runs in the background: the lease is gone long before a
	// 5 s TTL could lapse.
	slow, _ := redisstore.New(c, redisstore.Options{Prefix: p, LeaseTTL: 5 * time.Second})
	unlockSlow, err := slow.Lock(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	unlockSlow()
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := c.Exists(ctx, p+"lock:other").Result(); n == 0 {
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("unlock left the lease behind")
		}
	}
	// unlock never releases someone else's lease.
	c.Set(ctx, p+"lock:other", "someone-else", time.Minute)
	unlockSlow()
	if v, _ := c.Get(ctx, p+"lock:other").Result(); v != "someone-else" {
		t.Errorf("a stale unlock removed another owner's lease")
	}
}

// Redis goes away mid-run and comes back empty: callers keep a usable token,
// get the store's error when they have none, and the source recovers.
func TestSourceSurvivesARedisRestart(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx := ctxFor(t)
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	store, _ := redisstore.New(c, redisstore.Options{Prefix: prefix()})
	first := srv.IssueToken()
	if err := store.Save(ctx, "acct", nil, first); err != nil {
		t.Fatal(err)
	}
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(store, "acct"), dropboxsign.WithExpiryWindow(0))
	tok, err := ts.TokenContext(ctx)
	if err != nil || tok.AccessToken != first.AccessToken {
		t.Fatalf("loaded %v, %v", tok, err)
	}

	r.Stop()
	for range 10 {
		if got, err := ts.TokenContext(ctx); err != nil || got != tok {
			t.Fatalf("Redis down, token valid: %v, %v", got, err)
		}
	}
	ts.Invalidate(tok) // the token must be replaced now: the store is needed
	if _, err := ts.TokenContext(ctx); err == nil || !strings.Contains(err.Error(), "store") {
		t.Fatalf("Redis down, token refused: %v, want the store's error", err)
	}
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("refreshed without the store: %d token requests", n)
	}

	r.Start() // empty: no persistence
	var got *oauth2.Token
	// Until the test's deadline: each failed try (a connection that died
	// with the server) doubles the source's backoff.
	for ; ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
		if got, err = ts.TokenContext(ctx); err == nil {
			break
		}
	}
	if err != nil || got.AccessToken == tok.AccessToken {
		t.Fatalf("after the restart: %v, %v", got, err)
	}
	if stored, err := store.Load(ctx, "acct"); err != nil || stored.AccessToken != got.AccessToken {
		t.Errorf("the store was not seeded again: %v, %v", stored, err)
	}
}

func redisFleet(t *testing.T, kill time.Duration) {
	if testing.Short() {
		t.Skip("a multi-process run of several seconds")
	}
	r := startRedis(t)
	p := prefix()
	client := r.Client(t)
	store, _ := redisstore.New(client, redisstore.Options{Prefix: p, LeaseTTL: fleetLease})
	cfg := fleettest.Config{Replicas: 4, Accounts: 50, Duration: 8 * time.Second, Lifetime: 4 * time.Second, Callers: 4, KillAfter: kill,
		StoreEnv:   []string{"FLEET_REDIS_ADDR=" + r.Addr, "FLEET_REDIS_PREFIX=" + p, "FLEET_REDIS_LEASE=" + fleetLease.String()},
		LockerEnv:  []string{"FLEET_REDIS_LEASE=" + lockerLease.String()},
		LockHolder: lockHolder(client, p)}
	fleettest.Check(t, cfg, fleettest.Run(t, cfg, store))
}

// The fleet's workers take 3 s leases, so that only a worker stalled for 2 s
// (not a busy machine's usual hiccup) could lose one mid-refresh; the killed
// locker takes a 1 s lease, so that it lapses soon after the kill.
const fleetLease, lockerLease = 3 * time.Second, time.Second

// lockHolder reads the owner of account 0's lease, for fleettest.
func lockHolder(c redis.UniversalClient, prefix string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		owner, err := c.Get(ctx, prefix+"lock:"+fleettest.Key(0)).Result()
		if errors.Is(err, redis.Nil) {
			return "", nil
		}
		return owner, err
	}
}

func TestFleetSharingRedis(t *testing.T) { redisFleet(t, 0) }

// A process holds account 0's lease (renewing it) past the time its refresh
// is due and is SIGKILLed at 3 s: the lease lapses within its 1 s TTL, and the
// others, waiting for it, refresh then, not before (checked against the last
// moment the lease was seen to be the locker's, just before the kill);
// callers wait rather than fail.
func TestFleetSharingRedisSurvivesAKilledLeaseHolder(t *testing.T) {
	redisFleet(t, 3*time.Second)
}

func mustSealer(t *testing.T, keys ...[]byte) *dropboxsign.Sealer {
	s, err := dropboxsign.NewSealer(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// heartbeat measures the longest gap between ticks of a goroutine that
// wants to run every millisecond: how long the machine starved this
// process.
type heartbeat struct {
	done   chan struct{}
	maxGap chan time.Duration
}

func startHeartbeat() *heartbeat {
	h := &heartbeat{done: make(chan struct{}), maxGap: make(chan time.Duration, 1)}
	go func() {
		var worst time.Duration
		last := time.Now()
		for {
			select {
			case <-h.done:
				h.maxGap <- max(worst, time.Since(last))
				return
			case <-time.After(time.Millisecond):
			}
			now := time.Now()
			worst = max(worst, now.Sub(last))
			last = now
		}
	}()
	return h
}

// stop ends the heartbeat and returns its longest gap.
func (h *heartbeat) stop() time.Duration {
	close(h.done)
	return <-h.maxGap
}
