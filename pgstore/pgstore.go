// Package pgstore is a dropboxsign.Store in PostgreSQL, for apps that keep
// their data there: every replica shares each account's token through two
// tables of the app's database, refreshes it once per expiry between them,
// and never presents a refresh token another replica has spent, as long as
// no lease lapses mid-refresh and the database keeps what it committed
// (dropboxsign.Store says what else this rests on).
//
// The tables (see SQL for their DDL, to keep in the app's migrations, or
// CreateTables):
//
//   - <prefix>tokens: one row per account: the token as sealed by the
//     Options' Sealer (plain JSON without one), a fingerprint of it
//     (SHA-256 of its access and refresh tokens) that compare-and-swap reads,
//     or, for an account whose grant Dropbox Sign refused, refused_at.
//     Load returns a token only from a row whose fingerprint is its token's,
//     so that "Load returned X" and "Save with prev X conflicts" never hold
//     at once. A row edited by hand so that the two disagree (a token
//     column restored from a backup, whose refresh token may be spent; a
//     fingerprint changed) cannot be read: Load returns an error, no
//     replica presents or refreshes its token, and the account's next
//     dropboxsign.Accounts.Login replaces the row (Replace).
//   - <prefix>locks: one row per account under refresh: a lease with an
//     owner and an expiry, renewed by its holder every third of LeaseTTL.
//
// Every operation is one statement in its own transaction: Save and
// MarkRefused compare and write at once, and the lock is a lease row, not
// an advisory lock, so that no connection is held while a refresh waits on
// Dropbox Sign, and the store works behind PgBouncer in transaction mode. A
// holder that dies leaves its lease to lapse after LeaseTTL.
package pgstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/lease"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"
)

// DefaultLeaseTTL is how long a refresh lock outlives a holder that died.
const DefaultLeaseTTL = 10 * time.Second

// Options configures a Store.
type Options struct {
	// Schema holds the tables; default "public". It must exist.
	Schema string
	// TablePrefix starts the tables' names; default "dropboxsign_". Apps
	// that share a database use different prefixes, or schemas. It is at
	// most 49 bytes, so that every name made from it fits PostgreSQL's 63
	// (New and CreateTables refuse a longer one).
	TablePrefix string
	// LeaseTTL is the refresh lock's lease (default DefaultLeaseTTL, at
	// least 100 ms): how long other replicas wait when a holder dies. The
	// holder renews it every LeaseTTL/3 while it refreshes.
	LeaseTTL time.Duration
	// Sealer, if set, seals stored tokens at rest (AES-256-GCM; see
	// dropboxsign.Sealer, which also tells how to rotate keys across a
	// running fleet). Tokens stored as plain JSON before still load, and
	// are sealed at their next save, unless the Sealer refuses plaintext
	// (dropboxsign.Sealer.RefusePlaintext).
	Sealer *dropboxsign.Sealer
}

// Store is a dropboxsign.Store, Lister and Replacer in PostgreSQL. It is safe for
// concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	tokens string // quoted, schema-qualified table names
	locks  string
	ttl    time.Duration
	sealer *dropboxsign.Sealer
}

var (
	_ dropboxsign.Lister   = (*Store)(nil)
	_ dropboxsign.Replacer = (*Store)(nil)
)

// New returns a Store on pool, which the caller owns and closes. The tables
// must exist (CreateTables, or the app's migrations with SQL).
func New(pool *pgxpool.Pool, opts Options) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgstore: nil pool")
	}
	s := &Store{pool: pool, ttl: opts.LeaseTTL, sealer: opts.Sealer}
	if s.ttl == 0 {
		s.ttl = DefaultLeaseTTL
	}
	if s.ttl < 100*time.Millisecond {
		return nil, fmt.Errorf("pgstore: LeaseTTL %v is below 100ms", s.ttl)
	}
	if err := checkNames(opts); err != nil {
		return nil, err
	}
	s.tokens, s.locks = tableNames(opts)
	return s, nil
}

