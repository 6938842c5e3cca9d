// Package redisstore is a dropboxsign.Store in Redis, for fleets: many
// replicas share each account's token, refresh it once per expiry between
// them, and never present a refresh token another replica has spent, as
// long as no lease lapses mid-refresh and Redis keeps what it acknowledged
// (a failover can lose a write not yet replicated: see
// Options.WaitReplicas; dropboxsign.Store says what else this rests on).
//
// Each key's token lives in a Redis hash, <prefix>token:<key>, holding the
// token (JSON, or sealed with AES-256-GCM when encryption keys are given),
// a fingerprint of its access and refresh tokens, and a checksum binding
// the two. Save compares that fingerprint and writes in one Lua script, so
// the compare-and-swap is atomic; a record whose fingerprint is missing or
// not bound to its token (edited by hand) is compared by its token (see
// Store.Load). A refusal mark is the hash {refused: time}; a disconnection
// mark (Store.Disconnect) is the hash {disconnected: time}, milliseconds
// since the epoch by Redis's clock, and nothing else: no token, no
// fingerprint. The refresh lock is <prefix>lock:<key>, a lease: SET NX PX
// with a random owner token, renewed by the holder every third of its TTL,
// and released or renewed only by a script that checks the owner first.
//
// Disconnect and Replace then append the account's key to a change log, the
// Redis stream <prefix>changes, and publish it on the channel of the same
// name, which Store.Watch follows: pushed at once over pub/sub (Redis
// Cluster too), and read back from the stream every poll, so that a message
// pub/sub lost is not lost to the watcher. The stream keeps at most about
// 10,100 changes (trimmed approximately, MAXLEN ~ 10000, so up to 100 more)
// and none older than a day (trimmed at each write and each watcher's
// poll): about 50 bytes plus the account key an entry (0.6 MB for 10,000
// entries with 11-byte keys, measured on Redis 7.0).
//
// Durability is Redis's: a Save that returned nil survives a Redis restart
// only with persistence on (appendonly yes; appendfsync always for every
// write); Options.WaitReplicas makes saves, disconnections and their change
// log entries wait for replicas. A replica that reads an empty store after
// Redis lost its data seeds it again from the token it holds in memory; a
// disconnection mark, though, no save ever overwrites.
package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"log/slog"
	"slices"
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
	// turned on still load, and are sealed at their next save, unless the
	// Sealer refuses plaintext (dropboxsign.Sealer.RefusePlaintext).
	Sealer *dropboxsign.Sealer
	// WaitReplicas, if above 0, makes Save wait (Redis's WAIT, on the
	// connection that wrote) until that many replicas of the key's master
	// have the new token, for up to WaitTimeout (default 1 s); fewer is an
	// error, though the token is written. Replace and Disconnect wait so
	// too, for their write and then for their change log entry. Redis
	// replicates asynchronously: without it, a master that fails right after
	// a Save may take the new token with it, and with rotating refresh
	// tokens that costs the account a re-authorization (and a Disconnect,
	// its mark: a replica could then write the grant back). It costs a
	// replication round trip per save (one per refresh), never a read.
	WaitReplicas int
	WaitTimeout  time.Duration
	// Skipped, if set, is told of each Redis key under Prefix+"token:"
	// that Keys, Refused or Disconnected skipped because it holds no
	// record of this store (see Store.Load): a key of another type
	// (another application using the same prefix, an operator's SET), or a
	// hash with no blob, refused or disconnected field. redisType is what TYPE says the key is
	// ("string", "list", "hash", ...). It is called once per key and
	// listing, from the goroutine ranging over the listing, which goes on
	// afterwards: such keys are no accounts, so they neither appear in the
	// listing nor end it. If nil, each is logged with slog's default
	// logger, at level Warn.
	Skipped func(redisKey, redisType string)
}

// Store is a dropboxsign.Store, Lister and Watcher in Redis. It is safe for
// concurrent use.
type Store struct {
	client  redis.UniversalClient
	prefix  string
	ttl     time.Duration
	sealer  *dropboxsign.Sealer // nil: tokens stored as plain JSON
	wait    int
	waitTO  time.Duration
	skipped func(redisKey, redisType string)
	seals   sealCache // the keys InspectSeals's last pass found (seal.go)
}

