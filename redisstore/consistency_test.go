package redisstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/internal/redistest"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

// A shape a token key can be in, made with raw commands as an operator, a
// partial restore or another application sharing the Redis would leave it.
type shape struct {
	name string
	// make leaves rk in the shape: x is the token it was meant to hold, y
	// one it held before.
	make func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token)
	// loads is what Load says: "token" (x), "nothing", "refused",
	// "disconnected", "error".
	loads string
	// listed: Keys lists it; else the listing skips it, and reports it
	// with this type.
	listed    bool
	skippedAs string
}

func mustDo(err error) {
	if err != nil {
		panic(err) // in a shape's setup: a broken test, not a finding
	}
}

// fieldsOf stores tok under key as the store writes it and returns the
// record's fields.
func fieldsOf(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, tok *oauth2.Token) map[string]string {
	mustDo(s.Replace(ctx, key, tok))
	f, err := c.HGetAll(ctx, rk).Result()
	mustDo(err)
	return f
}

var shapes = []shape{
	{name: "a record as Save writes it", loads: "token", listed: true,
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(s.Replace(ctx, key, x))
		}},
	{name: "a fingerprint without its blob", loads: "nothing", skippedAs: "hash",
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(s.Replace(ctx, key, x))
			mustDo(c.HDel(ctx, rk, "blob").Err())
		}},
	{name: "a blob without a fingerprint", loads: "token", listed: true,
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(s.Replace(ctx, key, x))
			mustDo(c.HDel(ctx, rk, "fp", "sum").Err())
		}},
	{name: "a fingerprint and blob without their sum (an older version's record)", loads: "token", listed: true,
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(s.Replace(ctx, key, x))
			mustDo(c.HDel(ctx, rk, "sum").Err())
		}},
	{name: "the blob restored without its fingerprint", loads: "token", listed: true,
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			blob := fieldsOf(ctx, c, s, key, rk, x)["blob"]
			mustDo(s.Replace(ctx, key, y))
			mustDo(c.HSet(ctx, rk, "blob", blob).Err()) // fp and sum still y's
		}},
	{name: "the fingerprint restored without its blob", loads: "token", listed: true,
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			old := fieldsOf(ctx, c, s, key, rk, y)
			mustDo(s.Replace(ctx, key, x))
			mustDo(c.HSet(ctx, rk, "fp", old["fp"], "sum", old["sum"]).Err())
		}},
	{name: "a refusal mark with a leftover token", loads: "refused", listed: true,
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			f := fieldsOf(ctx, c, s, key, rk, x)
			mustDo(s.MarkRefused(ctx, key, x))
			mustDo(c.HSet(ctx, rk, f).Err())
		}},
	{name: "a refusal mark that is not a time", loads: "refused", listed: true,
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(c.HSet(ctx, rk, "refused", "yesterday").Err())
		}},
	{name: "a disconnection mark", loads: "disconnected", listed: true,
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(s.Replace(ctx, key, x))
			mustDo(s.Disconnect(ctx, key))
		}},
	{name: "an older disconnection mark with a leftover token and refusal mark", loads: "disconnected", listed: true,
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			f := fieldsOf(ctx, c, s, key, rk, x)
			mustDo(s.Disconnect(ctx, key))
			mustDo(c.HSet(ctx, rk, f).Err())
			mustDo(c.HSet(ctx, rk, "refused", "1", "disconnected", "1700000000000").Err()) // and older
		}},
	{name: "a disconnection mark that is not a time", loads: "disconnected", listed: true,
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(c.HSet(ctx, rk, "disconnected", "yesterday").Err())
		}},
	{name: "another application's hash", loads: "nothing", skippedAs: "hash",
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(c.HSet(ctx, rk, "name", "bob").Err())
		}},
	{name: "a blob that is no token", loads: "error", listed: true,
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(c.HSet(ctx, rk, "blob", "garbage", "fp", "x").Err())
		}},
	{name: "a string", loads: "error", skippedAs: "string",
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(c.Set(ctx, rk, "v", 0).Err())
		}},
	{name: "a list", loads: "error", skippedAs: "list",
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(c.RPush(ctx, rk, "a", "b").Err())
		}},
	{name: "a set", loads: "error", skippedAs: "set",
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(c.SAdd(ctx, rk, "a").Err())
		}},
	{name: "a sorted set", loads: "error", skippedAs: "zset",
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(c.ZAdd(ctx, rk, redis.Z{Score: 1, Member: "a"}).Err())
		}},
	{name: "a stream", loads: "error", skippedAs: "stream",
		make: func(ctx context.Context, c redis.Cmdable, s *redisstore.Store, key, rk string, x, y *oauth2.Token) {
			mustDo(c.XAdd(ctx, &redis.XAddArgs{Stream: rk, Values: []string{"a", "b"}}).Err())
		}},
}

