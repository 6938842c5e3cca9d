package redisstore_test

import (
	"context"
	"errors"
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

// SampleSeals on a Redis Cluster of 3 masters: at most n tokens, each as
// InspectSeals tells it, no mark, no key of another type; at most 3 SCAN
// steps on each master, whatever n; and, with n above the keys stored,
// every token (each master's keys fit in one step).
func TestClusterSampleSeals(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of three servers")
	}
	c := redistest.StartCluster(t, 3, 0)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRedirects: 16,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	ctx := ctxFor(t)
	p := prefix()
	var skipped []string
	var mu sync.Mutex
	open := func(s *dropboxsign.Sealer) *redisstore.Store {
		st, err := redisstore.New(client, redisstore.Options{Prefix: p, Sealer: s, Skipped: func(key, typ string) {
			mu.Lock()
			skipped = append(skipped, key)
			mu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	s := open(mustSealer(t, sealKey(1)))
	var ss dropboxsign.SealSampler = s // fails to build without SampleSeals
	const tokens = 300
	for i := range tokens {
		k := fmt.Sprintf("acct-%d", i)
		if err := s.Save(ctx, k, nil, sealToken(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := open(mustSealer(t, sealKey(3))).Save(ctx, "foreign", nil, sealToken("foreign")); err != nil {
		t.Fatal(err)
	}
	var marks []string
	for i := range 10 {
		k := fmt.Sprintf("acct-%d", i)
		marks = append(marks, k)
		if err := s.Disconnect(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Set(ctx, p+"token:not-a-hash", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	listed := inspectAll(t, s, 1000)
	if len(listed) != tokens-len(marks)+1 {
		t.Fatalf("InspectSeals listed %d tokens, want %d", len(listed), tokens-len(marks)+1)
	}
	want := map[string]dropboxsign.Seal{}
	for _, r := range listed {
		want[r.Key] = r.Seal
	}

	scans := func() map[string]int {
		calls := map[string]int{}
		if err := client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			n := scanCalls(ctx, t, m)
			mu.Lock()
			calls[m.Options().Addr] = n
			mu.Unlock()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return calls
	}
	for _, n := range []int{1, 50, 1000} {
		before := scans()
		sample, err := ss.SampleSeals(ctx, n)
		if err != nil {
			t.Fatalf("SampleSeals(%d): %v", n, err)
		}
		after := scans()
		if len(after) != 3 {
			t.Fatalf("%d masters, want 3", len(after))
		}
		for addr, calls := range after {
			if d := calls - before[addr]; d > 3 {
				t.Errorf("SampleSeals(%d): %d SCAN steps on master %s, want at most 3", n, d, addr)
			}
		}
		if len(sample) > n {
			t.Errorf("SampleSeals(%d) returned %d records", n, len(sample))
		}
		if n == 1000 && len(sample) != len(listed) {
			t.Errorf("SampleSeals(%d) of %d tokens returned %d: each master's keys fit in a step", n, len(listed), len(sample))
		}
		if n == 50 && len(sample) == 0 {
			t.Errorf("SampleSeals(%d) of %d tokens returned none", n, len(listed))
		}
		seen := map[string]bool{}
		for _, r := range sample {
			w, ok := want[r.Key]
			var missing *dropboxsign.MissingKeyError
			switch {
			case !ok || seen[r.Key]:
				t.Errorf("SampleSeals(%d) returned %q: a mark, no token, or twice", n, r.Key)
			case r.Key == "foreign":
				if !errors.As(r.Seal.Err, &missing) || missing.KeyID != dropboxsign.KeyID(sealKey(3)) {
					t.Errorf("%q, under a key the store lacks: %+v; want a *MissingKeyError", r.Key, r.Seal)
				}
			case r.Seal != w || !r.Seal.Current:
				t.Errorf("SampleSeals(%d): %q: %+v; InspectSeals says %+v", n, r.Key, r.Seal, w)
			}
			seen[r.Key] = true
		}
	}
	// Among 60,000 keys of another app, the steps stay 3 a master (a pass
	// of InspectSeals would take about 20 on each).
	for i := 0; i < 60000; i += 5000 {
		pipe := client.Pipeline()
		for j := i; j < i+5000; j++ {
			pipe.Set(ctx, fmt.Sprintf("other-app:%d", j), "x", 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before := scans()
	sample, err := ss.SampleSeals(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	for addr, calls := range scans() {
		if d := calls - before[addr]; d > 3 {
			t.Errorf("SampleSeals(100) among 60,000 other keys: %d SCAN steps on master %s, want at most 3", d, addr)
		}
	}
	for _, r := range sample {
		if w := want[r.Key]; w.Plain != r.Seal.Plain || w.KeyID != r.Seal.KeyID || w.Current != r.Seal.Current || (w.Err == nil) != (r.Seal.Err == nil) {
			t.Errorf("%q: %+v; InspectSeals says %+v", r.Key, r.Seal, want[r.Key])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(skipped, p+"token:not-a-hash") {
		t.Errorf("the key of another type was not reported to Skipped: %q", skipped)
	}
}
