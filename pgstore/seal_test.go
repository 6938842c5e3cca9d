package pgstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/storetest"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The shared census and re-seal checks, and their helpers, are storetest's.
var (
	sealKeys     = storetest.SealKeys
	sealToken    = storetest.SealToken
	sealKey      = storetest.SealKey
	inspectAll   = storetest.InspectAll
	keysOf       = storetest.KeysOf
	sorted       = storetest.Sorted
	mustSealer   = storetest.MustSealer
	runSealTests = storetest.RunSealEnv
)

type sealEnv = storetest.SealEnv

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
		Open: func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.SealInspector {
			o := opts
			o.Sealer = s
			return newStore(t, pool, o)
		},
		Changes: func(t *testing.T) int64 {
			var n int64
			if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM `+changes).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		},
		Fingerprint: func(t *testing.T, key string) string {
			var fp string
			if err := pool.QueryRow(context.Background(), `SELECT fingerprint FROM `+tokens+` WHERE account = $1`, key).Scan(&fp); err != nil {
				t.Fatal(err)
			}
			return fp
		},
		SetBlob: func(t *testing.T, key string, blob []byte) {
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
		s := env.Open(t, nil)
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
		s := env.Open(t, mustSealer(t, sealKey(1)))
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
