package pgstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
	"github.com/dropboxsign-go/dropboxsign/internal/pgtest"
	"github.com/dropboxsign-go/dropboxsign/internal/storetest"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"
)

func TestMain(m *testing.M) {
	fleettest.Main(func() (dropboxsign.Store, error) {
		pool, err := pgxpool.New(context.Background(), os.Getenv("FLEET_PG_DSN"))
		if err != nil {
			return nil, err
		}
		ttl, _ := time.ParseDuration(os.Getenv("FLEET_PG_LEASE"))
		return pgstore.New(pool, pgstore.Options{Schema: os.Getenv("FLEET_PG_SCHEMA"), LeaseTTL: ttl})
	})
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var schemas atomic.Int64

// setUp gives the test a schema of its own on the shared server, with the
// store's tables, and a pool (with extra connection parameters, if any).
func setUp(t *testing.T, params ...string) (*pgtest.Server, *pgxpool.Pool, pgstore.Options) {
	t.Helper()
	srv := pgtest.Shared(t)
	opts := pgstore.Options{Schema: fmt.Sprintf("test_%d", schemas.Add(1))}
	srv.MustQuery(t, "CREATE SCHEMA "+opts.Schema)
	dsn := srv.DSN()
	for _, p := range params {
		dsn += "&" + p
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pgstore.CreateTables(ctxFor(t), pool, opts); err != nil {
		t.Fatal(err)
	}
	return srv, pool, opts
}

func newStore(t *testing.T, pool *pgxpool.Pool, opts pgstore.Options) *pgstore.Store {
	t.Helper()
	s, err := pgstore.New(pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sealer(t *testing.T) *dropboxsign.Sealer {
	s, err := dropboxsign.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			var stores conformanceStores
			storetest.Run(t, func(t *testing.T) dropboxsign.Store {
				srv, pool, opts := setUp(t)
				if sealed {
					opts.Sealer = sealer(t)
				}
				return stores.add(t, srv.DSN(), pool, opts)
			}, append(stores.options(), storetest.WithSealers(pgSealers()))...)
		})
	}
}

// conformanceStores keeps what storetest's options need to know of the
// stores it was given.
type conformanceStores struct {
	mu     sync.Mutex
	stores map[dropboxsign.Store]conformanceStore
}

type conformanceStore struct {
	dsn  string // for a peer's pool
	pool *pgxpool.Pool
	opts pgstore.Options
}

func (c *conformanceStores) add(t *testing.T, dsn string, pool *pgxpool.Pool, opts pgstore.Options) *pgstore.Store {
	s := newStore(t, pool, opts)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stores == nil {
		c.stores = map[dropboxsign.Store]conformanceStore{}
	}
	c.stores[s] = conformanceStore{dsn, pool, opts}
	return s
}

func (c *conformanceStores) get(s dropboxsign.Store) conformanceStore {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stores[s]
}

// options are storetest's: the raw row (every column of key's row in the
// tokens table, and its rows in the log of changes), and a peer (a store
// on a pool of its own, as another process has).
func (c *conformanceStores) options() []storetest.Option {
	return []storetest.Option{
		storetest.WithRaw(func(s dropboxsign.Store, key string) []byte {
			cs := c.get(s)
			ctx := context.Background()
			var raw []byte
			var fp *string
			var blob []byte
			var times string
			err := cs.pool.QueryRow(ctx, `SELECT fingerprint, token, concat_ws(' ', refused_at, disconnected_at, updated_at) FROM `+tableOf(cs.opts, "tokens")+` WHERE account = $1`, key).
				Scan(&fp, &blob, &times)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err != nil {
				panic(err) // a test's query failing: not the store's fault
			}
			raw = append(raw, key...)
			if fp != nil {
				raw = append(raw, *fp...)
			}
			raw = append(raw, blob...)
			raw = append(raw, times...)
			rows, err := cs.pool.Query(ctx, `SELECT concat_ws(' ', id, account, xid, at) FROM `+tableOf(cs.opts, "changes")+` WHERE account = $1`, key)
			if err != nil {
				panic(err)
			}
			logged, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				panic(err)
			}
			for _, l := range logged {
				raw = append(raw, l...)
			}
			return raw
		}),
		storetest.WithPeer(func(t *testing.T, s dropboxsign.Store) dropboxsign.Store {
			cs := c.get(s)
			pool, err := pgxpool.New(context.Background(), cs.dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			return c.add(t, cs.dsn, pool, cs.opts)
		}),
	}
}

// The tables hold no token in the clear when sealed, and the DDL works in
// a schema and with a prefix that need quoting, more than once.
func TestTablesAndSealing(t *testing.T) {
	srv, pool, opts := setUp(t)
	ctx := ctxFor(t)
	odd := pgstore.Options{Schema: opts.Schema, TablePrefix: `my "app"-`, Sealer: sealer(t)}
	for range 2 {
		if err := pgstore.CreateTables(ctx, pool, odd); err != nil {
			t.Fatalf("CreateTables, twice, with an odd prefix: %v", err)
		}
	}
	s := newStore(t, pool, odd)
	tok := &oauth2.Token{AccessToken: "access-secret-1234", RefreshToken: "refresh-secret-5678", Expiry: time.Now().Add(time.Hour)}
	if err := s.Save(ctx, "alice", nil, tok); err != nil {
		t.Fatal(err)
	}
	dump := srv.MustQuery(t, fmt.Sprintf(`SELECT account, fingerprint, encode(token, 'escape') FROM %s."my ""app""-tokens"`, opts.Schema))
	if !strings.Contains(dump, "alice") || strings.Contains(dump, "secret") {
		t.Errorf("the table holds %q: want alice's row, and no token in the clear", dump)
	}
	if got, err := s.Load(ctx, "alice"); err != nil || got.AccessToken != tok.AccessToken {
		t.Errorf("Load: %v, %v", got, err)
	}
	// A plain token from before encryption was turned on still loads.
	plain := newStore(t, pool, pgstore.Options{Schema: opts.Schema, TablePrefix: `my "app"-`})
	plain.Save(ctx, "bob", nil, tok)
	if got, err := s.Load(ctx, "bob"); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Errorf("a plain token with a sealer: %v, %v", got, err)
	}
	if _, err := pgstore.New(nil, opts); err == nil {
		t.Error("a nil pool was accepted")
	}
	if _, err := pgstore.New(pool, pgstore.Options{LeaseTTL: time.Millisecond}); err == nil {
		t.Error("a 1 ms lease was accepted")
	}

	// PostgreSQL truncates a name past 63 bytes without an error: with a
	// long enough prefix the tokens and locks tables would be one. Such a
	// prefix is refused; the longest accepted one works.
	long := pgstore.Options{Schema: opts.Schema, TablePrefix: strings.Repeat("p", 63)}
	if err := pgstore.CreateTables(ctx, pool, long); err == nil || !strings.Contains(err.Error(), "TablePrefix") {
		t.Errorf("CreateTables with a 63-byte prefix: %v; want an error naming TablePrefix", err)
	}
	if _, err := pgstore.New(pool, long); err == nil || !strings.Contains(err.Error(), "TablePrefix") {
		t.Errorf("New with a 63-byte prefix: %v; want an error naming TablePrefix", err)
	}
	longest := pgstore.Options{Schema: opts.Schema, TablePrefix: strings.Repeat("q", 49)}
	if err := pgstore.CreateTables(ctx, pool, longest); err != nil {
		t.Fatalf("CreateTables with a 49-byte prefix: %v", err)
	}
	ls := newStore(t, pool, longest)
	if err := ls.Save(ctx, "dave", nil, tok); err != nil {
		t.Fatal(err)
	}
	unlock, err := ls.Lock(ctx, "dave")
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if got, err := ls.Load(ctx, "dave"); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Errorf("with a 49-byte prefix: %v, %v", got, err)
	}
}

