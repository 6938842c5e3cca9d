package bench

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/internal/redistest"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/redis/go-redis/v9"
)

// Tests of the benchmarks' set-up, so that what they compare stays
// comparable: quick, and run with the repository's other tests.

// Every holder serves each account's own stored access token, from memory
// after the first use: the benchmarks compare like with like.
func TestHoldersServeTheStoredToken(t *testing.T) {
	ctx := context.Background()
	store, keys := seedStore(t, 300)
	for _, c := range competitors {
		t.Run(c.name, func(t *testing.T) {
			h := c.make(ctx, store, len(keys))
			fill(t, ctx, h, keys)
			loads := store.Stats().Loads
			for _, k := range keys {
				want, err := store.Load(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				got, err := h.accessToken(ctx, k)
				if err != nil || got != want.AccessToken {
					t.Fatalf("%s: got a token of %d characters, %v; want the stored one", k, len(got), err)
				}
			}
			if n := store.Stats().Loads - loads; n != len(keys) { // the test's own loads only
				t.Errorf("%d store loads after the first uses, want %d (the test's own)", n, len(keys))
			}
		})
	}
}

// A valid token from an Accounts allocates nothing.
func TestValidTokenAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	store, keys := seedStore(t, 100)
	h := newDropboxsign(ctx, decoding{store}, len(keys))
	fill(t, ctx, h, keys)
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := h.accessToken(ctx, keys[i%len(keys)]); err != nil {
			t.Fatal(err)
		}
		i++
	}); n != 0 {
		t.Errorf("%v allocations per valid token, want 0", n)
	}
}

// The first use of accounts whose stored tokens are valid costs one store
// read each, no lock, no save and no token request, from 32 workers at
// once; and once they are idle no goroutine is left for any of them.
func TestFirstUseCostsOneReadEach(t *testing.T) {
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = accountKey(i)
	}
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	stores := map[string]func(t *testing.T) dropboxsign.Store{
		"FileStore": func(t *testing.T) dropboxsign.Store {
			s, err := dropboxsign.NewFileStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"Redis": func(t *testing.T) dropboxsign.Store {
			r := redistest.Start(t)
			client := redis.NewClient(&redis.Options{Addr: r.Addr})
			t.Cleanup(func() { client.Close() })
			s, err := redisstore.New(client, redisstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			seed(t, store, keys)
			base := runtime.NumGoroutine()
			u := useAll(t, srv, store, keys)
			if u.loads != int64(len(keys)) || u.locks != 0 || u.saves != 0 || u.tokenRequests != 0 {
				t.Errorf("%d first uses: %d loads, %d locks, %d saves, %d token requests; want %[1]d, 0, 0, 0",
					len(keys), u.loads, u.locks, u.saves, u.tokenRequests)
			}
			// The runs' goroutines end just after they are done: wait for
			// that with a deadline (a pool's connection may stay).
			deadline := time.Now().Add(10 * time.Second)
			for runtime.NumGoroutine() > base+2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > base+2 {
				t.Errorf("%d goroutines after the first uses of %d accounts, %d before", n, len(keys), base)
			}
		})
	}
}