// maxIdentifier is PostgreSQL's limit on a name, in bytes (NAMEDATALEN-1).
// It truncates longer names silently, which could make the tokens and locks
// tables one table.
const maxIdentifier = 63

// checkNames refuses a schema or prefix that PostgreSQL would truncate or
// cannot hold.
func checkNames(opts Options) error {
	schema, prefix := names(opts)
	longest := prefix + "tokens_refused" // the index, the longest name made
	switch {
	case len(schema) > maxIdentifier:
		return fmt.Errorf("pgstore: Schema is %d bytes; PostgreSQL names hold at most %d", len(schema), maxIdentifier)
	case len(longest) > maxIdentifier:
		return fmt.Errorf("pgstore: TablePrefix is %d bytes; with the names it starts (%q) at most %d", len(prefix), "tokens_refused", maxIdentifier-len("tokens_refused"))
	case strings.ContainsRune(schema+prefix, 0):
		return errors.New("pgstore: Schema and TablePrefix cannot contain a NUL byte")
	}
	return nil
}

func tableNames(opts Options) (tokens, locks string) {
	schema, prefix := names(opts)
	return pgx.Identifier{schema, prefix + "tokens"}.Sanitize(), pgx.Identifier{schema, prefix + "locks"}.Sanitize()
}

func names(opts Options) (schema, prefix string) {
	schema, prefix = opts.Schema, opts.TablePrefix
	if schema == "" {
		schema = "public"
	}
	if prefix == "" {
		prefix = "dropboxsign_"
	}
	return schema, prefix
}

// SQL returns the statements that create the store's tables for opts, for
// the app's own migrations. They are idempotent (IF NOT EXISTS).
func SQL(opts Options) string {
	tokens, locks := tableNames(opts)
	_, prefix := names(opts)
	return `CREATE TABLE IF NOT EXISTS ` + tokens + ` (
	account     text PRIMARY KEY,
	fingerprint text,        -- SHA-256 of the access and refresh tokens, hex; NULL for a refusal mark
	token       bytea,       -- the token as dropboxsign.Sealer.Seal makes it; NULL for a refusal mark
	refused_at  timestamptz, -- set: Dropbox Sign refused the account's grant; it awaits a new login
	updated_at  timestamptz NOT NULL DEFAULT now(),
	CHECK ((token IS NULL) = (refused_at IS NOT NULL) AND (token IS NULL) = (fingerprint IS NULL))
);
CREATE INDEX IF NOT EXISTS ` + pgx.Identifier{prefix + "tokens_refused"}.Sanitize() + ` ON ` + tokens + ` (refused_at) WHERE refused_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS ` + locks + ` (
	account    text PRIMARY KEY,
	owner      text NOT NULL,
	expires_at timestamptz NOT NULL
);
`
}

// CreateTables creates the store's tables if they do not exist.
func CreateTables(ctx context.Context, pool *pgxpool.Pool, opts Options) error {
	if err := checkNames(opts); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, SQL(opts)); err != nil {
		return fmt.Errorf("pgstore: creating the tables: %w", err)
	}
	return nil
}

// execMode is how every statement is sent: the extended protocol with an
// unnamed prepared statement, one round trip, whatever the pool's default.
// Named prepared statements (pgx's default) would not survive PgBouncer in
// transaction mode, where each statement may run on another server
// connection; the store keeps no session state either.
const execMode = pgx.QueryExecModeExec

// fingerprint identifies a token for compare-and-swap without keeping its
// secrets in the clear: tokens are random, so their hash reveals nothing.
func fingerprint(t *oauth2.Token) string {
	h := sha256.Sum256([]byte("dropboxsign-fp\x00" + t.AccessToken + "\x00" + t.RefreshToken))
	return hex.EncodeToString(h[:])
}

// errDisagrees is Load's error for a row whose fingerprint is not its
// token's.
var errDisagrees = errors.New("the row's fingerprint does not match its token (edited by hand, or partly restored from a backup?): its refresh token may be spent, so it is not used; a new login replaces the row")

