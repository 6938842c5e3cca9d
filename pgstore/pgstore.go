// Package pgstore is a dropboxsign.Store in PostgreSQL, for apps that keep
// their data there: every replica shares each account's token through
// three tables of the app's database, refreshes it once per expiry between them,
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
//     An account the app disconnected holds a disconnection mark:
//     disconnected_at set, token and fingerprint empty (no token material).
//   - <prefix>locks: one row per account under refresh: a lease with an
//     owner and an expiry, renewed by its holder every third of LeaseTTL.
//   - <prefix>changes: the log of changes that Watch reads: one row per
//     Disconnect or Replace (the account and when), kept for a day.
//
// Every operation is one statement in its own transaction: Save and
// MarkRefused compare and write at once; Disconnect and Replace write the
// row, log the change and NOTIFY the watchers at once; and the lock is a
// lease row, not an advisory lock, so that no connection is held while a
// refresh waits on Dropbox Sign, and the store works behind PgBouncer in
// transaction mode. A holder that dies leaves its lease to lapse after
// LeaseTTL. Watch alone holds a connection of its own, outside the pool,
// to LISTEN (see Options.ListenDSN).
package pgstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
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
	"github.com/jackc/pgx/v5/pgconn"
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
	// ListenDSN is the connection string of the connection on which Watch
	// LISTENs for changes, one per Watch call, outside the pool. Empty
	// (the default): a connection made as the pool makes its own (its
	// ConnConfig, BeforeConnect and AfterConnect). A LISTEN needs a
	// session of PostgreSQL's own, which a pooler does not lend (PgBouncer
	// in transaction mode drops, or worse, the notifications of a LISTEN
	// made through it): if the pool goes through PgBouncer, point
	// ListenDSN at PostgreSQL itself. Watch checks: on a connection that a
	// pooler serves (in any mode: it cannot tell which) it does not
	// LISTEN, reports an error (a dropboxsign.Change with Err) every few
	// minutes, and learns of changes from the log of changes, read every
	// poll.
	ListenDSN string
	// PollOnly turns Watch's LISTEN off: it learns of changes only from
	// the log of changes, read every poll, and reports no error for the
	// missing push. For a database that can be reached only through a
	// pooler.
	PollOnly bool
}

// Store is a dropboxsign.Store, Lister and Watcher in PostgreSQL. It is
// safe for concurrent use.
type Store struct {
	pool      *pgxpool.Pool
	tokens    string // quoted, schema-qualified table names
	locks     string
	changes   string
	channel   string // the NOTIFY channel of Disconnect and Replace
	ttl       time.Duration
	sealer    *dropboxsign.Sealer
	listen    *pgx.ConnConfig // parsed ListenDSN; nil: the pool's
	pollOnly  bool
	retention time.Duration // of the log of changes
}

var (
	_ dropboxsign.Lister  = (*Store)(nil)
	_ dropboxsign.Watcher = (*Store)(nil)
)

// changeRetention is how long the log of changes keeps a row: far longer
// than any poll, so that only a watcher cut off from the database for
// half of it (then told Change{All}) can miss one; short enough that the
// table stays small (a row per disconnection or login).
const changeRetention = 24 * time.Hour

// New returns a Store on pool, which the caller owns and closes. The tables
// must exist (CreateTables, or the app's migrations with SQL).
func New(pool *pgxpool.Pool, opts Options) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgstore: nil pool")
	}
	s := &Store{pool: pool, ttl: opts.LeaseTTL, sealer: opts.Sealer, pollOnly: opts.PollOnly, retention: changeRetention}
	if s.ttl == 0 {
		s.ttl = DefaultLeaseTTL
	}
	if s.ttl < 100*time.Millisecond {
		return nil, fmt.Errorf("pgstore: LeaseTTL %v is below 100ms", s.ttl)
	}
	if err := checkNames(opts); err != nil {
		return nil, err
	}
	if opts.ListenDSN != "" {
		cfg, err := pgx.ParseConfig(opts.ListenDSN)
		if err != nil {
			// Not pgx's text: it repeats the string, whose password it
			// hides on a best-effort basis only.
			return nil, errors.New("pgstore: Options.ListenDSN is not a valid connection string (not repeated here: it may hold a password)")
		}
		s.listen = cfg
	}
	s.tokens, s.locks, s.changes = tableNames(opts)
	s.channel = channelName(opts)
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
	longest := prefix + "tokens_refused" // an index, the longest name made (with changes_id_seq)
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

