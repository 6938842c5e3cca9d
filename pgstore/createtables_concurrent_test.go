package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign/internal/pgtest"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"
)

// createTablesReplicas is how many replicas start at once in these tests
// (issue 21: with 6, 4 or 5 failed with SQLSTATE 23505 before the lock),
// and createTablesRounds how many times, each on tables that do not exist
// yet, so that the race is met whatever the machine's speed.
const (
	createTablesReplicas = 6
	createTablesRounds   = 5
)

// Six replicas, each with a pool of its own (a session of its own), call
// CreateTables at once on a fresh database, as docs/postgres.md tells
// them to at start-up: every call succeeds, the tables work (a token saved
// through one replica loads through another), and no call leaves the
// advisory lock held once it returned.
func TestCreateTablesConcurrently(t *testing.T) {
	srv := pgtest.Shared(t)
	failed := 0
	for round := range createTablesRounds {
		db := fmt.Sprintf("fresh_%d", schemas.Add(1))
		srv.MustQuery(t, "CREATE DATABASE "+db)
		t.Cleanup(func() { srv.Query("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)") })
		dsn := strings.Replace(srv.DSN(), "/postgres?", "/"+db+"?", 1)
		failed += createAtOnce(t, fmt.Sprintf("round %d, database %s", round, db), dsn, pgstore.Options{})
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent CreateTables calls failed", failed, createTablesReplicas*createTablesRounds)
	}
}