// Load returns the token stored under key, dropboxsign.ErrNotFound, or a
// *dropboxsign.RefusedError for a key marked refused (refused_at set). A row
// it cannot read is an error, which a new login repairs (see Replace): a
// token that does not open, no token, or a token whose fingerprint column
// is not its own (a row edited by hand). So every token Load returns is one
// that Save (as prev) and MarkRefused find stored, comparing fingerprints.
func (s *Store) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	var blob []byte
	var fp *string
	var refused *time.Time
	err := s.pool.QueryRow(ctx, `SELECT token, fingerprint, refused_at FROM `+s.tokens+` WHERE account = $1`, execMode, key).Scan(&blob, &fp, &refused)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, dropboxsign.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("pgstore: load %q: %w", key, err)
	case refused != nil:
		return nil, &dropboxsign.RefusedError{Key: key, Since: *refused}
	}
	tok, err := s.sealer.Open(key, blob)
	if err != nil {
		return nil, fmt.Errorf("pgstore: load %q: %w", key, err)
	}
	// Save and MarkRefused compare the column, and the column only: a
	// token it does not identify must not be used, or a rotation saved
	// over it would conflict for ever (and be lost), and its refresh token
	// may be one already spent.
	if fp == nil || *fp != fingerprint(tok) {
		return nil, fmt.Errorf("pgstore: load %q: %w", key, errDisagrees)
	}
	return tok, nil
}

// Save stores t under key if the stored token is still prev (see
// dropboxsign.Store), in one statement: with prev, if the row is not a
// refusal mark and its fingerprint is prev's; without, if there is no row
// or it is a refusal mark (refused_at set), the rows for which Load returns
// ErrNotFound or a *dropboxsign.RefusedError.
func (s *Store) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if t == nil {
		return errors.New("pgstore: nil token")
	}
	blob, err := s.sealer.Seal(key, t)
	if err != nil {
		return err
	}
	var sql string
	args := []any{execMode, key, fingerprint(t), blob}
	if prev == nil {
		// Nothing stored, or a refusal mark: a new login replaces it.
		// refused_at decides, as in Load (with the DDL's CHECK it implies
		// the rest; a table without it may hold a token beside the mark).
		sql = `INSERT INTO ` + s.tokens + ` AS t (account, fingerprint, token, refused_at, updated_at) VALUES ($1, $2, $3, NULL, now())
ON CONFLICT (account) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token, refused_at = NULL, updated_at = now()
WHERE t.refused_at IS NOT NULL`
	} else {
		sql = `UPDATE ` + s.tokens + ` SET fingerprint = $2, token = $3, refused_at = NULL, updated_at = now() WHERE account = $1 AND fingerprint = $4 AND refused_at IS NULL`
		args = append(args, fingerprint(prev))
	}
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("pgstore: save %q: %w", key, err)
	}
	if tag.RowsAffected() == 0 {
		return dropboxsign.ErrConflict
	}
	return nil
}