var (
	_ dropboxsign.Lister  = (*Store)(nil)
	_ dropboxsign.Watcher = (*Store)(nil)
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
	s.skipped = opts.Skipped
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

// Load returns the token stored under key, dropboxsign.ErrNotFound, a
// *dropboxsign.RefusedError for a key marked refused, or a
// *dropboxsign.DisconnectedError for a key marked disconnected.
//
// Load, Save, MarkRefused, Forget and the listings read a record alike,
// whatever shape an operator or another program left it in: a hash with a
// disconnected field is a disconnection mark, whatever else it holds; else
// a hash with a refused field is a refusal mark; else a hash with a blob
// holds the blob's token; else (no key, or a hash with none of them)
// nothing is stored. A key of another Redis type is no record: Load, Save,
// MarkRefused and Forget fail on it with an error saying what it holds, and
// Replace (a new login) and Disconnect replace it.
func (s *Store) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	rk := s.tokenKey(key)
	fields, err := s.client.HMGet(ctx, rk, "blob", "refused", "disconnected").Result()
	if err != nil {
		return nil, s.readError(ctx, "load", key, err)
	}
	if since, ok := fields[2].(string); ok {
		return nil, disconnection(key, since)
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

// readError describes err, which a command on key's record returned: for a
// key of another type, what it holds.
func (s *Store) readError(ctx context.Context, op, key string, err error) error {
	if strings.HasPrefix(err.Error(), "WRONGTYPE") {
		if typ, terr := s.client.Type(ctx, s.tokenKey(key)).Result(); terr == nil && typ != "hash" && typ != "none" {
			return notARecord(op, key, typ)
		}
	}
	return fmt.Errorf("redisstore: %s %q: %w", op, key, err)
}

func notARecord(op, key, typ string) error {
	return fmt.Errorf("redisstore: %s %q: its Redis key holds a %s, not a token record (another application's key under this store's prefix?); a new login replaces it", op, key, typ)
}

// refusal reads a refusal mark: milliseconds since the Unix epoch (a mark
// written by hand that is not a number has no time).
func refusal(key, millis string) *dropboxsign.RefusedError {
	ms, err := strconv.ParseInt(millis, 10, 64)
	if err != nil {
		return &dropboxsign.RefusedError{Key: key}
	}
	return &dropboxsign.RefusedError{Key: key, Since: time.UnixMilli(ms)}
}

// disconnection reads a disconnection mark: milliseconds since the Unix
// epoch (a mark written by hand that is not one has no time).
func disconnection(key, millis string) *dropboxsign.DisconnectedError {
	if ms, ok := markMillis(millis); ok {
		return &dropboxsign.DisconnectedError{Key: key, Since: time.UnixMilli(ms)}
	}
	return &dropboxsign.DisconnectedError{Key: key}
}

// markMillis reads a disconnection mark's time as the scripts do (markLua):
// 1 to 15 decimal digits, which a Lua number holds exactly.
func markMillis(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 15 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	return ms, err == nil
}

// What the save and mark scripts return.
const (
	conflict = 0
	written  = 1
	// unbound: the record's fingerprint is not the one the save script
	// wrote with its blob (a hand edit, a partial restore, or a record of a
	// version before sum): only its token, which Lua cannot open, can tell
	// whether it is the expected one.
	unbound = 2
)

// What the scripts expect the record to hold, besides a fingerprint.
const (
	expectNothing = ""  // no token: no key, a hash without a blob, or a refusal mark
	expectBlob    = "=" // a token whose blob is exactly ARGV[2]
	replaceAny    = "*" // anything, whatever its type (save only)
)

// holdsLua defines holds(expect), which compares what KEYS[1] holds with
// what expect names (see the expect constants; else a fingerprint, hex, so
// never one of them), reading the record as Load does. It returns 1 if it
// matches, 0 if not (always for a disconnection mark), 2 (unbound) if only
// the record's token can tell, or {-1, type} for a key that is no hash. A
// record's sum binds its fingerprint to its blob: a fingerprint whose sum
// does not match was not written with that blob, and is not trusted either
// way.
const holdsLua = `
local function bind(fp, blob)
  return redis.sha1hex(string.len(fp) .. ':' .. fp .. blob)
end
local function holds(expect)
  local t = redis.call('TYPE', KEYS[1]).ok
  if t ~= 'none' and t ~= 'hash' then return {-1, t} end
  local f = {}
  if t == 'hash' then f = redis.call('HMGET', KEYS[1], 'refused', 'blob', 'fp', 'sum', 'disconnected') end
  if f[5] then return 0 end
  if f[1] or not f[2] then
    if expect == '' then return 1 end
    return 0
  end
  if expect == '' then return 0 end
  if expect == '=' then
    if f[2] == ARGV[2] then return 1 end
    return 0
  end
  if not f[3] or f[4] ~= bind(f[3], f[2]) then return 2 end
  if f[3] == expect then return 1 end
  return 0
end
`

// saveScript stores a token (fingerprint ARGV[3], blob ARGV[4]) if KEYS[1]
// holds what ARGV[1] (and ARGV[2]) expect, replacing the whole record.
var saveScript = redis.NewScript(holdsLua + `
if ARGV[1] ~= '*' then
  local h = holds(ARGV[1])
  if h ~= 1 then return h end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[3], 'blob', ARGV[4], 'sum', bind(ARGV[3], ARGV[4]))
return 1
`)

// markScript replaces the record with a refusal mark, stamped with Redis's
// clock, if KEYS[1] holds the refused token (ARGV[1], and ARGV[2]).
var markScript = redis.NewScript(holdsLua + `
local h = holds(ARGV[1])
if h ~= 1 then return h end
local t = redis.call('TIME')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'refused', tostring(t[1] * 1000 + math.floor(t[2] / 1000)))
return 1
`)

// MarkRefused replaces key's token with a refusal mark if it is still
// refused (see dropboxsign.Store), atomically, in one script: a token as
// Load reads it, so a record whose fingerprint field disagrees with its
// token, or lacks one, is compared by its token.
func (s *Store) MarkRefused(ctx context.Context, key string, refused *oauth2.Token) error {
	if refused == nil {
		return dropboxsign.ErrConflict
	}
	v, err := s.run(ctx, "mark refused", key, markScript, false, fingerprint(refused), "")
	if err == nil && v == unbound {
		v, err = s.byToken(ctx, "mark refused", key, refused, markScript, false)
	}
	switch {
	case err != nil:
		return err
	case v != written:
		return dropboxsign.ErrConflict
	}
	return nil
}

// Save stores t under key if the stored token is still prev (see
// dropboxsign.Store), atomically, in one script. The comparison reads the
// record as Load does: a disconnection mark matches nothing; prev nil
// matches no key, a hash without a token, or a refusal mark; a token is
// compared by the fingerprint the store wrote with it, or, where that is
// missing or does not match its blob (a record written or edited by hand),
// by the token itself, at the cost of two more round trips (once: the
// write binds them).
func (s *Store) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if t == nil {
		return errors.New("redisstore: nil token")
	}
	_, err := s.write(ctx, key, prev, fingerprint(prev), t)
	return err
}

// Replace stores t under key, replacing anything there, even a mark, a
// value the store cannot read or a key of another type (see
// dropboxsign.Store), then appends key to the change log and publishes it
// (see Watch). If the write succeeded but waiting for replicas or logging
// the change failed, it returns an error all the same: the caller cannot
// be sure every replica will learn of it.
func (s *Store) Replace(ctx context.Context, key string, t *oauth2.Token) error {
	if t == nil {
		return errors.New("redisstore: nil token")
	}
	v, err := s.write(ctx, key, nil, replaceAny, t)
	return s.changed(ctx, "replace", key, v, err)
}

// changed logs and publishes a change of key that op's script answered v
// (and err) for: if the script wrote, even if waiting for replicas then
// failed. It returns err, or else the logging's error.
func (s *Store) changed(ctx context.Context, op, key string, v int64, err error) error {
	if v != written {
		return err
	}
	if lerr := s.logChange(ctx, op, key); err == nil {
		err = lerr
	}
	return err
}

// write runs the save script and returns its answer (written, with an error
// if the write happened but too few replicas had it).
func (s *Store) write(ctx context.Context, key string, prev *oauth2.Token, expect string, t *oauth2.Token) (int64, error) {
	blob, err := s.sealer.Seal(key, t)
	if err != nil {
		return conflict, err
	}
	fp := fingerprint(t)
	v, err := s.run(ctx, "save", key, saveScript, true, expect, "", fp, blob)
	if err == nil && v == unbound {
		v, err = s.byToken(ctx, "save", key, prev, saveScript, true, fp, blob)
	}
	switch {
	case err != nil:
		return v, err
	case v != written:
		return v, dropboxsign.ErrConflict
	}
	return v, nil
}

// byToken runs script again for a record whose fingerprint cannot be
// trusted: it reads the record as Load does and, if its token is want, runs
// script expecting exactly the blob it read (so that a write in between is
// a conflict); otherwise it reports a conflict.
func (s *Store) byToken(ctx context.Context, op, key string, want *oauth2.Token, script *redis.Script, wait bool, args ...any) (int64, error) {
	fields, err := s.client.HMGet(ctx, s.tokenKey(key), "blob", "refused", "disconnected").Result()
	if err != nil {
		return 0, s.readError(ctx, op, key, err)
	}
	blob, ok := fields[0].(string)
	_, refused := fields[1].(string)
	if _, disconnected := fields[2].(string); refused || disconnected || !ok {
		return conflict, nil
	}
	if tok, err := s.sealer.Open(key, []byte(blob)); err != nil || fingerprint(tok) != fingerprint(want) {
		return conflict, nil // a record Load cannot read, or another token
	}
	return s.run(ctx, op, key, script, wait, append([]any{expectBlob, blob}, args...)...)
}

// run runs script on key's record and returns its answer. With wait (and
// Options.WaitReplicas), a write is followed by WAIT on its connection; if
// too few replicas had it, run returns written with an error.
func (s *Store) run(ctx context.Context, op, key string, script *redis.Script, wait bool, args ...any) (int64, error) {
	res, short, err := s.eval(ctx, s.tokenKey(key), script, wait, args...)
	if err != nil {
		return 0, fmt.Errorf("redisstore: %s %q: %w", op, key, err)
	}
	v, err := verdict(op, key, res)
	if err != nil || v != written || short == nil {
		return v, err
	}
	return written, fmt.Errorf("redisstore: %s %q: written, but %w", op, key, short)
}

// verdict reads a save or mark script's answer.
func verdict(op, key string, res any) (int64, error) {
	switch v := res.(type) {
	case int64:
		return v, nil
	case []any:
		if len(v) == 2 {
			if typ, ok := v[1].(string); ok {
				return 0, notARecord(op, key, typ)
			}
		}
	}
	return 0, fmt.Errorf("redisstore: %s %q: the script answered %v", op, key, res)
}

// eval runs script on rk, the one key it touches, and returns its answer.
// With wait (and Options.WaitReplicas), WAIT follows in one pipeline, on
// one connection to the master that holds rk (WAIT counts the replicas
// that have this connection's writes); short then says, if fewer replicas
// than wanted acknowledged in time or WAIT failed, that the script's
// writes may not survive a failover.
func (s *Store) eval(ctx context.Context, rk string, script *redis.Script, wait bool, args ...any) (res any, short, err error) {
	if !wait || s.wait <= 0 {
		res, err := script.Run(ctx, s.client, []string{rk}, args...).Result()
		return res, nil, err
	}
	var node redis.Cmdable = s.client
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		master, err := cc.MasterForKey(ctx, rk)
		if err != nil {
			return nil, nil, fmt.Errorf("finding the master of %s: %w", rk, err)
		}
		node = master
	}
	var ran, acked *redis.Cmd
	_, perr := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		ran = script.Eval(ctx, p, []string{rk}, args...)
		acked = p.Do(ctx, "WAIT", s.wait, s.waitTO.Milliseconds())
		return nil
	})
	if res, err = ran.Result(); err != nil {
		return nil, nil, err
	}
	replicas, _ := acked.Int64()
	switch {
	case perr != nil:
		short = fmt.Errorf("waiting for replicas failed: %w", perr)
	case replicas < int64(s.wait):
		short = fmt.Errorf("only %d of %d replicas had it within %v: a failover now could lose it", replicas, s.wait, s.waitTO)
	}
	return res, short, nil
}