func fleetConfig(t *testing.T, kill time.Duration) (fleettest.Config, *pgstore.Store, *pgtest.Server) {
	srv, pool, opts := setUp(t)
	// The workers' lease is 3 s, so that only a worker stalled for 2 s
	// (not a busy machine's usual hiccup) could lose it mid-refresh; the
	// killed locker's is 1 s, so that it lapses soon after the kill.
	opts.LeaseTTL = 3 * time.Second
	cfg := fleettest.Config{Replicas: 4, Accounts: 50, Duration: 8 * time.Second, Lifetime: 4 * time.Second, Callers: 4, KillAfter: kill,
		StoreEnv:  []string{"FLEET_PG_DSN=" + srv.DSN(), "FLEET_PG_SCHEMA=" + opts.Schema, "FLEET_PG_LEASE=3s"},
		LockerEnv: []string{"FLEET_PG_LEASE=1s"},
		LockHolder: func(ctx context.Context) (string, error) {
			var owner string
			err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT owner FROM %s.dropboxsign_locks WHERE account = $1 AND expires_at > now()`, opts.Schema), fleettest.Key(0)).Scan(&owner)
			if errors.Is(err, pgx.ErrNoRows) {
				return "", nil
			}
			return owner, err
		}}
	return cfg, newStore(t, pool, opts), srv
}

func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("a multi-process run of several seconds")
	}
	cfg, store, _ := fleetConfig(t, 0)
	fleettest.Check(t, cfg, fleettest.Run(t, cfg, store))
}

// A process holds account 0's lease past the time its refresh is due (2 s)
// and is SIGKILLed at 3 s: its 1 s lease lapses, and the others refresh
// then, not before (checked against the last moment the lease row was
// seen to be the locker's, just before the kill).
func TestFleetSurvivesAKilledLockHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("a multi-process run of several seconds")
	}
	cfg, store, _ := fleetConfig(t, 3*time.Second)
	fleettest.Check(t, cfg, fleettest.Run(t, cfg, store))
}

// The database restarts mid-run (an immediate shutdown, as a crash leaves
// it, down for a second and its recovery): replicas keep serving their
// cached tokens, pick the store up again, and lose no refresh token.
//
// The fault is timed by what the fleet did, not by the clock: it begins
// once every replica has called every account with a refreshed token (so
// no replica depends on a seeded one), when those tokens, of a 6 s
// lifetime, serve for about 5 s more. The test measures when the database
// answers again and which token each replica held: on a machine so slow
// that a replica's token stopped serving before then, calls of that
// replica and account may fail (no cache can help), and only those (see
// fleettest.CheckOutage); no refresh token may be presented stale, and
// every account must be valid after. (A fault in the middle of a refresh
// is TestConnectionsKilledWhileHoldingTheLock's.)
func TestFleetSurvivesADatabaseRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("a multi-process run of several seconds")
	}
	cfg, store, srv := fleetConfig(t, 0)
	cfg.Lifetime = 6 * time.Second
	f := fleettest.New(t, cfg, store)
	var down, back time.Time
	rep := f.Phase(fleettest.Phase{Replicas: 4, Duration: 8 * time.Second, Callers: 4, During: func(ctx context.Context, w *fleettest.Workers) {
		if !w.WaitFresh(ctx) {
			return
		}
		down = time.Now()
		srv.Stop()
		time.Sleep(time.Second) // the length of the fault, not a wait for anything
		srv.Start()
		for ctx.Err() == nil {
			if _, err := store.Load(ctx, fleettest.Key(0)); err == nil {
				back = time.Now()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}})
	if down.IsZero() {
		t.Fatalf("the replicas never all moved off the seeded tokens in %v: the database was not restarted", cfg.Duration)
	}
	if back.IsZero() {
		t.Fatal("the database did not answer again")
	}
	after, accounts := 0, map[string]bool{}
	for _, it := range f.Server.IssuedTokens() {
		if it.Refresh && it.Issued.After(back) {
			after++
			accounts[it.Account] = true
		}
	}
	t.Logf("database restarted %.1f s after the start, unavailable %.1f s: %d API calls, %d failed, %d refreshes (%d after the restart, of %d accounts), %d stale refresh tokens",
		down.Sub(rep.Started).Seconds(), back.Sub(down).Seconds(), rep.Calls, rep.Failures, rep.Server.Refreshes, after, len(accounts), rep.Server.StaleRefreshTokens)
	fleettest.CheckOutage(t, rep, down, back)
	if n := f.Valid(); n != cfg.Accounts {
		t.Errorf("%d of %d accounts valid after the restart", n, cfg.Accounts)
	}
}

// Every connection of the app is killed (pg_terminate_backend) while a
// refresh holds the account's lease and waits on Dropbox Sign: the refresh
// completes, its token is stored once the pool has reconnected, and nothing
// is lost.
func TestConnectionsKilledWhileHoldingTheLock(t *testing.T) {
	srv, pool, opts := setUp(t, "application_name=killme")
	ctx := ctxFor(t)
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	old := fake.IssueToken()
	old.Expiry = time.Now().Add(-time.Minute)
	store := newStore(t, pool, opts)
	store.Save(ctx, "carol", nil, old)
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	release := fake.HoldTokenResponses()
	got := make(chan error, 1)
	go func() { _, err := accounts.TokenSource("carol").TokenContext(ctx); got <- err }()
	if err := fake.WaitTokenRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if n := srv.MustQuery(t, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'killme'`); n == "0" {
		t.Fatal("no connection was killed")
	}
	release()
	err := <-got
	var saveErr *dropboxsign.SaveError
	if err != nil && !errors.As(err, &saveErr) {
		t.Fatalf("the refresh: %v", err)
	}
	if err != nil && (strings.Contains(err.Error(), old.RefreshToken) || strings.Contains(err.Error(), fake.ClientSecret)) {
		t.Errorf("a secret in %q", err)
	}
	// Whether the save met a dead connection or not, the token is stored
	// by the time a later call has run (the retry's backoff is 1-1.5 s).
	deadline := time.Now().Add(10 * time.Second)
	for {
		stored, lerr := store.Load(ctx, "carol")
		if lerr == nil && stored.RefreshToken != old.RefreshToken {
			if _, err := dropboxsign.Refresh(ctx, fake.Config(), stored.RefreshToken); err != nil {
				t.Fatalf("the stored refresh token does not work: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new token was not stored: %v, %v", stored, lerr)
		}
		accounts.TokenSource("carol").TokenContext(ctx)
		time.Sleep(50 * time.Millisecond)
	}
	if n := fake.Stats().StaleRefreshTokens; n != 0 {
		t.Errorf("%d stale refresh tokens", n)
	}
}

// A statement timeout (another session holds the account's row): the mark
// that must precede presenting the refresh token fails clearly, so no
// refresh token is spent that could not then be stored; once the row is
// free, the account refreshes and its token is stored.
func TestStatementTimeout(t *testing.T) {
	_, pool, opts := setUp(t, "statement_timeout=200")
	ctx := ctxFor(t)
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	store := newStore(t, pool, opts)
	old := fake.IssueToken()
	old.Expiry = time.Now().Add(-time.Minute)
	store.Save(ctx, "dave", nil, old)

	blocker, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	if _, err := blocker.Exec(ctx, fmt.Sprintf(`SELECT * FROM %s.dropboxsign_tokens WHERE account = 'dave' FOR UPDATE`, opts.Schema)); err != nil {
		t.Fatal(err)
	}
	// The row cannot be written: the mark that the refresh token is being
	// spent times out, so the refresh token is not presented (a new token
	// could not be stored either); callers get the store's error, which
	// names the timeout, classed Temporary.
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	tok, err := accounts.TokenSource("dave").TokenContext(ctx)
	if tok != nil || err == nil || !strings.Contains(err.Error(), "statement timeout") || dropboxsign.Classify(err) != dropboxsign.Temporary {
		t.Fatalf("%v, %v; want no token, and the store's error naming the timeout, temporary", tok, err)
	}
	if n := fake.Stats().TokenRequests; n != 0 {
		t.Fatalf("%d token requests while the row could not be written", n)
	}
	blocker.Rollback(ctx)
	// Once the row is free, the next call refreshes and stores the token
	// (the source backs off about a second after the failure: until the
	// test's deadline).
	var got *oauth2.Token
	for got == nil {
		if ctx.Err() != nil {
			t.Fatal("the account never refreshed once the row was free")
		}
		time.Sleep(50 * time.Millisecond)
		got, _ = accounts.TokenSource("dave").TokenContext(ctx)
	}
	if stored, err := store.Load(ctx, "dave"); err != nil || stored.AccessToken != got.AccessToken {
		t.Errorf("the store holds %v, %v; want the new token", stored, err)
	}
	if s := fake.Stats(); s.Refreshes != 1 || s.StaleRefreshTokens != 0 {
		t.Errorf("%d refreshes, %d stale; want 1 and 0", s.Refreshes, s.StaleRefreshTokens)
	}
}

// Behind PgBouncer in transaction mode (each statement may run on another
// server connection), with the pool's default settings: the store keeps no
// session state and sends no named prepared statement (with pgx's default
// mode, this test fails: "prepared statement ... already exists"), so the
// conformance suite passes, and an account refreshes through it.
func TestBehindPgBouncerInTransactionMode(t *testing.T) {
	srv, direct, opts := setUp(t)
	bouncer := srv.StartPgBouncer(t)
	pool, err := pgxpool.New(context.Background(), bouncer.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	opts.LeaseTTL = time.Second
	t.Run("conformance", func(t *testing.T) {
		var stores conformanceStores
		storetest.Run(t, func(t *testing.T) dropboxsign.Store {
			o := opts
			o.TablePrefix = fmt.Sprintf("b%d_", schemas.Add(1))
			if err := pgstore.CreateTables(ctxFor(t), direct, o); err != nil {
				t.Fatal(err)
			}
			return stores.add(t, bouncer.DSN(), pool, o)
		}, stores.options()...)
	})
	ctx := ctxFor(t)
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	store := newStore(t, pool, opts)
	old := fake.IssueToken()
	old.Expiry = time.Now().Add(-time.Minute)
	store.Save(ctx, "erin", nil, old)
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	if _, err := accounts.TokenSource("erin").TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	if stored, err := store.Load(ctx, "erin"); err != nil || stored.RefreshToken == old.RefreshToken {
		t.Fatalf("stored through the bouncer: %v, %v", stored, err)
	}
}

// A listing reads a page at a time and holds no connection while it yields:
// with a pool of one connection, the loop's body can still use the store
// (an app's reconnect page loads each account). Every key is listed once,
// across pages.
func TestListingHoldsNoConnection(t *testing.T) {
	srv, _, opts := setUp(t)
	ctx := ctxFor(t)
	pool, err := pgxpool.New(ctx, srv.DSN()+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := newStore(t, pool, opts)
	const n = 1203 // two full pages and a part
	srv.MustQuery(t, fmt.Sprintf(`INSERT INTO %s.dropboxsign_tokens (account, fingerprint, token)
SELECT 'acct-' || lpad(i::text, 5, '0'), 'fp', 'not a token'::bytea FROM generate_series(1, %d) i`, opts.Schema, n))
	tok := &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1"}
	if err := s.Save(ctx, "alice", nil, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRefused(ctx, "alice", tok); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for key, err := range s.Keys(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if seen[key] {
			t.Fatalf("%s listed twice", key)
		}
		seen[key] = true
		if key == "acct-00600" { // mid-listing, on the only connection
			if err := s.Save(ctx, "bob", nil, tok); err != nil {
				t.Fatalf("Save inside the listing: %v", err)
			}
		}
	}
	if len(seen) < n+1 {
		t.Errorf("listed %d keys, want at least %d", len(seen), n+1)
	}
	refused := 0
	for r, err := range s.Refused(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(ctx, r.Key); !errors.As(err, new(*dropboxsign.RefusedError)) {
			t.Errorf("Load inside Refused: %v", err)
		}
		refused++
	}
	if refused != 1 {
		t.Errorf("%d refused, want 1", refused)
	}
}

// A new login repairs a row the store cannot open (sealed with a key since
// rotated out): Accounts.Login replaces it.
func TestLoginReplacesARowTheStoreCannotOpen(t *testing.T) {
	_, pool, opts := setUp(t)
	ctx := ctxFor(t)
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	old, _ := dropboxsign.NewSealer(bytes.Repeat([]byte{1}, 32))
	sealedWith := func(s *dropboxsign.Sealer) *pgstore.Store {
		o := opts
		o.Sealer = s
		return newStore(t, pool, o)
	}
	sealedWith(old).Save(ctx, "alice", nil, fake.IssueToken())
	store := sealedWith(sealer(t))
	if _, err := store.Load(ctx, "alice"); err == nil {
		t.Fatal("the row opens: the test needs one that does not")
	}
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	code := fakeCode(t, fake, "st")
	tok, err := accounts.Login(ctx, "alice", code, "st")
	if err != nil {
		t.Fatalf("Login over an unopenable row: %v", err)
	}
	if got, err := store.Load(ctx, "alice"); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Errorf("after Login: %v, %v; want the new token", got, err)
	}
}

// fakeCode walks the fake's consent page (its default callback answers
// with the code as JSON) and returns the code.
func fakeCode(t *testing.T, fake *dropboxsigntest.Server, state string) string {
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
