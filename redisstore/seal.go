package redisstore

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/redis/go-redis/v9"
)

var _ dropboxsign.SealSampler = (*Store)(nil)

// InspectSeals tells how the tokens of up to limit accounts whose keys sort
// after after (bytewise) are stored (see dropboxsign.SealInspector), in key
// order, each told by the store's Sealer (Options.Sealer) with Inspect. A
// blob that is not a token, or that the Sealer cannot open, is reported
// with its Err; the listing goes on. Refusal and disconnection marks are
// left out, and so are Redis keys under the prefix that hold no record
// (reported to Options.Skipped if they are of another type, as Keys does).
//
// Redis keeps no order of keys, standalone or Cluster: the keys after after
// are found by a pass of SCAN over the keyspace (over every master of a
// cluster, one after the other, as Keys does), which keeps only the
// smallest ones (at most sealPassKeys of them, about 1 MB of memory, never
// the whole keyspace), then their records are read in one pipelined round
// of HMGETs. The keys a pass found beyond the page serve the following
// pages of the same listing (a call whose after is one of them, for up to
// a minute), so that a census or re-seal of N accounts costs about
// N/sealPassKeys passes over the keyspace (one pass for up to 10,000
// accounts), plus a read of each record. A key saved during a listing may
// or may not be seen; a key stored throughout is seen once (in a cluster,
// unless it moves to another master mid-pass, as with Keys).
func (s *Store) InspectSeals(ctx context.Context, after string, limit int) ([]dropboxsign.StoredSeal, error) {
	if limit < 1 {
		return nil, fmt.Errorf("redisstore: InspectSeals: limit %d, want at least 1", limit)
	}
	for {
		keys, err := s.sealCandidates(ctx, after, limit)
		if err != nil {
			return nil, fmt.Errorf("redisstore: inspecting seals: %w", err)
		}
		if len(keys) == 0 {
			return nil, nil
		}
		out, err := s.inspectKeys(ctx, keys)
		if err != nil {
			return nil, fmt.Errorf("redisstore: inspecting seals: %w", err)
		}
		if len(out) > 0 {
			return out, nil
		}
		// Only marks, or keys gone since the pass: look further, for an
		// empty page means the end.
		after = keys[len(keys)-1]
	}
}

// SampleSeals tells how at most n stored tokens are stored (see
// dropboxsign.SealSampler), any n it finds first, read and told as
// InspectSeals does (marks and keys of other types left out, a record that
// does not open reported with its Err). It is what Accounts.Check asks
// for, so that a readiness probe does not walk the keyspace: on each
// master (the one server, or each master of a cluster, one after the
// other) it runs at most sampleSteps steps of SCAN with a COUNT of n,
// stopping once it has n keys, then reads at most n records in one
// pipelined round of HMGETs. Its cost does not grow with the keyspace; on
// a server with many keys besides the store's, it may find fewer than n
// tokens, or none.
func (s *Store) SampleSeals(ctx context.Context, n int) ([]dropboxsign.StoredSeal, error) {
	if n < 1 {
		return nil, fmt.Errorf("redisstore: SampleSeals: n %d, want at least 1", n)
	}
	keys, err := s.sampleKeys(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("redisstore: sampling seals: %w", err)
	}
	out, err := s.inspectKeys(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("redisstore: sampling seals: %w", err)
	}
	return out, nil
}

// sampleSteps is how many steps of SCAN SampleSeals runs on a master at
// most.
const sampleSteps = 3

// sampleKeys returns at most n distinct account keys, found by at most
// sampleSteps steps of SCAN (COUNT n) on each master, stopping at n.
func (s *Store) sampleKeys(ctx context.Context, n int) ([]string, error) {
	nodes, err := s.masters(ctx)
	if err != nil {
		return nil, err
	}
	pfx := s.prefix + "token:"
	match := escapeGlob(pfx) + "*"
	var keys []string
	in := map[string]struct{}{}
	for _, c := range nodes {
		var cursor uint64
		for step := 0; step < sampleSteps && len(keys) < n; step++ {
			found, next, err := c.Scan(ctx, cursor, match, int64(n)).Result()
			if err != nil {
				return nil, err
			}
			for _, full := range found {
				k, ok := strings.CutPrefix(full, pfx)
				if _, dup := in[k]; !ok || dup || len(keys) == n { // SCAN may return a key twice
					continue
				}
				in[k] = struct{}{}
				keys = append(keys, k)
			}
			if cursor = next; cursor == 0 {
				break // the whole of this master
			}
		}
		if len(keys) == n {
			break
		}
	}
	return keys, nil
}

// sealPassKeys is how many keys a pass of InspectSeals keeps at most: the
// page asked for, or more, for the pages that follow.
var sealPassKeys = 10000

// sealCacheTTL is how long the keys a pass found serve the pages that
// follow.
const sealCacheTTL = time.Minute