func sameToken(a, b *oauth2.Token) bool {
	return a != nil && b != nil && a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken
}

// loaded describes what Load returned, for messages.
func loaded(tok *oauth2.Token, err error) string {
	var refused *dropboxsign.RefusedError
	var disconnected *dropboxsign.DisconnectedError
	switch {
	case errors.As(err, &disconnected):
		return "disconnected"
	case errors.As(err, &refused):
		return "refused"
	case errors.Is(err, dropboxsign.ErrNotFound):
		return "nothing"
	case err != nil:
		return "error: " + err.Error()
	}
	return "token " + tok.AccessToken
}

// Whatever Load says a key holds, in every shape, is what Save and
// MarkRefused compare with: Save(prev = the token Load returned) succeeds,
// Save(prev = nil) succeeds where Load found nothing or a refusal mark and
// nowhere else, a token Load did not return never matches, nothing matches
// a disconnection mark, and Replace repairs every shape.
func TestSaveComparesWhatLoadReadsInEveryShape(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx := ctxFor(t)
	for _, sealed := range []bool{false, true} {
		opts := redisstore.Options{Prefix: prefix()}
		if sealed {
			opts.Sealer = mustSealer(t, bytes.Repeat([]byte{3}, 32))
		}
		store, err := redisstore.New(c, opts)
		if err != nil {
			t.Fatal(err)
		}
		x := &oauth2.Token{AccessToken: "at-x", RefreshToken: "rt-x", Expiry: time.Now().Add(time.Hour).Round(0)}
		y := &oauth2.Token{AccessToken: "at-y", RefreshToken: "rt-y"}
		z := &oauth2.Token{AccessToken: "at-z", RefreshToken: "rt-z"}
		for i, sh := range shapes {
			t.Run(fmt.Sprintf("sealed=%v/%s", sealed, sh.name), func(t *testing.T) {
				key := fmt.Sprint("shape-", i)
				rk := opts.Prefix + "token:" + key
				fresh := func() {
					mustDo(c.Del(ctx, rk).Err())
					sh.make(ctx, c, store, key, rk, x, y)
				}
				expect := func(what string, want func(*oauth2.Token, error) bool) {
					t.Helper()
					if got, err := store.Load(ctx, key); !want(got, err) {
						t.Errorf("%s: Load says %s", what, loaded(got, err))
					}
				}
				holdsZ := func(tok *oauth2.Token, err error) bool { return err == nil && sameToken(tok, z) }
				fresh()
				got, err := store.Load(ctx, key)
				before := loaded(got, err)
				same := func(tok *oauth2.Token, err error) bool { return loaded(tok, err) == before }
				var refused *dropboxsign.RefusedError
				switch sh.loads {
				case "token":
					if err != nil || !sameToken(got, x) {
						t.Fatalf("Load says %s, want x", before)
					}
					if err := store.Save(ctx, key, got, z); err != nil {
						t.Errorf("Save(prev = what Load returned): %v", err)
					}
					expect("after Save(prev = what Load returned)", holdsZ)
					fresh()
					if err := store.Save(ctx, key, nil, z); !errors.Is(err, dropboxsign.ErrConflict) {
						t.Errorf("Save(prev = nil) over a token: %v, want ErrConflict", err)
					}
					if err := store.Save(ctx, key, y, z); !errors.Is(err, dropboxsign.ErrConflict) {
						t.Errorf("Save(prev = a token it does not hold): %v, want ErrConflict", err)
					}
					if err := store.MarkRefused(ctx, key, y); !errors.Is(err, dropboxsign.ErrConflict) {
						t.Errorf("MarkRefused(a token it does not hold): %v, want ErrConflict", err)
					}
					expect("after the conflicts", same)
					if err := store.MarkRefused(ctx, key, got); err != nil {
						t.Errorf("MarkRefused(what Load returned): %v", err)
					}
					expect("after MarkRefused(what Load returned)", func(_ *oauth2.Token, err error) bool { return errors.As(err, &refused) })
				case "nothing", "refused":
					if sh.loads == "nothing" && !errors.Is(err, dropboxsign.ErrNotFound) || sh.loads == "refused" && !errors.As(err, &refused) {
						t.Fatalf("Load says %s, want %s", before, sh.loads)
					}
					if err := store.Save(ctx, key, x, z); !errors.Is(err, dropboxsign.ErrConflict) {
						t.Errorf("Save(prev = a token) where Load finds %s: %v, want ErrConflict", sh.loads, err)
					}
					if err := store.MarkRefused(ctx, key, x); !errors.Is(err, dropboxsign.ErrConflict) {
						t.Errorf("MarkRefused where Load finds %s: %v, want ErrConflict", sh.loads, err)
					}
					expect("after the conflicts", same)
					if err := store.Save(ctx, key, nil, z); err != nil {
						t.Errorf("Save(prev = nil) where Load finds %s: %v", sh.loads, err)
					}
					expect("after Save(prev = nil)", holdsZ)
				case "disconnected":
					if !errors.Is(err, dropboxsign.ErrDisconnected) {
						t.Fatalf("Load says %s, want disconnected", before)
					}
					for _, prev := range []*oauth2.Token{nil, x, y} {
						if err := store.Save(ctx, key, prev, z); !errors.Is(err, dropboxsign.ErrConflict) {
							t.Errorf("Save(prev = %v) over a disconnection mark: %v, want ErrConflict", prev, err)
						}
						if prev != nil {
							if err := store.MarkRefused(ctx, key, prev); !errors.Is(err, dropboxsign.ErrConflict) {
								t.Errorf("MarkRefused(%v) over a disconnection mark: %v, want ErrConflict", prev, err)
							}
						}
					}
					expect("after the conflicts", same)
				case "error":
					if err == nil || errors.Is(err, dropboxsign.ErrNotFound) || errors.As(err, &refused) {
						t.Fatalf("Load says %s, want an error", before)
					}
					if sh.skippedAs != "" && !strings.Contains(err.Error(), "holds a "+sh.skippedAs) {
						t.Errorf("Load's error does not say what the key holds: %v", err)
					}
					for _, prev := range []*oauth2.Token{nil, x} {
						if err := store.Save(ctx, key, prev, z); err == nil {
							t.Errorf("Save(prev = %v) over a record Load cannot read succeeded", prev)
						}
					}
					if err := store.MarkRefused(ctx, key, x); err == nil {
						t.Errorf("MarkRefused over a record Load cannot read succeeded")
					}
					expect("after the failed writes", same)
				}
				fresh()
				if err := store.Replace(ctx, key, z); err != nil {
					t.Errorf("Replace: %v", err)
				}
				expect("after Replace", holdsZ)
			})
		}
	}
}