// Replace stores t under key, replacing anything there, even a row the
// store cannot read (see dropboxsign.Replacer), in one statement.
func (s *Store) Replace(ctx context.Context, key string, t *oauth2.Token) error {
	if t == nil {
		return errors.New("pgstore: nil token")
	}
	blob, err := s.sealer.Seal(key, t)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO `+s.tokens+` (account, fingerprint, token, refused_at, updated_at) VALUES ($1, $2, $3, NULL, now())
ON CONFLICT (account) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token, refused_at = NULL, updated_at = now()`,
		execMode, key, fingerprint(t), blob)
	if err != nil {
		return fmt.Errorf("pgstore: replace %q: %w", key, err)
	}
	return nil
}

// MarkRefused replaces key's token with a refusal mark, stamped with the
// database's clock, if it is still refused (see dropboxsign.Store), in one
// statement comparing fingerprints as Save does.
func (s *Store) MarkRefused(ctx context.Context, key string, refused *oauth2.Token) error {
	if refused == nil {
		return dropboxsign.ErrConflict
	}
	tag, err := s.pool.Exec(ctx, `UPDATE `+s.tokens+` SET fingerprint = NULL, token = NULL, refused_at = now(), updated_at = now()
WHERE account = $1 AND fingerprint = $2 AND refused_at IS NULL`, execMode, key, fingerprint(refused))
	if err != nil {
		return fmt.Errorf("pgstore: mark %q refused: %w", key, err)
	}
	if tag.RowsAffected() == 0 {
		return dropboxsign.ErrConflict
	}
	return nil
}

// Lock takes key's refresh lease (see dropboxsign.Store): a row in the locks
// table, taken over only once expired, waiting until it is free or ctx
// ends, and renewed every LeaseTTL/3 until unlock. If a renewal finds the
// lease gone (the holder was cut off past its TTL), renewing stops; Save's
// compare-and-swap still protects the stored token.
func (s *Store) Lock(ctx context.Context, key string) (func(), error) {
	ttl := s.ttl.Seconds()
	return lease.Take(ctx, s.ttl, lease.Ops{
		Take: func(ctx context.Context, owner string) (bool, error) {
			tag, err := s.pool.Exec(ctx, `INSERT INTO `+s.locks+` AS l (account, owner, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (account) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at WHERE l.expires_at < now()`, execMode, key, owner, ttl)
			if err != nil {
				return false, fmt.Errorf("pgstore: lock %q: %w", key, err)
			}
			return tag.RowsAffected() == 1, nil
		},
		Renew: func(ctx context.Context, owner string) (bool, error) {
			tag, err := s.pool.Exec(ctx, `UPDATE `+s.locks+` SET expires_at = now() + make_interval(secs => $3) WHERE account = $1 AND owner = $2`, execMode, key, owner, ttl)
			return tag.RowsAffected() == 1, err
		},
		Release: func(ctx context.Context, owner string) {
			s.pool.Exec(ctx, `DELETE FROM `+s.locks+` WHERE account = $1 AND owner = $2`, execMode, key, owner)
		},
	})
}

// Keys yields every key that holds a token or a refusal mark, in the order
// of the keys. It reads them in pages of listPage, and holds no connection
// while it yields: the loop's body may use the store and the pool. A key
// saved or removed during the listing may or may not be seen.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		s.query(ctx, "", func(key string, _ *time.Time) bool { return yield(key, nil) },
			func(err error) { yield("", err) })
	}
}

// Refused yields a *dropboxsign.RefusedError for each key marked refused,
// in pages as Keys does.
func (s *Store) Refused(ctx context.Context) iter.Seq2[*dropboxsign.RefusedError, error] {
	return func(yield func(*dropboxsign.RefusedError, error) bool) {
		s.query(ctx, ` AND refused_at IS NOT NULL`,
			func(key string, at *time.Time) bool {
				return yield(&dropboxsign.RefusedError{Key: key, Since: *at}, nil)
			},
			func(err error) { yield(nil, err) })
	}
}

// listPage is how many rows a listing reads at a time.
const listPage = 500

// query lists the rows that match where, a page at a time (keyset
// pagination on the primary key), each page read in full before it is
// yielded, so that no connection is held by a loop that may be long or may
// itself use the pool.
func (s *Store) query(ctx context.Context, where string, each func(string, *time.Time) bool, fail func(error)) {
	type row struct {
		key string
		at  *time.Time
	}
	after, first := "", true
	for {
		rows, err := s.pool.Query(ctx, `SELECT account, refused_at FROM `+s.tokens+` WHERE ($2 OR account > $1)`+where+
			` ORDER BY account LIMIT `+strconv.Itoa(listPage), execMode, after, first)
		if err != nil {
			fail(fmt.Errorf("pgstore: listing: %w", err))
			return
		}
		page := make([]row, 0, listPage)
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.key, &r.at); err != nil {
				rows.Close()
				fail(fmt.Errorf("pgstore: listing: %w", err))
				return
			}
			page = append(page, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			fail(fmt.Errorf("pgstore: listing: %w", err))
			return
		}
		for _, r := range page {
			if !each(r.key, r.at) {
				return
			}
		}
		if len(page) < listPage {
			return
		}
		after, first = page[len(page)-1].key, false
	}
}