func tableNames(opts Options) (tokens, locks, changes string) {
	schema, prefix := names(opts)
	return pgx.Identifier{schema, prefix + "tokens"}.Sanitize(), pgx.Identifier{schema, prefix + "locks"}.Sanitize(),
		pgx.Identifier{schema, prefix + "changes"}.Sanitize()
}

// channelName is the NOTIFY channel of the store's tables: one per schema
// and prefix (channels are the database's, not a schema's), within
// PostgreSQL's 63 bytes whatever their length, and with nothing to quote.
func channelName(opts Options) string {
	schema, prefix := names(opts)
	h := sha256.Sum256([]byte("dropboxsign-channel\x00" + schema + "\x00" + prefix))
	return "dropboxsign_" + hex.EncodeToString(h[:10])
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
// the app's own migrations. They are idempotent (IF NOT EXISTS), and bring
// tables created by an earlier version up to date: they add the tokens
// table's disconnected_at column and its index, and the changes table.
func SQL(opts Options) string {
	return ddl(opts, ddlPresent{})
}

// ddlPresent says which of what this version added to the tables exists.
type ddlPresent struct {
	disconnectedAt, disconnectedIndex, changesXidIndex, changesAtIndex bool
}

// ddl is SQL, leaving out the statements that add what present says is
// there: the ALTER TABLE would take an ACCESS EXCLUSIVE lock on the tokens
// table, and CREATE INDEX a SHARE lock on its table, even when IF NOT
// EXISTS then finds nothing to do.
func ddl(opts Options, present ddlPresent) string {
	tokens, locks, changes := tableNames(opts)
	_, prefix := names(opts)
	index := func(name string) string { return pgx.Identifier{prefix + name}.Sanitize() }
	var b strings.Builder
	b.WriteString(`CREATE TABLE IF NOT EXISTS ` + tokens + ` (
	account         text PRIMARY KEY,
	fingerprint     text,        -- SHA-256 of the access and refresh tokens, hex; NULL for a refusal mark, empty for a disconnection mark
	token           bytea,       -- the token as dropboxsign.Sealer.Seal makes it; NULL for a refusal mark, empty for a disconnection mark
	refused_at      timestamptz, -- set: Dropbox Sign refused the account's grant; it awaits a new login
	disconnected_at timestamptz, -- set, with fingerprint and token empty: the app disconnected the account (a disconnection mark)
	updated_at      timestamptz NOT NULL DEFAULT now(),
	CHECK ((token IS NULL) = (refused_at IS NOT NULL) AND (token IS NULL) = (fingerprint IS NULL))
);
`)
	if !present.disconnectedAt {
		b.WriteString(`ALTER TABLE ` + tokens + ` ADD COLUMN IF NOT EXISTS disconnected_at timestamptz; -- for a table created before it
`)
	}
	b.WriteString(`CREATE INDEX IF NOT EXISTS ` + index("tokens_refused") + ` ON ` + tokens + ` (refused_at) WHERE refused_at IS NOT NULL;
`)
	if !present.disconnectedIndex {
		b.WriteString(`CREATE INDEX IF NOT EXISTS ` + index("disconnected") + ` ON ` + tokens + ` (disconnected_at) WHERE disconnected_at IS NOT NULL;
`)
	}
	b.WriteString(`CREATE TABLE IF NOT EXISTS ` + locks + ` (
	account    text PRIMARY KEY,
	owner      text NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS ` + changes + ` (
	id      bigserial PRIMARY KEY,
	account text NOT NULL,                                  -- disconnected, or connected anew by a login
	xid     xid8 NOT NULL DEFAULT pg_current_xact_id(),     -- the writing transaction: Watch reads the log by it
	at      timestamptz NOT NULL DEFAULT clock_timestamp()  -- pruned a day later
);
`)
	if !present.changesXidIndex {
		b.WriteString(`CREATE INDEX IF NOT EXISTS ` + index("changes_xid") + ` ON ` + changes + ` (xid);
`)
	}
	if !present.changesAtIndex {
		b.WriteString(`CREATE INDEX IF NOT EXISTS ` + index("changes_at") + ` ON ` + changes + ` (at);
`)
	}
	return b.String()
}

// CreateTables creates the store's tables if they do not exist, and brings
// tables created by an earlier version up to date (see SQL). What is
// already there it leaves alone, without taking a lock on the tokens table
// beyond what earlier versions took.
//
// It is safe to call from every replica at start-up, all at once: it runs
// in one transaction that first takes a transaction-scoped advisory lock
// (pg_advisory_xact_lock, its key derived from the schema and prefix), so
// that concurrent callers wait for the first to commit and then find
// everything there. Without it, PostgreSQL's IF NOT EXISTS races: two
// sessions creating the same table at once fail with "duplicate key value
// violates unique constraint" (SQLSTATE 23505). The lock ends with the
// transaction, so it works behind PgBouncer in transaction mode, and a
// caller that dies holding it frees it. A caller whose ctx ends while it
// waits gets an error that says so and wraps ctx's error. Running the
// statements of SQL from several processes at once has the same race: let
// the migration tool serialize them.
func CreateTables(ctx context.Context, pool *pgxpool.Pool, opts Options) error {
	if pool == nil {
		return errors.New("pgstore: nil pool")
	}
	if err := checkNames(opts); err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: creating the tables: %w", err)
	}
	// After Commit, a no-op. With ctx ended, pgx closes the connection,
	// which ends the transaction and its lock on the server.
	defer tx.Rollback(ctx)
	key := createTablesLockKey(opts)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, execMode, key); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pgstore: creating the tables: gave up waiting for another CreateTables on the same tables (another replica creating or migrating them holds the advisory lock %d): %w", key, context.Cause(ctx))
		}
		return fmt.Errorf("pgstore: creating the tables: taking the advisory lock %d that keeps concurrent CreateTables apart: %w", key, err)
	}
	// Looked up under the lock: what a caller before this one added is
	// there, and not altered again (see ddl).
	tokens, _, _ := tableNames(opts)
	schema, prefix := names(opts)
	index := func(name string) string { return pgx.Identifier{schema, prefix + name}.Sanitize() }
	var present ddlPresent
	err = tx.QueryRow(ctx, `SELECT
	EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'disconnected_at' AND NOT attisdropped),
	to_regclass($2) IS NOT NULL, to_regclass($3) IS NOT NULL, to_regclass($4) IS NOT NULL`, execMode,
		tokens, index("disconnected"), index("changes_xid"), index("changes_at")).
		Scan(&present.disconnectedAt, &present.disconnectedIndex, &present.changesXidIndex, &present.changesAtIndex)
	if err != nil {
		return fmt.Errorf("pgstore: creating the tables: %w", err)
	}
	// Every statement of ddl runs in a transaction (no CREATE INDEX
	// CONCURRENTLY): they commit together, with the lock's release.
	if _, err := tx.Exec(ctx, ddl(opts, present)); err != nil {
		return fmt.Errorf("pgstore: creating the tables: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: creating the tables: %w", err)
	}
	return nil
}