// sealCache holds the keys the last pass of InspectSeals found.
type sealCache struct {
	mu       sync.Mutex
	from     string   // the pass looked for keys after from
	keys     []string // the smallest keys after from it found, sorted
	complete bool     // it found no other key after from
	at       time.Time
}

// sealCandidates returns the smallest keys after after, up to limit,
// sorted: from the keys of the last pass, if after lies in the range it
// covered (a listing going on), else from a new pass.
func (s *Store) sealCandidates(ctx context.Context, after string, limit int) ([]string, error) {
	c := &s.seals
	c.mu.Lock()
	if c.keys != nil && after > c.from && time.Since(c.at) < sealCacheTTL {
		i, found := slices.BinarySearch(c.keys, after)
		if found {
			i++
		}
		if rest := c.keys[i:]; len(rest) > 0 || c.complete {
			page := slices.Clone(rest[:min(limit, len(rest))])
			c.mu.Unlock()
			return page, nil
		}
	}
	c.mu.Unlock()
	start := time.Now()
	keys, complete, err := s.smallestAfter(ctx, after, max(limit, sealPassKeys))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.from, c.keys, c.complete, c.at = after, keys, complete, start
	c.mu.Unlock()
	return slices.Clone(keys[:min(limit, len(keys))]), nil
}

// smallestAfter returns, sorted, the n smallest account keys after after
// that a pass of SCAN finds on every master, and whether those are all it
// found after after.
func (s *Store) smallestAfter(ctx context.Context, after string, n int) (keys []string, complete bool, err error) {
	nodes, err := s.masters(ctx)
	if err != nil {
		return nil, false, err
	}
	pfx := s.prefix + "token:"
	h := &maxHeap{}
	in := map[string]struct{}{}
	complete = true
	for _, c := range nodes {
		it := c.Scan(ctx, 0, escapeGlob(pfx)+"*", scanCount).Iterator()
		for it.Next(ctx) {
			k, ok := strings.CutPrefix(it.Val(), pfx)
			if !ok || k <= after {
				continue
			}
			if _, dup := in[k]; dup { // SCAN may return a key twice
				continue
			}
			if h.Len() == n {
				complete = false
				if k >= (*h)[0] {
					continue
				}
				delete(in, heap.Pop(h).(string))
			}
			heap.Push(h, k)
			in[k] = struct{}{}
		}
		if err := it.Err(); err != nil {
			return nil, false, err
		}
	}
	keys = []string(*h)
	slices.Sort(keys)
	return keys, complete, nil
}

// masters returns the clients to SCAN: the store's, or each master's of a
// cluster.
func (s *Store) masters(ctx context.Context) ([]redis.UniversalClient, error) {
	cc, ok := s.client.(*redis.ClusterClient)
	if !ok {
		return []redis.UniversalClient{s.client}, nil
	}
	var mu sync.Mutex
	var nodes []redis.UniversalClient
	err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		nodes = append(nodes, c)
		return nil
	})
	return nodes, err
}

// inspectKeys reads the records of keys (in one pipeline: the cluster
// client sends each to its master) and tells how each token is stored,
// leaving out marks and keys that hold no token.
func (s *Store) inspectKeys(ctx context.Context, keys []string) ([]dropboxsign.StoredSeal, error) {
	cmds := make([]*redis.SliceCmd, len(keys))
	s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.HMGet(ctx, s.tokenKey(k), "blob", "refused", "disconnected")
		}
		return nil
	})
	var out []dropboxsign.StoredSeal
	for i, cmd := range cmds {
		fields, err := cmd.Result()
		if err != nil {
			if strings.HasPrefix(err.Error(), "WRONGTYPE") {
				if typ, terr := s.client.Type(ctx, s.tokenKey(keys[i])).Result(); terr == nil && typ != "hash" && typ != "none" {
					s.skip(s.tokenKey(keys[i]), typ)
				}
				continue
			}
			return nil, err
		}
		if len(fields) != 3 {
			return nil, errors.New("HMGET answered " + fmt.Sprint(len(fields)) + " fields for 3")
		}
		_, refused := fields[1].(string)
		_, disconnected := fields[2].(string)
		blob, ok := fields[0].(string)
		if refused || disconnected || !ok {
			continue // a mark, or no record (gone since the pass)
		}
		out = append(out, dropboxsign.StoredSeal{Key: keys[i], Seal: s.sealer.Inspect(keys[i], []byte(blob))})
	}
	return out, nil
}

// maxHeap is a max-heap of strings: the largest kept key on top, the one a
// smaller key replaces.
type maxHeap []string

func (h maxHeap) Len() int           { return len(h) }
func (h maxHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h maxHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *maxHeap) Push(x any)        { *h = append(*h, x.(string)) }
func (h *maxHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