// consentCode walks the fake's consent page (its default callback answers
// with the code as JSON) and returns the code.
func consentCode(t *testing.T, fake *dropboxsigntest.Server, state string) string {
	t.Helper()
	resp, err := fake.Client().Get(fake.Config().AuthCodeURL(state))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cb struct{ Code, State string }
	if err := json.NewDecoder(resp.Body).Decode(&cb); err != nil || cb.Code == "" || cb.State != state {
		t.Fatalf("consent: %+v, %v", cb, err)
	}
	return cb.Code
}

// A new login repairs every shape: the store then holds the login's token,
// the one code exchange the fake saw for it.
func TestLoginRepairsEveryShape(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx := ctxFor(t)
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	p := prefix()
	store, err := redisstore.New(c, redisstore.Options{Prefix: p, Sealer: mustSealer(t, bytes.Repeat([]byte{4}, 32))})
	if err != nil {
		t.Fatal(err)
	}
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	defer accounts.Shutdown(context.Background())
	for i, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			key := fmt.Sprint("login-", i)
			rk := p + "token:" + key
			sh.make(ctx, c, store, key, rk, fake.IssueToken(), fake.IssueToken())
			code := consentCode(t, fake, "st")
			before := fake.Stats()
			tok, err := accounts.Login(ctx, key, code, "st")
			after := fake.Stats()
			if err != nil {
				t.Fatalf("Login over %s: %v", sh.name, err)
			}
			if n := after.Exchanges - before.Exchanges; n != 1 || after.TokenRequests-before.TokenRequests != 1 {
				t.Errorf("the fake saw %d exchanges, %d token requests; want 1, 1", n, after.TokenRequests-before.TokenRequests)
			}
			if got, err := store.Load(ctx, key); err != nil || !sameToken(got, tok) {
				t.Errorf("after Login, Load says %s; want the login's token %s", loaded(got, err), tok.AccessToken)
			}
		})
	}
}