// createTablesLockKey is the advisory lock of CreateTables for opts' tables:
// a hash of a name of its own, the schema and the prefix, so that stores of
// other tables do not wait on each other, and that no app's own key is
// likely to be the same.
func createTablesLockKey(opts Options) int64 {
	schema, prefix := names(opts)
	h := sha256.Sum256([]byte("dropboxsign.pgstore.CreateTables\x00" + schema + "\x00" + prefix))
	return int64(binary.BigEndian.Uint64(h[:8]))
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

// isMark is the SQL condition of a disconnection mark. disconnected_at
// alone does not make one: a replica of a version before it, replacing the
// mark with a new login's token, leaves the column set beside the token,
// which is then the newer of the two. (IS NOT DISTINCT FROM: never NULL.)
// t qualifies the columns ("t." or "").
func isMark(t string) string {
	return `(` + t + `disconnected_at IS NOT NULL AND ` + t + `fingerprint IS NOT DISTINCT FROM '')`
}

// schemaHint adds to err, if PostgreSQL found no table or column of the
// store's, that the tables are older than this version of the store.
func schemaHint(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "42703") { // undefined_table, undefined_column
		return fmt.Errorf("%w (are the tables older than this version of pgstore? CreateTables, or the statements of SQL, bring them up to date)", err)
	}
	return err
}