// Keys yields every key that holds a token, a refusal mark or a
// disconnection mark (as Load reads it: a token it cannot open too), each
// once, found with SCAN (on every master of a cluster, one after the
// other): it costs a pass over the keyspace. A Redis key under the store's prefix that holds no record (see
// Load) is not an account: it is skipped, reported to Options.Skipped, and
// the listing goes on; an error (Redis unreachable, say) ends it.
//
// SCAN may return a key more than once (when Redis shrinks its table
// mid-listing, because another application deleted many keys), so the
// listing remembers what it has yielded or skipped: a 128-bit hash of each
// key in a Go map, 56 MB live for 1,000,000 accounts (measured: 37 to 56 bytes a
// key as the map doubles), freed when the listing ends. In a cluster, a key
// that moves during the listing to a master already visited can be missed.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := s.list(ctx, "", func(key, _ string) bool { return yield(key, nil) }); err != nil {
			yield("", err)
		}
	}
}

// Refused yields a *dropboxsign.RefusedError for each key marked refused
// (not disconnected), each once, found and skipping as Keys does; it
// remembers only the marks it yields and the keys it skips.
func (s *Store) Refused(ctx context.Context) iter.Seq2[*dropboxsign.RefusedError, error] {
	return func(yield func(*dropboxsign.RefusedError, error) bool) {
		if err := s.list(ctx, "refused", func(key, refused string) bool { return yield(refusal(key, refused), nil) }); err != nil {
			yield(nil, err)
		}
	}
}

