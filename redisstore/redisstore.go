// Package redisstore is a dropboxsign.Store in Redis, for fleets: many
// replicas share each account's token, refresh it once per expiry between
// them, and never present a refresh token another replica has spent.
//
// Each key's token lives in a Redis hash, <prefix>token:<key>, holding the
// token (JSON, or sealed with AES-256-GCM when encryption keys are given)
// and a fingerprint of its access and refresh tokens. Save compares that
// fingerprint and writes in one Lua script, so the compare-and-swap is
// atomic. The refresh lock is <prefix>lock:<key>, a lease: SET NX PX with a
// random owner token, renewed by the holder every third of its TTL, and
// released or renewed only by a script that checks the owner first.
//
// Durability is Redis's: a Save that returned nil survives a Redis restart
// only with persistence on (appendonly yes; appendfsync always for every
// write). A replica that reads an empty store after Redis lost its data
// seeds it again from the token it holds in memory.
package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/lease"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

// DefaultLeaseTTL is how long a refresh lock outlives a holder that died.
const DefaultLeaseTTL = 10 * time.Second

// Options configures a Store.
type Options struct {
	// Prefix namespaces every Redis key the store uses; default
	// "dropboxsign:". Apps sharing a Redis use different prefixes.
	Prefix string
	// LeaseTTL is the refresh lock's lease (default DefaultLeaseTTL, at
	// least 100 ms): how long other replicas wait when a holder dies.
	// The holder renews it every LeaseTTL/3 while it refreshes.
	LeaseTTL time.Duration
	// Sealer, if set, seals stored tokens at rest (AES-256-GCM; see
	// dropboxsign.Sealer, which also tells how to rotate keys across a
	// running fleet). Tokens stored as plain JSON before encryption was
	// turned on still load, and are sealed at their next save.
	Sealer *dropboxsign.Sealer
	// WaitReplicas, if above 0, makes Save wait (Redis's WAIT, on the
	// connection that wrote) until that many replicas of the key's master
	// have the new token, for up to WaitTimeout (default 1 s); fewer is an
	// error, though the token is written. Redis replicates asynchronously:
	// without it, a master that fails right after a Save may take the new
	// token with it, and with rotating refresh tokens that costs the account
	// a re-authorization. It costs a replication round trip per save (one
	// per refresh), never a read.
	WaitReplicas int
	WaitTimeout  time.Duration
}

// Store is a dropboxsign.Store, Lister and Replacer in Redis. It is safe for concurrent use.
type Store struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
	sealer *dropboxsign.Sealer // nil: tokens stored as plain JSON
	wait   int
	waitTO time.Duration
}

var (
	_ dropboxsign.Lister   = (*Store)(nil)
	_ dropboxsign.Replacer = (*Store)(nil)
)

// New returns a Store using client, which the caller owns and closes.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	s := &Store{client: client, prefix: opts.Prefix, ttl: opts.LeaseTTL}
	if s.prefix == "" {
		s.prefix = "dropboxsign:"
	}
	if s.ttl == 0 {
		s.ttl = DefaultLeaseTTL
	}
	if s.ttl < 100*time.Millisecond {
		return nil, fmt.Errorf("redisstore: LeaseTTL %v is below 100ms", s.ttl)
	}
	s.sealer = opts.Sealer
	s.wait, s.waitTO = opts.WaitReplicas, opts.WaitTimeout
	if s.waitTO <= 0 {
		s.waitTO = time.Second
	}
	return s, nil
}

func (s *Store) tokenKey(key string) string { return s.prefix + "token:" + key }
func (s *Store) lockKey(key string) string  { return s.prefix + "lock:" + key }

// fingerprint identifies a token for compare-and-swap without storing its
// secrets in the clear: tokens are random, so their hash reveals nothing.
func fingerprint(t *oauth2.Token) string {
	if t == nil {
		return ""
	}
	h := sha256.Sum256([]byte("dropboxsign-fp\x00" + t.AccessToken + "\x00" + t.RefreshToken))
	return hex.EncodeToString(h[:])
}