// Load returns the token stored under key, dropboxsign.ErrNotFound, a
// *dropboxsign.DisconnectedError for a disconnection mark, or a
// *dropboxsign.RefusedError for a key marked refused (refused_at set). A
// row it cannot read is an error, which a new login repairs (see Replace):
// a token that does not open, no token, or a token whose fingerprint
// column is not its own (a row edited by hand). So every token Load
// returns is one that Save (as prev) and MarkRefused find stored,
// comparing fingerprints.
func (s *Store) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	var blob []byte
	var fp *string
	var refused, disconnected *time.Time
	err := s.pool.QueryRow(ctx, `SELECT token, fingerprint, refused_at, disconnected_at FROM `+s.tokens+` WHERE account = $1`, execMode, key).
		Scan(&blob, &fp, &refused, &disconnected)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, dropboxsign.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("pgstore: load %q: %w", key, schemaHint(err))
	case disconnected != nil && fp != nil && *fp == "": // isMark
		return nil, &dropboxsign.DisconnectedError{Key: key, Since: *disconnected}
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
// dropboxsign.Store), in one statement: with prev, if the row is neither
// mark and its fingerprint is prev's; without, if there is no row or it is
// a refusal mark (refused_at set), the rows for which Load returns
// ErrNotFound or a *dropboxsign.RefusedError. Over a disconnection mark it
// stores nothing, whatever prev, and returns ErrConflict.
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
		sql = `INSERT INTO ` + s.tokens + ` AS t (account, fingerprint, token, refused_at, disconnected_at, updated_at) VALUES ($1, $2, $3, NULL, NULL, now())
ON CONFLICT (account) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token, refused_at = NULL, disconnected_at = NULL, updated_at = now()
WHERE t.refused_at IS NOT NULL AND NOT ` + isMark("t.")
	} else {
		// A mark's fingerprint (empty) is no token's: NOT isMark says
		// so explicitly.
		sql = `UPDATE ` + s.tokens + ` SET fingerprint = $2, token = $3, refused_at = NULL, disconnected_at = NULL, updated_at = now()
WHERE account = $1 AND fingerprint = $4 AND refused_at IS NULL AND NOT ` + isMark("")
		args = append(args, fingerprint(prev))
	}
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("pgstore: save %q: %w", key, schemaHint(err))
	}
	if tag.RowsAffected() == 0 {
		return dropboxsign.ErrConflict
	}
	return nil
}

// pruneBatch is the most rows of the log of changes that one Disconnect or
// Replace deletes: each adds one, so the log never grows past its
// retention for long, and no write pays for a large backlog at once.
const pruneBatch = 100

// logChange is the part of Disconnect's and Replace's statement that logs
// the change of key ($1) and prunes the log ($2: its retention in
// seconds), as CTEs to follow the write. The prune skips rows that
// another write's prune is deleting (SKIP LOCKED), so that two writes
// never wait on each other, nor deadlock, for it.
func (s *Store) logChange() string {
	return `, logged AS (
	INSERT INTO ` + s.changes + ` (account) VALUES ($1)
), pruned AS (
	DELETE FROM ` + s.changes + ` WHERE id IN (SELECT id FROM ` + s.changes + ` WHERE at < now() - make_interval(secs => $2)
		ORDER BY at LIMIT ` + strconv.Itoa(pruneBatch) + ` FOR UPDATE SKIP LOCKED)
)
SELECT pg_notify($3, $4)`
}

