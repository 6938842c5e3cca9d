package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"
)

// Keys whose bytewise order is not a locale's: capitals before small
// letters, '_' between them, non-ASCII after all.
var sealKeys = []string{"a", "B", "_x", "é", "e", "Z", "ab", "A", "zz", "ñ", "1", "~", "b"}

func sealToken(key string) *oauth2.Token {
	return &oauth2.Token{AccessToken: "at-" + key, RefreshToken: "rt-" + key, TokenType: "Bearer", Expiry: time.Now().Add(time.Hour).Round(0)}
}

func sealKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// sealEnv is one backing store, opened under any Sealer.
type sealEnv struct {
	open func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.SealInspector
	// changes counts the entries of the change log that watchers follow.
	changes func(t *testing.T) int64
	// fingerprint is the fingerprint the store compares in Save, as stored.
	fingerprint func(t *testing.T, key string) string
	// setBlob stores blob as key's token, raw.
	setBlob func(t *testing.T, key string, blob []byte)
}

// inspectAll pages through InspectSeals with limit, checking each page.
func inspectAll(t *testing.T, s dropboxsign.SealInspector, limit int) []dropboxsign.StoredSeal {
	t.Helper()
	var all []dropboxsign.StoredSeal
	after := ""
	for range 1000 {
		page, err := s.InspectSeals(ctxFor(t), after, limit)
		if err != nil {
			t.Fatalf("InspectSeals(%q, %d): %v", after, limit, err)
		}
		if len(page) == 0 {
			return all
		}
		if len(page) > limit {
			t.Fatalf("InspectSeals(%q, %d) returned %d", after, limit, len(page))
		}
		for _, p := range page {
			if p.Key <= after {
				t.Fatalf("InspectSeals(%q): key %q out of bytewise order", after, p.Key)
			}
			after = p.Key
		}
		all = append(all, page...)
	}
	t.Fatal("InspectSeals never ended")
	return nil
}

func keysOf(seals []dropboxsign.StoredSeal) []string {
	var keys []string
	for _, s := range seals {
		keys = append(keys, s.Key)
	}
	return keys
}

func sorted(keys []string) []string {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return keys
}

// runSealTests runs the census and re-seal tests on stores of env.
func runSealTests(t *testing.T, newEnv func(t *testing.T) sealEnv) {
	t.Run("Rotation", func(t *testing.T) { testSealRotation(t, newEnv(t)) })
	t.Run("Plain", func(t *testing.T) { testSealPlain(t, newEnv(t)) })
	t.Run("Paging", func(t *testing.T) { testSealPaging(t, newEnv(t)) })
}

