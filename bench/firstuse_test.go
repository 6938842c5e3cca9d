package bench

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/internal/redistest"
	"github.com/dropboxsign-go/dropboxsign/internal/storetest"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/redis/go-redis/v9"
)

// workers is how many goroutines use the accounts at once, in the
// first-use benchmarks: requests of as many users arriving together.
const workers = 32

// firstUse is what one pass of first uses cost.
type firstUse struct {
	wall                               time.Duration
	loads, locks, saves, tokenRequests int64
}

// useAll makes a new Accounts over store and has the workers use every
// account of keys once, each account's first use in this process, and
// returns what it cost. Tokens requests go to srv.
func useAll(tb testing.TB, srv *dropboxsigntest.Server, store dropboxsign.Store, keys []string) firstUse {
	tb.Helper()
	ctx := context.Background()
	counting := &storetest.Counting{Store: store}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), counting, dropboxsign.WithMaxAccounts(len(keys)))
	requests := srv.Stats().TokenRequests
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(keys); i = int(next.Add(1) - 1) {
				if _, err := a.TokenSource(keys[i]).TokenContext(ctx); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if err := failed.Load(); err != nil {
		tb.Fatalf("first use: %v", *err)
	}
	if err := a.Shutdown(ctx); err != nil {
		tb.Fatal(err)
	}
	return firstUse{wall, counting.Loads(), counting.Locks(), counting.Saves(), int64(srv.Stats().TokenRequests - requests)}
}

// report reports the passes' costs per account, and fails the benchmark
// unless each account cost one read, no lock, no save, no token request:
// what a valid stored token must cost.
func (u firstUse) report(b *testing.B, passes, accounts int) {
	per := func(n int64) float64 { return float64(n) / float64(passes*accounts) }
	b.ReportMetric(float64(u.wall.Nanoseconds())/float64(passes*accounts), "ns/account")
	b.ReportMetric(per(u.loads), "loads/account")
	b.ReportMetric(per(u.locks), "locks/account")
	b.ReportMetric(per(u.saves), "saves/account")
	b.ReportMetric(per(u.tokenRequests), "token-requests/account")
	if u.loads != int64(passes*accounts) || u.locks != 0 || u.saves != 0 || u.tokenRequests != 0 {
		b.Errorf("%d first uses: %d loads, %d locks, %d saves, %d token requests; want %[1]d, 0, 0, 0",
			passes*accounts, u.loads, u.locks, u.saves, u.tokenRequests)
	}
}

func (u *firstUse) add(v firstUse) {
	u.wall += v.wall
	u.loads += v.loads
	u.locks += v.locks
	u.saves += v.saves
	u.tokenRequests += v.tokenRequests
}

// BenchmarkFirstUse: 10,000 accounts with valid stored tokens, used for
// the first time by 32 workers at once, from a FileStore and from Redis.
// One op is the whole pass: a new Accounts, every account used once.
func BenchmarkFirstUse(b *testing.B) {
	n := size(10000, 200)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = accountKey(i)
	}
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	b.Run("store=FileStore", func(b *testing.B) {
		store := seededFileStore(b, keys)
		benchFirstUse(b, srv, store, keys)
	})
	b.Run("store=Redis", func(b *testing.B) {
		r := redistest.Start(b)
		client := redis.NewClient(&redis.Options{Addr: r.Addr})
		defer client.Close()
		store, err := redisstore.New(client, redisstore.Options{Prefix: "bench:"})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		seed(b, store, keys)
		b.Logf("seeding %d accounts in Redis took %v", len(keys), time.Since(start).Round(time.Millisecond))
		benchFirstUse(b, srv, store, keys)
	})
}

func benchFirstUse(b *testing.B, srv *dropboxsigntest.Server, store dropboxsign.Store, keys []string) {
	var total firstUse
	passes := 0
	for b.Loop() {
		total.add(useAll(b, srv, store, keys))
		passes++
	}
	total.report(b, passes, len(keys))
}

// seed stores a valid token for every key of keys, from as many
// goroutines as the benchmark has workers.
func seed(tb testing.TB, store dropboxsign.Store, keys []string) {
	tb.Helper()
	ctx := context.Background()
	expiry := time.Now().Add(time.Hour)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(keys); i = int(next.Add(1) - 1) {
				if err := store.Save(ctx, keys[i], nil, realisticToken(expiry)); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		tb.Fatalf("seeding the store: %v", *err)
	}
}

// The FileStore's directory is seeded once per process, not per benchmark
// run: each file is written with two fsyncs, which takes seconds for 10,000
// accounts, and the first-use passes only read. TestMain removes it.
var fileStore struct {
	once sync.Once
	dir  string
	keys int
	err  error
}

func seededFileStore(b *testing.B, keys []string) *dropboxsign.FileStore {
	fileStore.once.Do(func() {
		fileStore.dir, fileStore.err = os.MkdirTemp("", "dropboxsign-bench-")
		if fileStore.err != nil {
			return
		}
		store, err := dropboxsign.NewFileStore(fileStore.dir)
		if err != nil {
			fileStore.err = err
			return
		}
		start := time.Now()
		seed(b, store, keys)
		fileStore.keys = len(keys)
		b.Logf("seeding %d accounts in a FileStore took %v", len(keys), time.Since(start).Round(time.Millisecond))
	})
	if fileStore.err != nil {
		b.Fatal(fileStore.err)
	}
	if fileStore.keys != len(keys) {
		b.Fatalf("the FileStore was seeded with %d accounts, not %d", fileStore.keys, len(keys))
	}
	store, err := dropboxsign.NewFileStore(fileStore.dir)
	if err != nil {
		b.Fatal(err)
	}
	return store
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fileStore.dir != "" {
		os.RemoveAll(fileStore.dir)
	}
	os.Exit(code)
}