// maxPayload is the longest NOTIFY payload PostgreSQL takes, less one.
const maxPayload = 7999

// notifyArgs returns the arguments $2 to $4 of logChange.
func (s *Store) notifyArgs(key string) []any {
	payload := key
	if len(payload) > maxPayload {
		// Too long for a payload: an empty one has watchers read the
		// log, which holds the key. (Accounts' keys are at most 1024
		// bytes.)
		payload = ""
	}
	return []any{s.retention.Seconds(), s.channel, payload}
}

// Replace stores t under key, replacing anything there, even a row the
// store cannot read or a disconnection mark (see dropboxsign.Store), logs
// the change and notifies the watchers, in one statement (one
// transaction: the notification goes out when it commits).
func (s *Store) Replace(ctx context.Context, key string, t *oauth2.Token) error {
	if t == nil {
		return errors.New("pgstore: nil token")
	}
	blob, err := s.sealer.Seal(key, t)
	if err != nil {
		return err
	}
	args := append([]any{execMode, key}, s.notifyArgs(key)...)
	args = append(args, fingerprint(t), blob)
	_, err = s.pool.Exec(ctx, `WITH written AS (
	INSERT INTO `+s.tokens+` (account, fingerprint, token, refused_at, disconnected_at, updated_at) VALUES ($1, $5, $6, NULL, NULL, now())
	ON CONFLICT (account) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token, refused_at = NULL, disconnected_at = NULL, updated_at = now()
)`+s.logChange(), args...)
	if err != nil {
		return fmt.Errorf("pgstore: replace %q: %w", key, schemaHint(err))
	}
	return nil
}

// Disconnect replaces whatever key holds with a disconnection mark,
// stamped with the database's clock (an existing mark keeps its time), logs
// the change and notifies the watchers, in one statement (one transaction:
// the notification goes out when it commits; see dropboxsign.Store). The
// mark keeps the row, with its token and fingerprint empty: nothing of the
// grant is left in it.
func (s *Store) Disconnect(ctx context.Context, key string) error {
	args := append([]any{execMode, key}, s.notifyArgs(key)...)
	_, err := s.pool.Exec(ctx, `WITH marked AS (
	INSERT INTO `+s.tokens+` AS t (account, fingerprint, token, refused_at, disconnected_at, updated_at) VALUES ($1, '', '', NULL, now(), now())
	ON CONFLICT (account) DO UPDATE SET fingerprint = '', token = '', refused_at = NULL, disconnected_at = now(), updated_at = now()
	WHERE NOT `+isMark("t.")+`
)`+s.logChange(), args...)
	if err != nil {
		return fmt.Errorf("pgstore: disconnect %q: %w", key, schemaHint(err))
	}
	return nil
}

// Forget deletes key's disconnection mark if it was recorded before
// before (see dropboxsign.Store), in one statement that also tells what
// the row held: nil if there was none, ErrConflict if it is not such a
// mark.
func (s *Store) Forget(ctx context.Context, key string, before time.Time) error {
	// The mark's time has PostgreSQL's microseconds: mark < before exactly
	// when mark < before rounded up to a microsecond (pgx would truncate).
	if b := before.Truncate(time.Microsecond); b.Before(before) {
		before = b.Add(time.Microsecond)
	}
	for range 3 {
		var deleted bool
		var old *bool // as of the statement's snapshot: nil, no row; true, a mark older than before
		// The account's entries in the log of changes go with the mark:
		// they are older than the log's retention by then (see
		// dropboxsign.ForgetAfter), and they hold the key.
		err := s.pool.QueryRow(ctx, `WITH gone AS (
	DELETE FROM `+s.tokens+` WHERE account = $1 AND `+isMark("")+` AND disconnected_at < $2 RETURNING 1
), scrub AS (
	DELETE FROM `+s.changes+` WHERE account = $1 AND (EXISTS (SELECT 1 FROM gone) OR NOT EXISTS (SELECT 1 FROM `+s.tokens+` WHERE account = $1))
)
SELECT EXISTS (SELECT 1 FROM gone), (SELECT `+isMark("")+` AND disconnected_at < $2 FROM `+s.tokens+` WHERE account = $1)`,
			execMode, key, before).Scan(&deleted, &old)
		switch {
		case err != nil:
			return fmt.Errorf("pgstore: forget %q: %w", key, schemaHint(err))
		case deleted, old == nil:
			return nil
		case !*old:
			return dropboxsign.ErrConflict
		}
		// The snapshot saw a mark to delete, but a write that committed
		// meanwhile changed or deleted it first: look again.
	}
	return dropboxsign.ErrConflict
}