// testSealRotation: tokens sealed under K1; under [K2] alone the census
// counts them unopenable and Load names K1 (Misconfigured); a re-seal with
// [K2, K1] seals them under K2, by compare-and-swap saves that keep their
// fingerprints and log no change; then [K2] alone reads every token.
func testSealRotation(t *testing.T, env sealEnv) {
	ctx := ctxFor(t)
	k1, k2, k3 := sealKey(1), sealKey(2), sealKey(3)
	id1, id2 := dropboxsign.KeyID(k1), dropboxsign.KeyID(k2)
	s1 := env.open(t, mustSealer(t, k1))
	for _, k := range sealKeys {
		if err := s1.Save(ctx, k, nil, sealToken(k)); err != nil {
			t.Fatal(err)
		}
	}
	// Marks, which hold no token: left out.
	if err := s1.Save(ctx, "refused", nil, sealToken("refused")); err != nil {
		t.Fatal(err)
	}
	if err := s1.MarkRefused(ctx, "refused", sealToken("refused")); err != nil {
		t.Fatal(err)
	}
	if err := s1.Disconnect(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	fps := map[string]string{}
	for _, k := range sealKeys {
		fps[k] = env.fingerprint(t, k)
	}
	changes := env.changes(t)

	s21 := env.open(t, mustSealer(t, k2, k1))
	seals := inspectAll(t, s21, 100)
	if got, want := keysOf(seals), sorted(sealKeys); !slices.Equal(got, want) {
		t.Fatalf("InspectSeals listed %q, want %q", got, want)
	}
	for _, s := range seals {
		if s.Seal.KeyID != id1 || s.Seal.Current || s.Seal.Plain || s.Seal.Err != nil {
			t.Errorf("%q under [K2, K1]: %+v, want KeyID %s, not current, opens", s.Key, s.Seal, id1)
		}
	}

	// Before the re-seal: [K2] alone opens none of them; [K3] neither.
	s2 := env.open(t, mustSealer(t, k2))
	r, err := dropboxsign.Census(ctx, s2)
	if err != nil {
		t.Fatal(err)
	}
	n := len(sealKeys)
	if r.Tokens != n || r.ByKey[id1] != n || r.Current != 0 || r.Unopenable[id1] != n || r.Plain != 0 {
		t.Errorf("census under [K2] before the re-seal: %+v, want %d tokens under K1, all unopenable", r, n)
	}
	for _, sk := range []struct {
		name string
		s    dropboxsign.SealInspector
	}{{"[K2]", s2}, {"[K3]", env.open(t, mustSealer(t, k3))}} {
		_, err := sk.s.Load(ctx, sealKeys[0])
		var mk *dropboxsign.MissingKeyError
		if !errors.As(err, &mk) || mk.KeyID != id1 || dropboxsign.Classify(err) != dropboxsign.Misconfigured {
			t.Errorf("Load under %s: %v, want a *MissingKeyError naming %s, Misconfigured", sk.name, err, id1)
		}
	}

	var reports int
	p, err := dropboxsign.Reseal(ctx, s21, dropboxsign.ResealOptions{PerSecond: 1e6, Progress: func(dropboxsign.ResealProgress) { reports++ }})
	if err != nil {
		t.Fatal(err)
	}
	if p.Visited != n || p.Resealed != n || p.Changed != 0 || p.Unopenable != 0 || p.Last != sorted(sealKeys)[n-1] || reports == 0 {
		t.Errorf("Reseal: %+v (%d reports), want %d visited and resealed", p, reports, n)
	}
	// The compare-and-swap compared token material: the fingerprints are
	// the same; and the re-seal told no watcher of a change.
	for _, k := range sealKeys {
		if fp := env.fingerprint(t, k); fp != fps[k] || fp == "" {
			t.Errorf("%q: fingerprint %q after the re-seal, was %q", k, fp, fps[k])
		}
	}
	if c := env.changes(t); c != changes {
		t.Errorf("the change log has %d entries after the re-seal, had %d: a re-seal would make watchers reload", c, changes)
	}

	r, err = dropboxsign.Census(ctx, s2)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens != n || r.ByKey[id2] != n || r.Current != n || len(r.Unopenable) != 0 {
		t.Errorf("census under [K2] after the re-seal: %+v, want %d tokens under K2, all current and openable", r, n)
	}
	for _, k := range sealKeys {
		tok, err := s2.Load(ctx, k)
		if err != nil || tok.AccessToken != "at-"+k || tok.RefreshToken != "rt-"+k {
			t.Errorf("Load(%q) under [K2] after the re-seal: %v, %v", k, tok, err)
		}
	}
	// A second re-seal has nothing to do.
	if p, err := dropboxsign.Reseal(ctx, s21, dropboxsign.ResealOptions{PerSecond: 1e6}); err != nil || p.Resealed != 0 || p.Visited != n {
		t.Errorf("second Reseal: %+v, %v", p, err)
	}
	if _, err := env.open(t, mustSealer(t, k3)).Load(ctx, sealKeys[0]); err == nil {
		t.Error("Load under [K3] after the re-seal succeeded")
	} else if mk := (*dropboxsign.MissingKeyError)(nil); !errors.As(err, &mk) || mk.KeyID != id2 {
		t.Errorf("Load under [K3] after the re-seal: %v, want a *MissingKeyError naming %s", err, id2)
	}
}

// testSealPlain: tokens in plain JSON are Plain (current for a store
// without keys); a value that is no token reports Err and the listing goes
// on; a re-seal with a key seals the tokens and leaves the rest.
func testSealPlain(t *testing.T, env sealEnv) {
	ctx := ctxFor(t)
	plain := env.open(t, nil)
	for _, k := range sealKeys {
		if err := plain.Save(ctx, k, nil, sealToken(k)); err != nil {
			t.Fatal(err)
		}
	}
	env.setBlob(t, "junk", []byte("not a token"))
	n := len(sealKeys)
	seals := inspectAll(t, plain, 4)
	if got, want := keysOf(seals), sorted(append(slices.Clone(sealKeys), "junk")); !slices.Equal(got, want) {
		t.Fatalf("InspectSeals listed %q, want %q", got, want)
	}
	for _, s := range seals {
		if !s.Seal.Plain || s.Seal.Current != (s.Key != "junk") || s.Seal.KeyID != "" || (s.Seal.Err != nil) != (s.Key == "junk") { // a token that does not open is never Current
			t.Errorf("%q without keys: %+v", s.Key, s.Seal)
		}
	}
	k1 := sealKey(1)
	sealed := env.open(t, mustSealer(t, k1))
	r, err := dropboxsign.Census(ctx, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens != n+1 || r.Plain != n+1 || r.Current != 0 || r.Unopenable[""] != 1 || len(r.ByKey) != 0 {
		t.Errorf("census of plain tokens under [K1]: %+v", r)
	}
	p, err := dropboxsign.Reseal(ctx, sealed, dropboxsign.ResealOptions{PerSecond: 1e6})
	if err != nil || p.Resealed != n || p.Unopenable != 1 || p.Visited != n+1 {
		t.Errorf("Reseal of plain tokens: %+v, %v", p, err)
	}
	r, err = dropboxsign.Census(ctx, env.open(t, mustSealer(t, k1).RefusePlaintext()))
	if err != nil {
		t.Fatal(err)
	}
	if id := dropboxsign.KeyID(k1); r.Tokens != n+1 || r.ByKey[id] != n || r.Current != n || r.Plain != 1 || r.Unopenable[""] != 1 || len(r.Unopenable) != 1 {
		t.Errorf("census after sealing plain tokens: %+v", r)
	}
}

// testSealPaging: small pages list every token once, in bytewise order
// (not a locale's), leaving marks out, however many marks lie between.
func testSealPaging(t *testing.T, env sealEnv) {
	ctx := ctxFor(t)
	s := env.open(t, mustSealer(t, sealKey(1)))
	var want []string
	for i, k := range sealKeys {
		for j, kk := range []string{k, k + "-mark1", k + "-mark2"} {
			if err := s.Save(ctx, kk, nil, sealToken(kk)); err != nil {
				t.Fatal(err)
			}
			switch {
			case j == 0:
				want = append(want, kk)
			case (i+j)%2 == 0:
				if err := s.Disconnect(ctx, kk); err != nil {
					t.Fatal(err)
				}
			default:
				if err := s.MarkRefused(ctx, kk, sealToken(kk)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	slices.Sort(want)
	for _, limit := range []int{1, 2, 3, 5, 100} {
		if got := keysOf(inspectAll(t, s, limit)); !slices.Equal(got, want) {
			t.Errorf("limit %d: listed %q, want %q", limit, got, want)
		}
	}
	if _, err := s.InspectSeals(ctx, "", 0); err == nil {
		t.Error("InspectSeals with limit 0: no error")
	}
}

func mustSealer(t *testing.T, keys ...[]byte) *dropboxsign.Sealer {
	s, err := dropboxsign.NewSealer(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pgSealEnv is a schema of its own with the store's tables; with a
// collation, the tokens table's account column is in that collation.
func pgSealEnv(t *testing.T, collation string) (sealEnv, *pgxpool.Pool, string) {
	srv, pool, opts := setUp(t)
	tokens := pgx.Identifier{opts.Schema, "dropboxsign_tokens"}.Sanitize()
	changes := pgx.Identifier{opts.Schema, "dropboxsign_changes"}.Sanitize()
	if collation != "" {
		srv.MustQuery(t, fmt.Sprintf(`CREATE COLLATION %s.locale (provider = icu, locale = '%s'); ALTER TABLE %s ALTER COLUMN account TYPE text COLLATE %s.locale`,
			opts.Schema, collation, tokens, opts.Schema))
	}
	return sealEnv{
		open: func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.SealInspector {
			o := opts
			o.Sealer = s
			return newStore(t, pool, o)
		},
		changes: func(t *testing.T) int64 {
			var n int64
			if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM `+changes).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		},
		fingerprint: func(t *testing.T, key string) string {
			var fp string
			if err := pool.QueryRow(context.Background(), `SELECT fingerprint FROM `+tokens+` WHERE account = $1`, key).Scan(&fp); err != nil {
				t.Fatal(err)
			}
			return fp
		},
		setBlob: func(t *testing.T, key string, blob []byte) {
			if _, err := pool.Exec(context.Background(), `INSERT INTO `+tokens+` (account, fingerprint, token) VALUES ($1, 'x', $2)
ON CONFLICT (account) DO UPDATE SET fingerprint = 'x', token = $2, refused_at = NULL, disconnected_at = NULL`, key, blob); err != nil {
				t.Fatal(err)
			}
		},
	}, pool, tokens
}

// pgSealers is storetest's WithSealers: a schema of its own for each test,
// opened under any Sealer.
func pgSealers() func(*testing.T, *dropboxsign.Sealer) dropboxsign.Store {
	type backend struct {
		pool *pgxpool.Pool
		opts pgstore.Options
	}
	var mu sync.Mutex
	backends := map[*testing.T]backend{}
	return func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.Store {
		mu.Lock()
		defer mu.Unlock()
		b, ok := backends[t]
		if !ok {
			_, pool, opts := setUp(t)
			b = backend{pool, opts}
			backends[t] = b
		}
		o := b.opts
		o.Sealer = s
		return newStore(t, b.pool, o)
	}
}

func TestSeals(t *testing.T) {
	runSealTests(t, func(t *testing.T) sealEnv { env, _, _ := pgSealEnv(t, ""); return env })
	// The account column in a locale's collation, whose order is not
	// bytewise: InspectSeals lists in bytewise order all the same.
	t.Run("LocaleCollation", func(t *testing.T) {
		runSealTests(t, func(t *testing.T) sealEnv { env, _, _ := pgSealEnv(t, "en-US"); return env })
		// The collation does order otherwise, so that the tests above
		// would see it.
		env, pool, tokens := pgSealEnv(t, "en-US")
		s := env.open(t, nil)
		for _, k := range sealKeys {
			if err := s.Save(ctxFor(t), k, nil, sealToken(k)); err != nil {
				t.Fatal(err)
			}
		}
		rows, _ := pool.Query(ctxFor(t), `SELECT account FROM `+tokens+` ORDER BY account`)
		byLocale, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(byLocale, sorted(sealKeys)) {
			t.Fatalf("the column's collation orders bytewise: %q", byLocale)
		}
		if got := keysOf(inspectAll(t, s, 2)); !slices.Equal(got, sorted(sealKeys)) {
			t.Errorf("InspectSeals listed %q, want %q (the collation's order: %q)", got, sorted(sealKeys), byLocale)
		}
	})
	// A row whose fingerprint is not its token's, which Load refuses, is
	// reported with an error, and the listing goes on.
	t.Run("FingerprintDisagrees", func(t *testing.T) {
		ctx := ctxFor(t)
		env, pool, tokens := pgSealEnv(t, "")
		s := env.open(t, mustSealer(t, sealKey(1)))
		for _, k := range []string{"a", "b", "c"} {
			if err := s.Save(ctx, k, nil, sealToken(k)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pool.Exec(ctx, `UPDATE `+tokens+` SET fingerprint = 'edited' WHERE account = 'b'`); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(ctx, "b"); err == nil {
			t.Fatal("Load of the edited row succeeded")
		}
		seals := inspectAll(t, s, 10)
		if !slices.Equal(keysOf(seals), []string{"a", "b", "c"}) {
			t.Fatalf("listed %q", keysOf(seals))
		}
		for _, st := range seals {
			if (st.Seal.Err != nil) != (st.Key == "b") || st.Seal.Err != nil && !strings.Contains(st.Seal.Err.Error(), "fingerprint") {
				t.Errorf("%q: %+v", st.Key, st.Seal)
			}
		}
		r, err := dropboxsign.Census(ctx, s)
		if err != nil || r.Tokens != 3 || r.Unopenable[dropboxsign.KeyID(sealKey(1))] != 1 {
			t.Errorf("census: %+v, %v", r, err)
		}
	})
}