// Load returns the token stored under key, dropboxsign.ErrNotFound, or a
// *dropboxsign.RefusedError for a key marked refused.
func (s *Store) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	rk := s.tokenKey(key)
	fields, err := s.client.HMGet(ctx, rk, "blob", "refused").Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: load %q: %w", key, err)
	}
	if refused, ok := fields[1].(string); ok {
		return nil, refusal(key, refused)
	}
	blob, ok := fields[0].(string)
	if !ok {
		return nil, dropboxsign.ErrNotFound
	}
	tok, err := s.sealer.Open(key, []byte(blob))
	if err != nil {
		return nil, fmt.Errorf("redisstore: load %q: %w", key, err)
	}
	return tok, nil
}

// refusal reads a refusal mark: milliseconds since the Unix epoch.
func refusal(key, millis string) *dropboxsign.RefusedError {
	ms, _ := strconv.ParseInt(millis, 10, 64)
	return &dropboxsign.RefusedError{Key: key, Since: time.UnixMilli(ms)}
}

// saveScript stores a token if the stored fingerprint is the expected one
// ("" expects nothing stored, or a refusal mark, which it replaces; "*"
// replaces anything, whatever its type). It returns 1 if it wrote, 0 on a
// conflict.
var saveScript = redis.NewScript(`
if ARGV[1] == '*' then
  redis.call('DEL', KEYS[1])
else
  local cur = redis.call('HGET', KEYS[1], 'fp')
  if ARGV[1] == '' then
    if cur then return 0 end
  elseif cur ~= ARGV[1] then
    return 0
  end
end
redis.call('HDEL', KEYS[1], 'refused')
redis.call('HSET', KEYS[1], 'fp', ARGV[2], 'blob', ARGV[3])
return 1
`)

// markScript replaces the stored token with a refusal mark, stamped with
// Redis's clock, if the stored fingerprint is the refused token's. It
// returns 1 if it marked, 0 on a conflict.
var markScript = redis.NewScript(`
if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'refused', tostring(t[1] * 1000 + math.floor(t[2] / 1000)))
return 1
`)

// MarkRefused replaces key's token with a refusal mark if it is still
// refused (see dropboxsign.Store), atomically, in one script.
func (s *Store) MarkRefused(ctx context.Context, key string, refused *oauth2.Token) error {
	if refused == nil {
		return dropboxsign.ErrConflict
	}
	n, err := markScript.Run(ctx, s.client, []string{s.tokenKey(key)}, fingerprint(refused)).Int()
	if err != nil {
		return fmt.Errorf("redisstore: mark %q refused: %w", key, err)
	}
	if n == 0 {
		return dropboxsign.ErrConflict
	}
	return nil
}

// Keys yields every key that holds a token or a refusal mark, found with
// SCAN (on every master of a cluster): it costs a pass over the keyspace.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		s.scan(ctx, func(key, _ string) bool { return yield(key, nil) }, func(err error) { yield("", err) })
	}
}

// Refused yields a *dropboxsign.RefusedError for each key marked refused,
// found as Keys finds keys.
func (s *Store) Refused(ctx context.Context) iter.Seq2[*dropboxsign.RefusedError, error] {
	return func(yield func(*dropboxsign.RefusedError, error) bool) {
		s.scan(ctx, func(key, refused string) bool {
			return refused == "" || yield(refusal(key, refused), nil)
		}, func(err error) { yield(nil, err) })
	}
}

// scan calls each with every stored key and its refusal mark ("" if none)
// until each returns false; an error goes to fail and ends it.
func (s *Store) scan(ctx context.Context, each func(key, refused string) bool, fail func(error)) {
	stop := errors.New("stop")
	stopped := false // each said stop: never call it again
	visit := func(ctx context.Context, c redis.UniversalClient) error {
		if stopped {
			return stop
		}
		iter := c.Scan(ctx, 0, escapeGlob(s.prefix)+"token:*", 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, rk := range batch {
					p.HGet(ctx, rk, "refused")
				}
				return nil
			})
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			for i, cmd := range cmds {
				refused, err := cmd.(*redis.StringCmd).Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					return err
				}
				if !each(strings.TrimPrefix(batch[i], s.prefix+"token:"), refused) {
					stopped = true
					return stop
				}
			}
			batch = batch[:0]
			return nil
		}
		for iter.Next(ctx) {
			if batch = append(batch, iter.Val()); len(batch) == 100 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	var err error
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		// Each master in turn, so that each stops at once on a break.
		var mu sync.Mutex
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return visit(ctx, c)
		})
	} else {
		err = visit(ctx, s.client)
	}
	if err != nil && !errors.Is(err, stop) {
		fail(fmt.Errorf("redisstore: listing keys: %w", err))
	}
}