// MarkRefused replaces key's token with a refusal mark, stamped with the
// database's clock, if it is still refused (see dropboxsign.Store), in one
// statement comparing fingerprints as Save does.
func (s *Store) MarkRefused(ctx context.Context, key string, refused *oauth2.Token) error {
	if refused == nil {
		return dropboxsign.ErrConflict
	}
	tag, err := s.pool.Exec(ctx, `UPDATE `+s.tokens+` SET fingerprint = NULL, token = NULL, refused_at = now(), disconnected_at = NULL, updated_at = now()
WHERE account = $1 AND fingerprint = $2 AND refused_at IS NULL AND NOT `+isMark(""), execMode, key, fingerprint(refused))
	if err != nil {
		return fmt.Errorf("pgstore: mark %q refused: %w", key, schemaHint(err))
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

// Keys yields every key that holds a token or a mark, in the order of the
// keys. It reads them in pages of listPage, and holds no connection while
// it yields: the loop's body may use the store and the pool. A key saved
// or removed during the listing may or may not be seen.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		s.query(ctx, "NULL::timestamptz", "TRUE", func(key string, _ *time.Time) bool { return yield(key, nil) },
			func(err error) { yield("", err) })
	}
}

// Refused yields a *dropboxsign.RefusedError for each key marked refused,
// in pages as Keys does (a disconnection mark is not one).
func (s *Store) Refused(ctx context.Context) iter.Seq2[*dropboxsign.RefusedError, error] {
	return func(yield func(*dropboxsign.RefusedError, error) bool) {
		s.query(ctx, "refused_at", `refused_at IS NOT NULL AND NOT `+isMark(""),
			func(key string, at *time.Time) bool {
				return yield(&dropboxsign.RefusedError{Key: key, Since: *at}, nil)
			},
			func(err error) { yield(nil, err) })
	}
}

// Disconnected yields a *dropboxsign.DisconnectedError for each key that
// holds a disconnection mark, in pages as Keys does.
func (s *Store) Disconnected(ctx context.Context) iter.Seq2[*dropboxsign.DisconnectedError, error] {
	return func(yield func(*dropboxsign.DisconnectedError, error) bool) {
		s.query(ctx, "disconnected_at", isMark(""),
			func(key string, at *time.Time) bool {
				return yield(&dropboxsign.DisconnectedError{Key: key, Since: *at}, nil)
			},
			func(err error) { yield(nil, err) })
	}
}

// listPage is how many rows a listing reads at a time.
const listPage = 500

// query lists the keys of the rows that match where, with the column at, a
// page at a time (keyset pagination on the primary key), each page read in
// full before it is yielded, so that no connection is held by a loop that
// may be long or may itself use the pool.
func (s *Store) query(ctx context.Context, at, where string, each func(string, *time.Time) bool, fail func(error)) {
	type row struct {
		key string
		at  *time.Time
	}
	after, first := "", true
	for {
		rows, err := s.pool.Query(ctx, `SELECT account, `+at+` FROM `+s.tokens+` WHERE ($2 OR account > $1) AND `+where+
			` ORDER BY account LIMIT `+strconv.Itoa(listPage), execMode, after, first)
		if err != nil {
			fail(fmt.Errorf("pgstore: listing: %w", schemaHint(err)))
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