// Disconnected yields a *dropboxsign.DisconnectedError for each key marked
// disconnected, each once, found and skipping as Keys does; it remembers
// only the marks it yields and the keys it skips.
func (s *Store) Disconnected(ctx context.Context) iter.Seq2[*dropboxsign.DisconnectedError, error] {
	return func(yield func(*dropboxsign.DisconnectedError, error) bool) {
		if err := s.list(ctx, "disconnected", func(key, since string) bool { return yield(disconnection(key, since), nil) }); err != nil {
			yield(nil, err)
		}
	}
}

// classifyScript tells what KEYS[1] holds, as Load reads it, atomically:
// {type}, {'hash', 'token'}, {'hash', 'refused', mark} or
// {'hash', 'disconnected', mark}.
var classifyScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'hash' then return {t} end
local f = redis.call('HMGET', KEYS[1], 'blob', 'refused', 'disconnected')
if f[3] then return {t, 'disconnected', f[3]} end
if f[2] then return {t, 'refused', f[2]} end
if f[1] then return {t, 'token'} end
return {t}
`)

// held is what a key under the prefix holds: a record ("token", "refused"
// or "disconnected", with the mark) or, if what is "", none (typ says what
// it is: "none" for a key deleted since SCAN returned it).
type held struct{ typ, what, mark string }

const (
	scanCount = 1000 // keys SCAN looks at per call
	batchLen  = 100  // keys classified per round trip
)

// list calls each with every record under the prefix (only those whose
// what is only, unless only is "") and its mark, once each, in the caller's
// goroutine, until each returns false. Keys holding no record go to skip,
// once each. It returns the error that ended the listing, if any.
func (s *Store) list(ctx context.Context, only string, each func(key, mark string) bool) error {
	seen, skipped := newSeenSet(), newSeenSet()
	stop := errors.New("stop")
	visit := func(c redis.UniversalClient) error {
		it := c.Scan(ctx, 0, escapeGlob(s.prefix)+"token:*", scanCount).Iterator()
		batch := make([]string, 0, batchLen)
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			kinds, err := s.classify(ctx, c, batch)
			if err != nil {
				return err
			}
			for i, rk := range batch {
				k := kinds[i]
				switch {
				case k.typ == "none": // deleted since SCAN returned it
				case k.what == "":
					if skipped.add(rk) {
						s.skip(rk, k.typ)
					}
				case only != "" && k.what != only:
				case !seen.add(rk): // SCAN returned it again
				case !each(strings.TrimPrefix(rk, s.prefix+"token:"), k.mark):
					return stop
				}
			}
			batch = batch[:0]
			return nil
		}
		for it.Next(ctx) {
			if batch = append(batch, it.Val()); len(batch) == batchLen {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		return flush()
	}
	nodes := []redis.UniversalClient{s.client}
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		// Each master's client, visited in turn from this goroutine (where
		// the caller's loop body must run), not from ForEachMaster's.
		var mu sync.Mutex
		nodes = nil
		err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			nodes = append(nodes, c)
			return nil
		})
		if err != nil {
			return fmt.Errorf("redisstore: listing keys: %w", err)
		}
	}
	for _, c := range nodes {
		if err := visit(c); errors.Is(err, stop) {
			return nil
		} else if err != nil {
			return fmt.Errorf("redisstore: listing keys: %w", err)
		}
	}
	return nil
}

// classify tells what each key holds, in one round trip to c (the node
// SCAN found them on). A key that moved to another master of a cluster
// meanwhile (MOVED, ASK) is asked for through the cluster client.
func (s *Store) classify(ctx context.Context, c redis.UniversalClient, keys []string) ([]held, error) {
	cmds := make([]*redis.Cmd, len(keys))
	for attempt := 0; ; attempt++ {
		c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, rk := range keys {
				cmds[i] = classifyScript.EvalSha(ctx, p, []string{rk})
			}
			return nil
		})
		if attempt > 0 || !slices.ContainsFunc(cmds, func(c *redis.Cmd) bool { return redis.HasErrorPrefix(c.Err(), "NOSCRIPT") }) {
			break
		}
		if err := classifyScript.Load(ctx, c).Err(); err != nil {
			return nil, err
		}
	}
	out := make([]held, len(keys))
	for i, cmd := range cmds {
		res, err := cmd.Result()
		if redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK") {
			res, err = classifyScript.Run(ctx, s.client, []string{keys[i]}).Result()
		}
		if err != nil {
			return nil, err
		}
		r, _ := res.([]any)
		for j := range r {
			if v, ok := r[j].(string); ok {
				switch j {
				case 0:
					out[i].typ = v
				case 1:
					out[i].what = v
				case 2:
					out[i].mark = v
				}
			}
		}
		if out[i].typ == "" {
			return nil, fmt.Errorf("classifying %q: the script answered %v", keys[i], res)
		}
	}
	return out, nil
}

// skip reports a key under the prefix that holds no record.
func (s *Store) skip(redisKey, typ string) {
	if s.skipped != nil {
		s.skipped(redisKey, typ)
		return
	}
	slog.Warn("redisstore: listing skipped a key that holds no token record", "key", redisKey, "type", typ)
}

// seenSet remembers keys by a 128-bit hash of each (two 64-bit hashes with
// random seeds of its own: a false "seen" is as likely as a collision of
// two 128-bit random values), in 16 bytes a key plus the map's overhead,
// instead of the key itself.
type seenSet struct {
	seeds [2]maphash.Seed
	m     map[[2]uint64]struct{}
}

func newSeenSet() *seenSet {
	return &seenSet{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, m: map[[2]uint64]struct{}{}}
}

// add records key and says whether it is new.
func (s *seenSet) add(key string) bool {
	h := [2]uint64{maphash.String(s.seeds[0], key), maphash.String(s.seeds[1], key)}
	if _, ok := s.m[h]; ok {
		return false
	}
	s.m[h] = struct{}{}
	return true
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