// escapeGlob escapes the characters SCAN's MATCH pattern treats specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Save stores t under key if the stored token is still prev (see
// dropboxsign.Store), atomically, in one script.
func (s *Store) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if t == nil {
		return errors.New("redisstore: nil token")
	}
	return s.write(ctx, key, fingerprint(prev), t)
}

// Replace stores t under key, replacing anything there, even a value the
// store cannot read (see dropboxsign.Replacer).
func (s *Store) Replace(ctx context.Context, key string, t *oauth2.Token) error {
	if t == nil {
		return errors.New("redisstore: nil token")
	}
	return s.write(ctx, key, replaceAny, t)
}

// replaceAny, as the expected fingerprint, makes the save script replace
// whatever the key holds (a fingerprint is hex: it never equals it).
const replaceAny = "*"

func (s *Store) write(ctx context.Context, key, prevFP string, t *oauth2.Token) error {
	rk := s.tokenKey(key)
	blob, err := s.sealer.Seal(key, t)
	if err != nil {
		return err
	}
	args := []any{prevFP, fingerprint(t), blob}
	if s.wait > 0 {
		return s.saveAndWait(ctx, key, rk, args)
	}
	n, err := saveScript.Run(ctx, s.client, []string{rk}, args...).Int()
	if err != nil {
		return fmt.Errorf("redisstore: save %q: %w", key, err)
	}
	if n == 0 {
		return dropboxsign.ErrConflict
	}
	return nil
}

// saveAndWait runs the save script and WAIT in one pipeline, on one
// connection to the master that holds rk: WAIT counts the replicas that
// have this connection's writes.
func (s *Store) saveAndWait(ctx context.Context, key, rk string, args []any) error {
	var node redis.Cmdable = s.client
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		master, err := cc.MasterForKey(ctx, rk)
		if err != nil {
			return fmt.Errorf("redisstore: save %q: finding its master: %w", key, err)
		}
		node = master
	}
	var saved, acked *redis.Cmd
	_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		saved = saveScript.Eval(ctx, p, []string{rk}, args...)
		acked = p.Do(ctx, "WAIT", s.wait, s.waitTO.Milliseconds())
		return nil
	})
	n, serr := saved.Int()
	replicas, _ := acked.Int64()
	switch {
	case serr != nil:
		return fmt.Errorf("redisstore: save %q: %w", key, serr)
	case n == 0:
		return dropboxsign.ErrConflict
	case err != nil:
		return fmt.Errorf("redisstore: save %q: written, but waiting for replicas failed: %w", key, err)
	case replicas < int64(s.wait):
		return fmt.Errorf("redisstore: save %q: written, but only %d of %d replicas had it within %v: a failover now could lose it", key, replicas, s.wait, s.waitTO)
	}
	return nil
}

var (
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)
)

// Lock takes key's refresh lease (see dropboxsign.Store), waiting until it
// is free or ctx ends, and renews it every LeaseTTL/3 until unlock. If a
// renewal finds the lease gone (Redis lost it, or the holder was partitioned
// past its TTL), renewing stops; the compare-and-swap in Save still protects
// the stored token.
func (s *Store) Lock(ctx context.Context, key string) (func(), error) {
	lk := s.lockKey(key)
	return lease.Take(ctx, s.ttl, lease.Ops{
		Take: func(ctx context.Context, owner string) (bool, error) {
			ok, err := s.client.SetNX(ctx, lk, owner, s.ttl).Result()
			if err != nil {
				return false, fmt.Errorf("redisstore: lock %q: %w", key, err)
			}
			return ok, nil
		},
		Renew: func(ctx context.Context, owner string) (bool, error) {
			n, err := renewScript.Run(ctx, s.client, []string{lk}, owner, s.ttl.Milliseconds()).Int()
			return n == 1, err
		},
		Release: func(ctx context.Context, owner string) {
			releaseScript.Run(ctx, s.client, []string{lk}, owner)
		},
	})
}