// A refresh over a record whose fingerprint cannot be trusted stores its
// new token: the next replica reads it, not the spent one.
func TestARefreshOverAHandEditedRecordIsStored(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx := ctxFor(t)
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	p := prefix()
	store, err := redisstore.New(c, redisstore.Options{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	for i, sh := range shapes {
		if sh.loads != "token" {
			continue
		}
		t.Run(sh.name, func(t *testing.T) {
			key := fmt.Sprint("refresh-", i)
			x := fake.IssueToken()
			x.Expiry = time.Now().Add(-time.Minute) // due: the source refreshes at once
			sh.make(ctx, c, store, key, p+"token:"+key, x, fake.IssueToken())
			before := fake.Stats()
			ts := dropboxsign.NewTokenSource(ctx, fake.Config(), nil, dropboxsign.WithStore(store, key))
			tok, err := ts.TokenContext(ctx)
			after := fake.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if after.Refreshes-before.Refreshes != 1 || after.StaleRefreshTokens != before.StaleRefreshTokens {
				t.Errorf("the fake saw %d refreshes, %d stale refresh tokens; want 1, 0",
					after.Refreshes-before.Refreshes, after.StaleRefreshTokens-before.StaleRefreshTokens)
			}
			if got, err := store.Load(ctx, key); err != nil || !sameToken(got, tok) {
				t.Errorf("after the refresh, Load says %s; want the new token %s", loaded(got, err), tok.AccessToken)
			}
		})
	}
}

// skips records what Options.Skipped is told, safe for concurrent use.
type skips struct {
	mu   sync.Mutex
	seen map[string][]string // Redis key → the types reported, one per report
}

func (s *skips) record(redisKey, redisType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string][]string{}
	}
	s.seen[redisKey] = append(s.seen[redisKey], redisType)
}

func (s *skips) take() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.seen
	s.seen = nil
	return m
}

// listAll returns each key Keys yielded and how often, or the error that
// ended it.
func listAll[T any](seq iter.Seq2[T, error], name func(T) string) (map[string]int, error) {
	got := map[string]int{}
	for v, err := range seq {
		if err != nil {
			return got, err
		}
		got[name(v)]++
	}
	return got, nil
}

