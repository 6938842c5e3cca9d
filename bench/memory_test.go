package bench

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

// heapAfterGC returns the live heap, collected until it stops shrinking:
// an Accounts' let-go sources are forgotten by cleanups that run after the
// collection that finds them gone, and free more at the next one.
func heapAfterGC() uint64 {
	var m runtime.MemStats
	prev := ^uint64(0)
	for range 10 {
		runtime.GC()
		runtime.Gosched()
		runtime.ReadMemStats(&m)
		if m.HeapAlloc >= prev-prev/1000 {
			break
		}
		prev = m.HeapAlloc
	}
	return m.HeapAlloc
}

// BenchmarkHeldAccountMemory: the heap each holder costs per account it
// holds, token included, with 100,000 held: the live heap after making the
// holder and using every account once, less the live heap before. The
// store and the keys are made before, and counted for none.
func BenchmarkHeldAccountMemory(b *testing.B) {
	ctx := context.Background()
	n := size(100000, 1000)
	store, keys := seedStore(b, n)
	// The core's TestHeldAccountCostsAtMost512Bytes measures an Accounts
	// over the in-memory store as it is, whose tokens share their strings
	// with the store's: the token's 176 characters are not counted there.
	sharing := competitor{"dropboxsign-strings-shared-with-store", func(ctx context.Context, s dropboxsign.Store, held int) holder {
		return newDropboxsign(ctx, s, held)
	}}
	for _, c := range append(competitors[:len(competitors):len(competitors)], sharing) {
		b.Run("holder="+c.name, func(b *testing.B) {
			var per float64
			var took time.Duration
			for b.Loop() {
				before := heapAfterGC()
				h := c.make(ctx, store, n)
				start := time.Now()
				fill(b, ctx, h, keys)
				took = time.Since(start)
				after := heapAfterGC()
				runtime.KeepAlive(h)
				per = (float64(after) - float64(before)) / float64(n)
			}
			b.ReportMetric(per, "B/account")
			b.ReportMetric(float64(took.Nanoseconds())/float64(n), "ns/first-use")
			b.ReportMetric(0, "ns/op") // the whole pass: see ns/first-use
		})
	}
}

// BenchmarkMillionStored: an Accounts holding at most 100,000 accounts
// (WithMaxAccounts) over a store of 1,000,000, every one of which is used
// once: the Accounts' heap afterwards, how many it holds, and the heap per
// held account.
func BenchmarkMillionStored(b *testing.B) {
	ctx := context.Background()
	stored, max := size(1000000, 10000), size(100000, 1000)
	store, keys := seedStore(b, stored)
	var heap uint64
	var held int
	var touch time.Duration
	for b.Loop() {
		before := heapAfterGC()
		a := dropboxsign.NewAccounts(ctx, benchConfig(), decoding{store}, dropboxsign.WithMaxAccounts(max))
		start := time.Now()
		for _, k := range keys {
			if _, err := a.TokenSource(k).TokenContext(ctx); err != nil {
				b.Fatalf("first use of %s: %v", k, err)
			}
		}
		touch = time.Since(start)
		after := heapAfterGC()
		held = a.Stats().Held
		runtime.KeepAlive(a)
		heap = after - before
	}
	if held > max {
		b.Errorf("%d accounts held, want at most %d", held, max)
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(held), "held")
	b.ReportMetric(float64(heap)/float64(held), "B/held-account")
	b.ReportMetric(float64(touch.Nanoseconds())/float64(stored), "ns/first-use")
	b.ReportMetric(0, "ns/op")
}
