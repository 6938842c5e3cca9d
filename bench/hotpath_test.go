package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

// sink keeps what the benchmarks compute from being optimized away.
var sink atomic.Int64

// BenchmarkValidToken: the access token of a random account among those
// held, valid, from each holder. RunParallel runs one goroutine per -cpu.
// 100,000 accounts is the case at scale, where each lookup reaches memory
// no cache holds; 1,000 fit in the CPU's caches and show the code's own
// cost. holder=none is the floor: choosing the random account alone.
func BenchmarkValidToken(b *testing.B) {
	ctx := context.Background()
	sizes := []int{100000, 1000}
	if testing.Short() {
		sizes = sizes[1:]
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("accounts=%d", n), func(b *testing.B) { benchValidToken(b, ctx, n) })
	}
}

func benchValidToken(b *testing.B, ctx context.Context, n int) {
	store, keys := seedStore(b, n)
	var seeds atomic.Uint64
	// run calls get for a random account per iteration, from each of the
	// RunParallel goroutines, each with a generator of its own.
	run := func(b *testing.B, get func(string) (string, error)) {
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(seeds.Add(1), 0x5eed))
			sum := 0
			for pb.Next() {
				tok, err := get(keys[rng.IntN(n)])
				if err != nil {
					b.Error(err)
					return
				}
				sum += len(tok)
			}
			sink.Add(int64(sum))
		})
	}
	for _, c := range competitors {
		var h holder // made at the first of the sub-benchmark's runs
		b.Run("holder="+c.name, func(b *testing.B) {
			if h == nil {
				h = c.make(ctx, store, n)
				fill(b, ctx, h, keys)
			}
			run(b, func(k string) (string, error) { return h.accessToken(ctx, k) })
		})
	}
	b.Run("holder=none", func(b *testing.B) {
		run(b, func(k string) (string, error) { return k, nil })
	})
}