func keyName(k string) string                        { return k }
func refusedName(r *dropboxsign.RefusedError) string { return r.Key }
func disconnectedName(d *dropboxsign.DisconnectedError) string {
	return d.Key
}

// checkListing makes 500 accounts (one in ten refused, one in ten
// disconnected) and a key of every shape under the store's prefix, and
// lists them: every account once, every shape Load reads as a record once
// (in Refused only refusal marks, in Disconnected only disconnection
// marks), every other key reported once per listing and never listed.
func checkListing(t *testing.T, c redis.UniversalClient) {
	ctx := ctxFor(t)
	p := prefix()
	var sk skips
	store, err := redisstore.New(c, redisstore.Options{Prefix: p, Skipped: sk.record})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys, wantRefused, wantDisconnected := map[string]int{}, map[string]int{}, map[string]int{}
	for i := range 500 {
		key := fmt.Sprintf("acct-%03d", i)
		tok := &oauth2.Token{AccessToken: "at-" + key, RefreshToken: "rt-" + key}
		if err := store.Save(ctx, key, nil, tok); err != nil {
			t.Fatal(err)
		}
		wantKeys[key] = 1
		switch i % 10 {
		case 0:
			if err := store.MarkRefused(ctx, key, tok); err != nil {
				t.Fatal(err)
			}
			wantRefused[key] = 1
		case 5:
			if err := store.Disconnect(ctx, key); err != nil {
				t.Fatal(err)
			}
			wantDisconnected[key] = 1
		}
	}
	wantSkipped := map[string][]string{}
	x := &oauth2.Token{AccessToken: "at-x", RefreshToken: "rt-x"}
	y := &oauth2.Token{AccessToken: "at-y", RefreshToken: "rt-y"}
	for i, sh := range shapes {
		key := fmt.Sprint("shape-", i)
		rk := p + "token:" + key
		sh.make(ctx, c, store, key, rk, x, y)
		switch {
		case sh.listed && sh.loads == "refused":
			wantRefused[key] = 1
			wantKeys[key] = 1
		case sh.listed && sh.loads == "disconnected":
			wantDisconnected[key] = 1
			wantKeys[key] = 1
		case sh.listed:
			wantKeys[key] = 1
		default:
			wantSkipped[rk] = []string{sh.skippedAs}
		}
	}
	got, err := listAll(store.Keys(ctx), keyName)
	if err != nil {
		t.Errorf("Keys ended after %d keys: %v", len(got), err)
	}
	if !maps.Equal(got, wantKeys) {
		t.Errorf("Keys listed %d keys, want %d each once; differences: %v", len(got), len(wantKeys), diff(got, wantKeys))
	}
	if s := sk.take(); !maps.EqualFunc(s, wantSkipped, slices.Equal) {
		t.Errorf("Keys reported as skipped %v, want %v (each once)", s, wantSkipped)
	}
	refused, err := listAll(store.Refused(ctx), refusedName)
	if err != nil {
		t.Errorf("Refused ended after %d marks: %v", len(refused), err)
	}
	if !maps.Equal(refused, wantRefused) {
		t.Errorf("Refused listed %d marks, want %d each once; differences: %v", len(refused), len(wantRefused), diff(refused, wantRefused))
	}
	if s := sk.take(); !maps.EqualFunc(s, wantSkipped, slices.Equal) {
		t.Errorf("Refused reported as skipped %v, want %v (each once)", s, wantSkipped)
	}
	disconnected, err := listAll(store.Disconnected(ctx), disconnectedName)
	if err != nil {
		t.Errorf("Disconnected ended after %d marks: %v", len(disconnected), err)
	}
	if !maps.Equal(disconnected, wantDisconnected) {
		t.Errorf("Disconnected listed %d marks, want %d each once; differences: %v", len(disconnected), len(wantDisconnected), diff(disconnected, wantDisconnected))
	}
	if s := sk.take(); !maps.EqualFunc(s, wantSkipped, slices.Equal) {
		t.Errorf("Disconnected reported as skipped %v, want %v (each once)", s, wantSkipped)
	}
}