// Six replicas of this version start at once on the tables of the version
// before disconnection marks: they migrate them together (the changes
// table and the indexes are created once, the column added once), and
// the row stored before is kept. (Before the advisory lock, the ALTER
// TABLE's ACCESS EXCLUSIVE lock, taken first, happened to serialize these
// calls; now the lock comes first, and later callers find the column.)
func TestCreateTablesMigratesConcurrently(t *testing.T) {
	srv := pgtest.Shared(t)
	failed := 0
	for round := range createTablesRounds {
		opts := pgstore.Options{Schema: fmt.Sprintf("old_%d", schemas.Add(1))}
		srv.MustQuery(t, "CREATE SCHEMA "+opts.Schema)
		srv.MustQuery(t, fmt.Sprintf(oldSQL, opts.Schema))
		srv.MustQuery(t, `INSERT INTO `+tableOf(opts, "tokens")+` (account, fingerprint, token) VALUES ('placeholder', '', '')`)
		failed += createAtOnce(t, fmt.Sprintf("round %d, old tables in schema %s", round, opts.Schema), srv.DSN(), opts)
		if n := srv.MustQuery(t, `SELECT count(*) FROM `+tableOf(opts, "tokens")+` WHERE account = 'placeholder'`); n != "1" {
			t.Errorf("the row stored before the migration: %s rows, want 1", n)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent CreateTables calls failed", failed, createTablesReplicas*createTablesRounds)
	}
}

// The same behind PgBouncer in transaction mode (each transaction may run
// on another server connection, and the bouncer lends fewer server
// connections than there are replicas): the lock lives in CreateTables'
// transaction, so it holds there too. Each round has a schema of its own.
func TestCreateTablesConcurrentlyBehindPgBouncer(t *testing.T) {
	srv := pgtest.Shared(t)
	bouncer := srv.StartPgBouncer(t)
	failed := 0
	for round := range createTablesRounds {
		opts := pgstore.Options{Schema: fmt.Sprintf("fresh_%d", schemas.Add(1))}
		srv.MustQuery(t, "CREATE SCHEMA "+opts.Schema)
		failed += createAtOnce(t, fmt.Sprintf("round %d, schema %s", round, opts.Schema), bouncer.DSN(), opts)
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent CreateTables calls failed", failed, createTablesReplicas*createTablesRounds)
	}
}

// createAtOnce opens a pool per replica on dsn, each with a connection
// ready, releases the replicas' CreateTables calls together, and returns
// how many failed (each reported). If all succeeded, it checks that the
// tables work and that no advisory lock of CreateTables is left held.
func createAtOnce(t *testing.T, round, dsn string, opts pgstore.Options) (failed int) {
	t.Helper()
	ctx := ctxFor(t)
	pools := make([]*pgxpool.Pool, createTablesReplicas)
	for i := range pools {
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		// A connection made before the start, so that the calls meet in
		// the DDL rather than spread out by connecting.
		if err := pool.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		pools[i] = pool
	}
	start := make(chan struct{})
	errs := make([]error, len(pools))
	var wg sync.WaitGroup
	for i, pool := range pools {
		wg.Go(func() {
			<-start
			errs[i] = pgstore.CreateTables(ctx, pool, opts)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			failed++
			t.Errorf("%s: replica %d: CreateTables: %v", round, i, err)
		}
	}
	t.Logf("%s: %d of %d CreateTables calls failed", round, failed, len(pools))
	if failed > 0 {
		return failed
	}
	// The advisory lock ended with each call's transaction: none of the
	// replicas' sessions, still open, holds it.
	key := pgstore.CreateTablesLockKey(opts)
	if n := lockSessions(t, pools[0], key, false); n != 0 {
		t.Errorf("%s: %d sessions hold or await CreateTables' advisory lock after every call returned", round, n)
	}
	// The tables work: saved through one replica, loaded through another.
	tok := &oauth2.Token{AccessToken: "at-" + round, RefreshToken: "rt-" + round, Expiry: time.Now().Add(time.Hour)}
	if err := newStore(t, pools[0], opts).Save(ctx, "acct", nil, tok); err != nil {
		t.Fatalf("%s: Save after CreateTables: %v", round, err)
	}
	if got, err := newStore(t, pools[len(pools)-1], opts).Load(ctx, "acct"); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Fatalf("%s: Load through another replica: %v, %v", round, got, err)
	}
	return 0
}

// A replica whose ctx ends while another holds the lock gives up with an
// error that says it was waiting for another CreateTables, and wraps ctx's
// error; once the holder commits, CreateTables runs and leaves the lock
// free.
func TestCreateTablesGivesUpWaitingForTheLock(t *testing.T) {
	_, pool, opts := setUp(t)
	ctx := ctxFor(t)
	key := pgstore.CreateTablesLockKey(opts)
	holder, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key); err != nil {
		t.Fatal(err)
	}

	waiting, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- pgstore.CreateTables(waiting, pool, opts) }()
	// Cancelled once PostgreSQL shows the call waiting for the lock, not
	// after a guess at how long it takes to get there.
	for {
		n := lockSessions(t, pool, key, true)
		if n == 1 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("CreateTables returned while another transaction held its lock: %v", err)
		case <-ctx.Done():
			t.Fatal("CreateTables was never seen waiting for the lock")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	err = <-done
	t.Logf("CreateTables cancelled while waiting: %v", err)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for another CreateTables") {
		t.Errorf("CreateTables cancelled while waiting: %v; want an error that says it was waiting for another CreateTables, wrapping context.Canceled", err)
	}

	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pgstore.CreateTables(ctx, pool, opts); err != nil {
		t.Fatalf("CreateTables once the lock is free: %v", err)
	}
	if n := lockSessions(t, pool, key, false); n != 0 {
		t.Errorf("%d sessions hold or await CreateTables' advisory lock after it returned", n)
	}
	if err := pgstore.CreateTables(ctx, nil, opts); err == nil {
		t.Error("CreateTables with a nil pool: no error")
	}
}

// lockSessions counts the sessions of pool's database that hold or await
// (only those waiting: waiting) the advisory lock key, in pg_locks, where
// a bigint key shows as classid (its high half) and objid (its low half).
func lockSessions(t *testing.T, pool *pgxpool.Pool, key int64, waiting bool) int {
	t.Helper()
	return queryOne[int](t, pool, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1
	AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND classid::bigint = ($1::bigint >> 32) & 4294967295 AND objid::bigint = $1::bigint & 4294967295
	AND NOT (granted AND $2)`, pgx.QueryExecModeExec, key, waiting)
}