// diff describes the keys whose counts differ (got's count, then want's):
// the first ten, sorted, and how many there are.
func diff(got, want map[string]int) string {
	var keys []string
	for k := range maps.Keys(got) {
		if got[k] != want[k] {
			keys = append(keys, k)
		}
	}
	for k := range maps.Keys(want) {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d keys", len(keys))
	for i, k := range keys {
		if i == 10 {
			b.WriteString(" ...")
			break
		}
		fmt.Fprintf(&b, " %s: %d, want %d;", k, got[k], want[k])
	}
	return b.String()
}

// Keys of other types, or hashes that hold no record, under the prefix are
// skipped and reported; the listing goes on to every account.
func TestListingSkipsWhatIsNoRecordAndGoesOn(t *testing.T) {
	r := startRedis(t)
	checkListing(t, r.Client(t))
}

// scanCalls returns how many SCAN commands node has run.
func scanCalls(ctx context.Context, t *testing.T, node *redis.Client) int {
	info, err := node.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`cmdstat_scan:calls=(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// keyspaceTable returns MEMORY STATS' keys.count and
// overhead.hashtable.main for db 0: the keyspace table's entries and
// buckets (of both tables while it is being rehashed).
func keyspaceTable(ctx context.Context, t *testing.T, node *redis.Client) (keys, overhead int64) {
	res, err := node.Do(ctx, "MEMORY", "STATS").Result()
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(v any, name string) any {
		switch m := v.(type) {
		case map[any]any:
			return m[name]
		case []any:
			for i := 0; i+1 < len(m); i += 2 {
				if m[i] == name {
					return m[i+1]
				}
			}
		}
		return nil
	}
	keys, ok1 := lookup(res, "keys.count").(int64)
	overhead, ok2 := lookup(lookup(res, "db.0"), "overhead.hashtable.main").(int64)
	if !ok1 || !ok2 {
		t.Fatalf("MEMORY STATS has no keys.count or db.0 overhead.hashtable.main: %v", res)
	}
	return keys, overhead
}

// checkNoRepeats lists the store's accounts while another application
// deletes many keys of its own from the same Redis, which makes Redis
// shrink its keyspace table between two of the listing's SCAN calls: SCAN
// then returns again some keys it had returned. A raw SCAN that makes
// exactly the calls the listing has made (same pattern and COUNT, counted
// with INFO commandstats) before the shrink and continues after it, shows
// which rounds made SCAN repeat a key: at least one must have (else the test
// proves nothing), and in none of them may the listing yield a key twice.
// nodes are the masters; writer writes the other application's keys.
//
// The more accounts a bucket of the shrunk table holds, the likelier a
// round repeats some: accounts (the table's only keys: the nodes are
// flushed first) should fill each master's table of a power of two.
func checkNoRepeats(t *testing.T, writer redis.UniversalClient, nodes []*redis.Client, accounts, foreign int) {
	// Bounded by its count of rounds, not by time: a busy machine makes
	// each round slower, never the verdict different.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, n := range nodes {
		if err := n.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	p := prefix()
	store, err := redisstore.New(writer, redisstore.Options{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	for i := range accounts {
		key := fmt.Sprintf("acct-%04d", i)
		if err := store.Save(ctx, key, nil, &oauth2.Token{AccessToken: "at-" + key, RefreshToken: "rt-" + key}); err != nil {
			t.Fatal(err)
		}
	}
	type table struct{ keys, overhead int64 }
	baseline := make([]table, len(nodes))
	for i, n := range nodes {
		baseline[i].keys, baseline[i].overhead = keyspaceTable(ctx, t, n)
	}
	const maxRounds, enough = 40, 3
	repeated := 0 // rounds in which the raw SCAN returned a key twice
	round := 0
	for round = 1; round <= maxRounds && repeated < enough; round++ {
		// Names of their own each round: with the same ones, each round
		// would lay the table out as the one before, and its SCAN pages
		// would end where the last round's did.
		otherKeys := make([]string, foreign)
		for i := range otherKeys {
			otherKeys[i] = fmt.Sprint("otherapp:", round, ":", i)
		}
		if _, err := writer.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for _, k := range otherKeys {
				pl.Set(ctx, k, "v", 0)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		calls := make([]int, len(nodes))
		for i, n := range nodes {
			calls[i] = scanCalls(ctx, t, n)
		}
		next, stop := iter.Pull2(store.Keys(ctx))
		yielded := map[string]int{}
		k, err, ok := next()
		if !ok || err != nil {
			stop()
			t.Fatalf("Keys: %v", err)
		}
		yielded[k]++
		// The node the listing is on, and how many SCAN calls it made.
		node, made := -1, 0
		for i, n := range nodes {
			if d := scanCalls(ctx, t, n) - calls[i]; d > 0 {
				if node >= 0 {
					node = -2 // it went past a node already: no mirror
				} else {
					node, made = i, d
				}
			}
		}
		if node < 0 {
			stop()
			t.Fatalf("round %d: cannot tell where the listing is", round)
		}
		pattern := p + "token:*"
		raw := map[string]int{}
		var cursor uint64
		for range made {
			var keys []string
			if keys, cursor, err = nodes[node].Scan(ctx, cursor, pattern, 1000).Result(); err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				raw[k]++
			}
		}
		// The other application deletes its keys; Redis shrinks its table.
		if _, err := writer.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for _, k := range otherKeys {
				pl.Del(ctx, k)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// With the same keys as before the round, the overhead tells the
		// buckets apart: the table at most one doubling above the smallest
		// that holds them (cron may shrink it before the last deletes) is
		// at most 3 buckets a key above the table then.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) { // polling Redis's cron, which shrinks it
			b := baseline[node]
			keys, overhead := keyspaceTable(ctx, t, nodes[node])
			if keys == b.keys && overhead-b.overhead <= 3*8*keys {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: Redis did not shrink its table within 10 s: %d keys, %d bytes; %d and %d before", round, keys, overhead, b.keys, b.overhead)
			}
		}
		for cursor != 0 {
			var keys []string
			if keys, cursor, err = nodes[node].Scan(ctx, cursor, pattern, 1000).Result(); err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				raw[k]++
			}
		}
		for {
			k, err, ok := next()
			if !ok {
				break
			}
			if err != nil {
				t.Fatalf("Keys: %v", err)
			}
			yielded[k]++
		}
		stop()
		rawTwice := 0
		for _, n := range raw {
			if n > 1 {
				rawTwice++
			}
		}
		if rawTwice > 0 {
			repeated++
		}
		var twice []string
		for k, n := range yielded {
			if n != 1 {
				twice = append(twice, k)
			}
		}
		if len(twice) > 0 || len(yielded) != accounts {
			t.Fatalf("round %d: Keys listed %d of %d accounts, %v more than once (SCAN itself returned %d keys twice)",
				round, len(yielded), accounts, twice, rawTwice)
		}
	}
	if repeated == 0 {
		t.Fatalf("in %d rounds SCAN never returned a key twice: the test did not reproduce a table shrinking mid-listing", round-1)
	}
	t.Logf("%d rounds, %d of them with keys SCAN returned twice; the listing yielded each account once in each", round-1, repeated)
}

func TestListingYieldsEachKeyOnceWhileAnotherAppDeletesItsKeys(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	// 4,000 keys of its own grow the table to 8,192 buckets; deleted, they
	// leave 512 accounts in it, below the 10% fill at which Redis shrinks
	// it, to 512 buckets.
	checkNoRepeats(t, c, []*redis.Client{c}, 512, 4000)
}

// The same over a Redis Cluster's masters, and a key in the middle of a
// slot migration (on the importing node, which answers MOVED for it).
func TestClusterListing(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 0)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), MaxRedirects: 16,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	var nodes []*redis.Client
	for _, s := range cl.Servers {
		n := redis.NewClient(&redis.Options{Addr: s.Addr})
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	t.Run("SkipsWhatIsNoRecordAndGoesOn", func(t *testing.T) { checkListing(t, client) })
	// About 467 accounts a master, seldom more than 512; 4,000 other keys a
	// master grow each table to 8,192 buckets.
	t.Run("YieldsEachKeyOnceWhileAnotherAppDeletesItsKeys", func(t *testing.T) { checkNoRepeats(t, client, nodes, 1400, 12000) })
	t.Run("AKeyBeingMigrated", func(t *testing.T) {
		ctx := ctxFor(t)
		p := prefix()
		store, err := redisstore.New(client, redisstore.Options{Prefix: p})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int{}
		for i := range 30 {
			key := fmt.Sprint("acct-", i)
			if err := store.Save(ctx, key, nil, &oauth2.Token{AccessToken: "at-" + key, RefreshToken: "rt-" + key}); err != nil {
				t.Fatal(err)
			}
			want[key] = 1
		}
		rk := p + "token:acct-0"
		src, _ := cl.MasterOf(rk)
		var dst, third *redistest.Server
		for _, s := range cl.Servers {
			if s != src && dst == nil {
				dst = s
			} else if s != src {
				third = s
			}
		}
		cmd := func(s *redistest.Server, args ...string) string {
			out, err := redistest.Cmd(s.Addr, args...)
			if err != nil || strings.HasPrefix(out, "ERR") {
				t.Fatalf("%v on %s: %q, %v", args, s.Addr, out, err)
			}
			return out
		}
		slot := cmd(src, "cluster", "keyslot", rk)
		srcID, dstID := cmd(src, "cluster", "myid"), cmd(dst, "cluster", "myid")
		cmd(dst, "cluster", "setslot", slot, "importing", srcID)
		cmd(src, "cluster", "setslot", slot, "migrating", dstID)
		host, port, _ := strings.Cut(dst.Addr, ":")
		if out := cmd(src, "migrate", host, port, "", "0", "5000", "keys", rk); out != "OK" {
			t.Fatalf("MIGRATE: %q", out)
		}
		defer func() { // the slot's migration ends, as redis-cli --cluster reshard would end it
			for _, s := range []*redistest.Server{dst, src, third} {
				cmd(s, "cluster", "setslot", slot, "node", dstID)
			}
		}()
		if tok, err := store.Load(ctx, "acct-0"); err != nil || tok.AccessToken != "at-acct-0" {
			t.Fatalf("mid-migration, Load says %s", loaded(tok, err))
		}
		got, err := listAll(store.Keys(ctx), keyName)
		if err != nil {
			t.Errorf("Keys ended after %d keys: %v", len(got), err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("mid-migration, Keys listed %v", diff(got, want))
		}
	})
}

// Without Options.Skipped, each skipped key is a Warn line on slog's
// default logger, naming the key and its type.
func TestSkippedKeysAreLoggedByDefault(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx := ctxFor(t)
	p := prefix()
	store, err := redisstore.New(c, redisstore.Options{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, "alice", nil, &oauth2.Token{AccessToken: "at", RefreshToken: "rt"}); err != nil {
		t.Fatal(err)
	}
	c.Set(ctx, p+"token:other", "v", 0)
	var buf bytes.Buffer
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	got, err := listAll(store.Keys(ctx), keyName)
	if err != nil || !maps.Equal(got, map[string]int{"alice": 1}) {
		t.Errorf("Keys: %v, %v", got, err)
	}
	if lines := strings.Split(strings.TrimSpace(buf.String()), "\n"); len(lines) != 1 ||
		!strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "key="+p+"token:other") || !strings.Contains(lines[0], "type=string") {
		t.Errorf("logged %q; want one Warn line naming the key and its type", buf.String())
	}
}
