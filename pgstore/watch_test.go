package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"
)

// This file checks Disconnect, Forget and Replace's log of changes in
// PostgreSQL, and Watch: pushed by LISTEN/NOTIFY, read from the log every
// poll, across stores as across processes, with the listen connection cut,
// silent, or behind PgBouncer.

// patience bounds every wait for something the store does: far beyond a
// push or a poll on a busy machine, so that only what never comes fails.
const patience = 30 * time.Second

// tableOf names one of opts' tables in SQL.
func tableOf(opts pgstore.Options, name string) string {
	schema, prefix := opts.Schema, opts.TablePrefix
	if prefix == "" {
		prefix = "dropboxsign_"
	}
	return pgx.Identifier{schema, prefix + name}.Sanitize()
}

// newPool returns a pool of its own on dsn, as another process has.
func newPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// queryOne runs sql on pool and scans its one row into T.
func queryOne[T any](t *testing.T, pool *pgxpool.Pool, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// eventually polls cond (a read of the database's state: nothing to wait
// on) until it holds, or fails t after patience.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(patience); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, patience)
		}
	}
}

// recorder is a Watch's report function and what it reported.
type recorder struct {
	mu      sync.Mutex
	changes []dropboxsign.Change
	signal  chan struct{}
	hold    func(dropboxsign.Change) // if set, called in report (it may block)
}

func newRecorder() *recorder { return &recorder{signal: make(chan struct{}, 1)} }

func (r *recorder) report(c dropboxsign.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	hold := r.hold
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
	if hold != nil {
		hold(c)
	}
}

// mark is how many reports came so far.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes)
}

// await waits up to d for a report after the first from that matches, and
// says whether one came.
func (r *recorder) await(from int, d time.Duration, match func(dropboxsign.Change) bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, c := range r.changes[from:] {
			if match(c) {
				r.mu.Unlock()
				return true
			}
		}
		r.mu.Unlock()
		select {
		case <-r.signal:
		case <-deadline.C:
			return false
		}
	}
}

func (r *recorder) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, c := range r.changes {
		switch {
		case c.Err != nil:
			fmt.Fprintf(&b, " Err(%v)", c.Err)
		case c.All:
			b.WriteString(" All")
		default:
			fmt.Fprintf(&b, " %.40q", c.Key)
		}
	}
	return b.String()
}

func (r *recorder) errs() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, c := range r.changes {
		if c.Err != nil {
			errs = append(errs, c.Err)
		}
	}
	return errs
}

func isKey(key string) func(dropboxsign.Change) bool {
	return func(c dropboxsign.Change) bool { return c.Err == nil && c.Key == key }
}

func isErr(text string) func(dropboxsign.Change) bool {
	return func(c dropboxsign.Change) bool { return c.Err != nil && strings.Contains(c.Err.Error(), text) }
}

// watching is a Watch running in a goroutine; it is stopped, and must
// return, when the test ends.
type watching struct {
	name   string
	rec    *recorder
	cancel context.CancelFunc
	done   chan struct{}
}

func startWatch(t *testing.T, s *pgstore.Store, name string, poll time.Duration, rec *recorder) *watching {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watching{name: name, rec: rec, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		s.Watch(ctx, poll, rec.report)
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

func (w *watching) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(patience):
		t.Errorf("the watch %s did not return within %v of its context's end", w.name, patience)
	}
}

// expect waits for w to report key, after from.
func (w *watching) expect(t *testing.T, from int, key, what string) {
	t.Helper()
	if !w.rec.await(from, patience, isKey(key)) {
		t.Fatalf("the watch %s did not report %s (%.40q) within %v; it reported:%s", w.name, what, key, patience, w.rec.summary())
	}
}

// awaitStarted replaces a key of its own through s until w reports it:
// from then on w watches (its first read is done), by push if its poll is
// long.
func (w *watching) awaitStarted(t *testing.T, s *pgstore.Store) {
	t.Helper()
	key := "warm-" + w.name
	for n, try := 1, 20*time.Millisecond; ; n, try = n+1, min(2*try, time.Second) {
		from := w.rec.mark()
		if err := s.Replace(context.Background(), key, &oauth2.Token{AccessToken: "at" + strconv.Itoa(n), RefreshToken: "rt"}); err != nil {
			t.Fatal(err)
		}
		if w.rec.await(from, try, isKey(key)) {
			return
		}
		if n > 40 {
			t.Fatalf("the watch %s reported none of %d Replaces; it reported:%s", w.name, n, w.rec.summary())
		}
	}
}

// Disconnect writes the mark (no token material), a row of the log and a
// notification in one transaction: a Disconnect that fails leaves none of
// them; Replace logs and notifies too; an existing mark keeps its time;
// Forget rounds before up, as PostgreSQL keeps microseconds.
func TestDisconnectMarkLogAndNotifyInOneTransaction(t *testing.T) {
	srv, pool, opts := setUp(t)
	ctx := ctxFor(t)
	s := newStore(t, pool, opts)
	listener, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(context.Background())
	if _, err := listener.Exec(ctx, "LISTEN "+pgx.Identifier{pgstore.Channel(s)}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, patience)
		defer cancel()
		n, err := listener.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return n.Payload
	}
	logged := func(key string) int {
		return queryOne[int](t, pool, `SELECT count(*) FROM `+tableOf(opts, "changes")+` WHERE account = $1`, key)
	}

	tok := &oauth2.Token{AccessToken: "access-secret", RefreshToken: "refresh-secret", Expiry: time.Now().Add(time.Hour)}
	if err := s.Save(ctx, "alice", nil, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.Disconnect(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "alice" {
		t.Errorf("notified %q, want alice", got)
	}
	row := queryOne[string](t, pool, `SELECT concat_ws('|', fingerprint, encode(token, 'hex'), refused_at, disconnected_at IS NOT NULL) FROM `+tableOf(opts, "tokens")+` WHERE account = 'alice'`)
	if row != "||t" {
		t.Errorf("the mark's row holds %q: want empty fingerprint and token, no refusal, a time", row)
	}
	var d *dropboxsign.DisconnectedError
	if _, err := s.Load(ctx, "alice"); !errors.As(err, &d) {
		t.Fatalf("Load: %v", err)
	}
	if n := logged("alice"); n != 1 {
		t.Errorf("%d rows logged for alice, want 1", n)
	}

	// Again: the mark keeps its time; the change is logged and notified
	// again (a repeated report is allowed, a missing one is not).
	if err := s.Disconnect(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "alice" {
		t.Errorf("notified %q, want alice", got)
	}
	var again *dropboxsign.DisconnectedError
	if _, err := s.Load(ctx, "alice"); !errors.As(err, &again) || !again.Since.Equal(d.Since) {
		t.Errorf("after a second Disconnect: %v; want the mark of %v", err, d.Since)
	}

	// Forget: before is rounded up to PostgreSQL's microsecond, so that
	// a mark is forgotten exactly when it is older than before.
	if err := s.Forget(ctx, "alice", d.Since); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Errorf("Forget(at the mark's time) = %v, want ErrConflict", err)
	}
	if err := s.Forget(ctx, "alice", d.Since.Add(time.Nanosecond)); err != nil {
		t.Errorf("Forget(a nanosecond after the mark) = %v, want nil", err)
	}
	if _, err := s.Load(ctx, "alice"); !errors.Is(err, dropboxsign.ErrNotFound) {
		t.Errorf("after Forget: %v, want ErrNotFound", err)
	}

	// Replace logs and notifies.
	if err := s.Replace(ctx, "alice", tok); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "alice" {
		t.Errorf("notified %q, want alice", got)
	}
	if n := logged("alice"); n != 1 {
		// Forget took the two Disconnects' rows with the mark (they hold
		// the key); Replace logged its own.
		t.Errorf("%d rows logged for alice, want 1", n)
	}

	// A Disconnect that fails (a statement timeout: another session
	// holds the row) leaves no mark, no row in the log, no notification:
	// the next notification is the next successful write's.
	slow := newStore(t, newPool(t, srv.DSN()+"&statement_timeout=200"), opts)
	if err := s.Save(ctx, "bob", nil, tok); err != nil {
		t.Fatal(err)
	}
	blocker, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blocker.Exec(ctx, `SELECT * FROM `+tableOf(opts, "tokens")+` WHERE account = 'bob' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	if err := slow.Disconnect(ctx, "bob"); err == nil || !strings.Contains(err.Error(), "statement timeout") {
		t.Fatalf("Disconnect of a locked row: %v, want a statement timeout", err)
	}
	blocker.Rollback(ctx)
	if got, err := s.Load(ctx, "bob"); err != nil || got.AccessToken != tok.AccessToken {
		t.Errorf("after a failed Disconnect bob holds %v, %v; want the token", got, err)
	}
	if n := logged("bob"); n != 0 {
		t.Errorf("a failed Disconnect logged %d rows", n)
	}
	if err := s.Disconnect(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "carol" {
		t.Errorf("notified %q after a failed Disconnect of bob, want carol's", got)
	}
}

// A replica of the version before disconnection marks, replacing a mark
// with a new login's token, leaves disconnected_at set beside the token:
// the token, the newer, is what the key holds, and the next write clears
// the column. No such replica can write over a mark otherwise: its Save
// compares a fingerprint (the mark's is empty) or, with prev nil, takes
// only a refusal mark (refused_at set), and its Load finds no token.
func TestMarkReplacedByAnOlderVersion(t *testing.T) {
	_, pool, opts := setUp(t)
	ctx := ctxFor(t)
	s := newStore(t, pool, opts)
	tok := &oauth2.Token{AccessToken: "at-new-login", RefreshToken: "rt-new-login"}
	if err := s.Save(ctx, "model", nil, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.Disconnect(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	// The older version's Replace: every column but disconnected_at.
	mustExec(t, pool, `UPDATE `+tableOf(opts, "tokens")+` AS t SET fingerprint = m.fingerprint, token = m.token, refused_at = NULL, updated_at = now()
FROM `+tableOf(opts, "tokens")+` AS m WHERE t.account = 'dave' AND m.account = 'model'`)
	got, err := s.Load(ctx, "dave")
	if err != nil || got.AccessToken != tok.AccessToken {
		t.Fatalf("Load = %v, %v; want the new login's token", got, err)
	}
	for d, err := range s.Disconnected(ctx) {
		if err != nil || d.Key == "dave" {
			t.Errorf("Disconnected lists %v, %v", d, err)
		}
	}
	next := &oauth2.Token{AccessToken: "at-2", RefreshToken: "rt-2"}
	if err := s.Save(ctx, "dave", got, next); err != nil {
		t.Fatalf("Save over it: %v", err)
	}
	if n := queryOne[int](t, pool, `SELECT count(*) FROM `+tableOf(opts, "tokens")+` WHERE disconnected_at IS NOT NULL`); n != 0 {
		t.Errorf("%d rows keep disconnected_at after the Save", n)
	}

	// What the older version would do over a real mark changes nothing.
	if err := s.Disconnect(ctx, "erin"); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`INSERT INTO ` + tableOf(opts, "tokens") + ` AS t (account, fingerprint, token, refused_at, updated_at) VALUES ('erin', 'fp', 'tok', NULL, now())
ON CONFLICT (account) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token, refused_at = NULL, updated_at = now() WHERE t.refused_at IS NOT NULL`,
		`UPDATE ` + tableOf(opts, "tokens") + ` SET fingerprint = 'fp', token = 'tok' WHERE account = 'erin' AND fingerprint = 'fp' AND refused_at IS NULL`,
		`UPDATE ` + tableOf(opts, "tokens") + ` SET fingerprint = NULL, token = NULL, refused_at = now() WHERE account = 'erin' AND fingerprint = 'fp' AND refused_at IS NULL`,
	} {
		mustExec(t, pool, sql)
	}
	if _, err := s.Load(ctx, "erin"); !errors.As(err, new(*dropboxsign.DisconnectedError)) {
		t.Errorf("after an older version's writes: %v, want the mark", err)
	}
}

// Each Disconnect or Replace deletes at most 100 rows of the log older
// than its retention, and none younger.
func TestPruneIsBounded(t *testing.T) {
	_, pool, opts := setUp(t)
	ctx := ctxFor(t)
	s := newStore(t, pool, opts)
	pgstore.SetChangeRetention(s, time.Hour)
	mustExec(t, pool, `INSERT INTO `+tableOf(opts, "changes")+` (account, at) SELECT 'old-' || i, now() - interval '2 hours' FROM generate_series(1, 250) i`)
	mustExec(t, pool, `INSERT INTO `+tableOf(opts, "changes")+` (account, at) VALUES ('young', now() - interval '50 minutes')`)
	old := func() int {
		return queryOne[int](t, pool, `SELECT count(*) FROM `+tableOf(opts, "changes")+` WHERE account LIKE 'old-%'`)
	}
	tok := &oauth2.Token{AccessToken: "a", RefreshToken: "r"}
	for i, want := range []int{150, 50, 0, 0} {
		var err error
		if i%2 == 0 {
			err = s.Disconnect(ctx, fmt.Sprint("k", i))
		} else {
			err = s.Replace(ctx, fmt.Sprint("k", i), tok)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n := old(); n != want {
			t.Errorf("after %d writes %d old rows remain, want %d", i+1, n, want)
		}
	}
	if n := queryOne[int](t, pool, `SELECT count(*) FROM `+tableOf(opts, "changes")); n != 5 {
		t.Errorf("%d rows in the log, want the young one and the 4 writes'", n)
	}
}

// Two stores on pools of their own (two processes) see each other's
// Disconnects and Replaces, and their own, by push: their poll is an hour.
func TestWatchAcrossStores(t *testing.T) {
	srv, poolA, opts := setUp(t)
	ctx := ctxFor(t)
	a := newStore(t, poolA, opts)
	b := newStore(t, newPool(t, srv.DSN()), opts)
	wa := startWatch(t, a, "a", time.Hour, newRecorder())
	wb := startWatch(t, b, "b", time.Hour, newRecorder())
	wa.awaitStarted(t, b)
	wb.awaitStarted(t, a)
	for _, step := range []struct {
		by   *pgstore.Store
		key  string
		what string
	}{
		{b, "by-b-disconnect", "Disconnect"},
		{a, "by-a-disconnect", "Disconnect"},
		{a, "by-a-replace", "Replace"},
		{b, "by-b-disconnect", "Replace"}, // a new login over the mark
	} {
		fa, fb := wa.rec.mark(), wb.rec.mark()
		var err error
		if step.what == "Disconnect" {
			err = step.by.Disconnect(ctx, step.key)
		} else {
			err = step.by.Replace(ctx, step.key, &oauth2.Token{AccessToken: "at-" + step.key, RefreshToken: "rt"})
		}
		if err != nil {
			t.Fatal(err)
		}
		wa.expect(t, fa, step.key, step.what)
		wb.expect(t, fb, step.key, step.what)
	}
	for _, w := range []*watching{wa, wb} {
		if errs := w.rec.errs(); len(errs) > 0 {
			t.Errorf("the watch %s reported failures: %v", w.name, errs)
		}
	}
}

// A change whose transaction began before a read of the log and committed
// after it has an id and a time below those that read saw: the poll
// reports it all the same (the cursor is the read's snapshot, not an id or
// a time). PollOnly: nothing is pushed.
func TestWatchReadsACommitLaterThanNewerRows(t *testing.T) {
	_, pool, opts := setUp(t)
	ctx := ctxFor(t)
	opts.PollOnly = true
	s := newStore(t, pool, opts)
	w := startWatch(t, s, "poll", 20*time.Millisecond, newRecorder())
	w.awaitStarted(t, s)
	late, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	if _, err := late.Exec(ctx, `INSERT INTO `+tableOf(opts, "changes")+` (account) VALUES ('late')`); err != nil {
		t.Fatal(err)
	}
	from := w.rec.mark()
	if err := s.Disconnect(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	w.expect(t, from, "after", "a Disconnect") // read while late's transaction runs
	from = w.rec.mark()
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	w.expect(t, from, "late", "a change committed after newer rows were read")
}

// The listen connections are terminated, and cannot come back for a while
// (their role may not log in): each watch reports the failure; a change
// made meanwhile is reported by the one whose poll is short, and, once
// they can log in again, by the one whose poll is an hour, at its
// reconnection; and then push works again: that one reports the next
// change.
func TestWatchListenConnectionTerminated(t *testing.T) {
	srv, pool, opts := setUp(t)
	ctx := ctxFor(t)
	role := fmt.Sprintf("listener_%d", schemas.Add(1))
	srv.MustQuery(t, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() {
		srv.Query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '" + role + "'")
		srv.Query("DROP ROLE " + role) // may fail until its sessions are gone: the server is the test binary's
	})
	listenOpts := opts
	listenOpts.ListenDSN = fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", role, srv.Port)
	watched := newStore(t, pool, listenOpts)
	writer := newStore(t, newPool(t, srv.DSN()), opts)
	fast := startWatch(t, watched, "fast", 100*time.Millisecond, newRecorder())
	slow := startWatch(t, watched, "slow", time.Hour, newRecorder())
	fast.awaitStarted(t, writer)
	slow.awaitStarted(t, writer)
	listeners := func() int {
		return queryOne[int](t, pool, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, role)
	}
	eventually(t, "both watches listen", func() bool { return listeners() == 2 })

	ff, fs := fast.rec.mark(), slow.rec.mark()
	srv.MustQuery(t, "ALTER ROLE "+role+" NOLOGIN")
	srv.MustQuery(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '"+role+"'")
	for _, w := range []*watching{fast, slow} {
		from := map[*watching]int{fast: ff, slow: fs}[w]
		if !w.rec.await(from, patience, isErr("listen connection")) {
			t.Fatalf("the watch %s did not report its listen connection's end; it reported:%s", w.name, w.rec.summary())
		}
	}
	from := slow.rec.mark()
	ff = fast.rec.mark()
	if err := writer.Disconnect(ctx, "while-down"); err != nil {
		t.Fatal(err)
	}
	fast.expect(t, ff, "while-down", "a Disconnect made while no connection could listen")

	srv.MustQuery(t, "ALTER ROLE "+role+" LOGIN")
	slow.expect(t, from, "while-down", "at its reconnection, the Disconnect made while it was down")
	from = slow.rec.mark()
	if err := writer.Disconnect(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	slow.expect(t, from, "after", "by push, once reconnected, a later Disconnect")
}

// A listen connection that goes silent without failing (its backend
// stopped, as behind a network partition): its probe does not come back,
// the watch reports it, makes a new connection, and reports changes.
func TestWatchSilentListenConnection(t *testing.T) {
	srv, pool, opts := setUp(t)
	ctx := ctxFor(t)
	app := fmt.Sprintf("silent_%d", schemas.Add(1))
	opts.ListenDSN = srv.DSN() + "&application_name=" + app
	s := newStore(t, pool, opts)
	w := startWatch(t, s, "w", 100*time.Millisecond, newRecorder())
	w.awaitStarted(t, s)
	pids := func() []int {
		rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY backend_start`, app)
		if err != nil {
			t.Fatal(err)
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			t.Fatal(err)
		}
		return pids
	}
	var stopped int
	eventually(t, "the watch listens", func() bool {
		p := pids()
		if len(p) == 1 {
			stopped = p[0]
		}
		return len(p) == 1
	})
	from := w.rec.mark()
	if err := syscall.Kill(stopped, syscall.SIGSTOP); err != nil {
		t.Skipf("cannot stop the listen connection's backend (pid %d): %v", stopped, err)
	}
	t.Cleanup(func() {
		syscall.Kill(stopped, syscall.SIGCONT)
		srv.Query(fmt.Sprintf("SELECT pg_terminate_backend(%d)", stopped))
	})
	// The watch says something is wrong: usually that its probe came
	// back from nothing; on a busy machine, a reconnection it was making
	// may time out first. Either way what matters follows: a new listen
	// connection, and changes pushed again.
	if !w.rec.await(from, patience, isErr("listen")) {
		t.Fatalf("the watch did not report its silent connection; it reported:%s", w.rec.summary())
	}
	eventually(t, "a new listen connection", func() bool {
		for _, p := range pids() {
			if p != stopped {
				return true
			}
		}
		return false
	})
	from = w.rec.mark()
	if err := s.Disconnect(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	w.expect(t, from, "after", "a Disconnect after the new connection")
}

// Behind PgBouncer in transaction mode: with ListenDSN pointing at
// PostgreSQL itself, changes are pushed (the poll is an hour) and nothing
// fails; without, the watch finds that its connection is a pooler's, says
// so, does not LISTEN through it, and its poll reports changes.
func TestWatchBehindPgBouncer(t *testing.T) {
	srv, _, opts := setUp(t)
	ctx := ctxFor(t)
	bouncer := srv.StartPgBouncer(t)
	pooled := newPool(t, bouncer.DSN())
	writer := newStore(t, newPool(t, bouncer.DSN()), opts)

	t.Run("ListenDSN direct", func(t *testing.T) {
		o := opts
		o.ListenDSN = srv.DSN()
		w := startWatch(t, newStore(t, pooled, o), "direct", time.Hour, newRecorder())
		w.awaitStarted(t, writer)
		from := w.rec.mark()
		if err := writer.Disconnect(ctx, "pushed"); err != nil {
			t.Fatal(err)
		}
		w.expect(t, from, "pushed", "a Disconnect through PgBouncer")
		w.stop(t)
		if errs := w.rec.errs(); len(errs) > 0 {
			t.Errorf("failures reported: %v", errs)
		}
	})
	t.Run("default", func(t *testing.T) {
		w := startWatch(t, newStore(t, pooled, opts), "through the bouncer", 100*time.Millisecond, newRecorder())
		if !w.rec.await(0, patience, isErr("pooler")) {
			t.Fatalf("the watch did not report that it cannot listen through PgBouncer; it reported:%s", w.rec.summary())
		}
		w.awaitStarted(t, writer)
		from := w.rec.mark()
		if err := writer.Disconnect(ctx, "polled"); err != nil {
			t.Fatal(err)
		}
		w.expect(t, from, "polled", "by its poll, a Disconnect through PgBouncer")
		if _, err := writer.Load(ctx, "polled"); !errors.As(err, new(*dropboxsign.DisconnectedError)) {
			t.Errorf("the bouncer after the watch: %v", err)
		}
	})
}

// A watcher that read nothing of the log for longer than its retention
// (its report blocked here) reports All: the rows it did not see may be
// gone.
func TestWatchReportsAllPastTheRetention(t *testing.T) {
	_, pool, opts := setUp(t)
	ctx := ctxFor(t)
	s := newStore(t, pool, opts)
	const retention = 2 * time.Second
	pgstore.SetChangeRetention(s, retention)
	rec := newRecorder()
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	rec.hold = func(c dropboxsign.Change) {
		if c.Key == "hold" {
			once.Do(func() { close(held); <-release })
		}
	}
	w := startWatch(t, s, "w", 50*time.Millisecond, rec)
	w.awaitStarted(t, s)
	if err := s.Disconnect(ctx, "hold"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(patience):
		t.Fatalf("hold was not reported; reports:%s", rec.summary())
	}
	// The watch read last before this moment of the database's clock:
	// wait until the retention has passed since.
	t0 := queryOne[time.Time](t, pool, `SELECT clock_timestamp()`)
	eventually(t, "the retention passes", func() bool {
		return queryOne[bool](t, pool, `SELECT clock_timestamp() > $1::timestamptz + make_interval(secs => $2)`, t0, retention.Seconds())
	})
	if err := s.Disconnect(ctx, "meanwhile"); err != nil { // prunes hold's row
		t.Fatal(err)
	}
	from := rec.mark()
	close(release)
	if !rec.await(from, patience, func(c dropboxsign.Change) bool { return c.All }) {
		t.Fatalf("no All after the watch was held past the retention; it reported:%s", rec.summary())
	}
}

// A key too long for a NOTIFY payload is notified empty: the watch reads
// the log, which holds it.
func TestWatchKeyTooLongForAPayload(t *testing.T) {
	_, pool, opts := setUp(t)
	ctx := ctxFor(t)
	s := newStore(t, pool, opts)
	w := startWatch(t, s, "w", time.Hour, newRecorder())
	w.awaitStarted(t, s)
	long := strings.Repeat("k", 9000)
	from := w.rec.mark()
	if err := s.Disconnect(ctx, long); err != nil {
		t.Fatal(err)
	}
	w.expect(t, from, long, "a 9000-byte key")
}

// Watch returns when its context ends, and closes its listen connection.
func TestWatchClosesItsConnection(t *testing.T) {
	srv, pool, opts := setUp(t)
	app := fmt.Sprintf("closes_%d", schemas.Add(1))
	opts.ListenDSN = srv.DSN() + "&application_name=" + app
	s := newStore(t, pool, opts)
	w := startWatch(t, s, "w", time.Hour, newRecorder())
	w.awaitStarted(t, s)
	count := func() int {
		return queryOne[int](t, pool, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app)
	}
	eventually(t, "the watch listens", func() bool { return count() == 1 })
	w.stop(t)
	eventually(t, "the listen connection closes", func() bool { return count() == 0 })
}

// A ListenDSN that does not parse is refused, without repeating it (it may
// hold a password).
func TestBadListenDSN(t *testing.T) {
	_, pool, opts := setUp(t)
	opts.ListenDSN = "postgres://user:hunter2@host:notaport/db"
	_, err := pgstore.New(pool, opts)
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "ListenDSN") {
		t.Errorf("New: %v; want an error naming ListenDSN, without the password", err)
	}
}

// oldSQL is the DDL of the version before disconnection marks, for the
// default prefix, in schema %[1]s.
const oldSQL = `CREATE TABLE IF NOT EXISTS "%[1]s"."dropboxsign_tokens" (
	account     text PRIMARY KEY,
	fingerprint text,
	token       bytea,
	refused_at  timestamptz,
	updated_at  timestamptz NOT NULL DEFAULT now(),
	CHECK ((token IS NULL) = (refused_at IS NOT NULL) AND (token IS NULL) = (fingerprint IS NULL))
);
CREATE INDEX IF NOT EXISTS "dropboxsign_tokens_refused" ON "%[1]s"."dropboxsign_tokens" (refused_at) WHERE refused_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS "%[1]s"."dropboxsign_locks" (
	account    text PRIMARY KEY,
	owner      text NOT NULL,
	expires_at timestamptz NOT NULL
);`

// A database whose tables the previous version made, with a token and a
// refusal mark: the store says what is missing; CreateTables brings the
// tables up to date (its CHECK kept), what they held loads, and disconnect
// and watch work; called again, it takes no lock that waits for readers.
func TestOldTablesMigrate(t *testing.T) {
	srv, pool, current := setUp(t)
	ctx := ctxFor(t)
	opts := pgstore.Options{Schema: fmt.Sprintf("old_%d", schemas.Add(1))}
	srv.MustQuery(t, "CREATE SCHEMA "+opts.Schema)
	srv.MustQuery(t, fmt.Sprintf(oldSQL, opts.Schema))
	// Rows as the previous version wrote them: the same columns.
	tok := &oauth2.Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: time.Now().Add(time.Hour).Truncate(time.Second)}
	cur := newStore(t, pool, current)
	if err := cur.Save(ctx, "old-token", nil, tok); err != nil {
		t.Fatal(err)
	}
	if err := cur.Save(ctx, "old-refused", nil, tok); err != nil {
		t.Fatal(err)
	}
	if err := cur.MarkRefused(ctx, "old-refused", tok); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, `INSERT INTO `+tableOf(opts, "tokens")+` SELECT account, fingerprint, token, refused_at, updated_at FROM `+tableOf(current, "tokens"))

	s := newStore(t, pool, opts)
	if _, err := s.Load(ctx, "old-token"); err == nil || !strings.Contains(err.Error(), "CreateTables") {
		t.Errorf("Load before the migration: %v; want an error that says to run CreateTables", err)
	}
	if err := pgstore.CreateTables(ctx, pool, opts); err != nil {
		t.Fatalf("CreateTables over the old tables: %v", err)
	}
	if got, err := s.Load(ctx, "old-token"); err != nil || got.AccessToken != tok.AccessToken {
		t.Errorf("the old token: %v, %v", got, err)
	}
	if _, err := s.Load(ctx, "old-refused"); !errors.As(err, new(*dropboxsign.RefusedError)) {
		t.Errorf("the old refusal mark: %v", err)
	}
	if n := queryOne[int](t, pool, `SELECT count(*) FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'c'`, tableOf(opts, "tokens")); n != 1 {
		t.Errorf("%d CHECK constraints, want the old one", n)
	}
	w := startWatch(t, s, "w", time.Hour, newRecorder())
	w.awaitStarted(t, s)
	from := w.rec.mark()
	if err := s.Disconnect(ctx, "old-token"); err != nil {
		t.Fatal(err)
	}
	w.expect(t, from, "old-token", "a Disconnect")
	if err := s.Save(ctx, "old-token", tok, &oauth2.Token{AccessToken: "a2", RefreshToken: "r2"}); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Errorf("Save over the mark: %v, want ErrConflict", err)
	}
	n := 0
	for d, err := range s.Disconnected(ctx) {
		if err != nil || d.Key != "old-token" {
			t.Errorf("Disconnected: %v, %v", d, err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("Disconnected listed %d, want 1", n)
	}

	// Up to date: CreateTables again, while a reader's transaction holds
	// the tokens table (ACCESS SHARE), does not wait for it: it takes no
	// ACCESS EXCLUSIVE lock (ALTER TABLE) when there is nothing to add.
	reader, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Rollback(ctx)
	if _, err := reader.Exec(ctx, `SELECT count(*) FROM `+tableOf(opts, "tokens")); err != nil {
		t.Fatal(err)
	}
	bounded, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pgstore.CreateTables(bounded, pool, opts); err != nil {
		t.Errorf("CreateTables while a reader holds the table: %v", err)
	}
}

// The listen connection is idle but for notifications: a server's
// idle_session_timeout (here the listening role's, 300 ms) does not end it.
func TestWatchListenSurvivesIdleSessionTimeout(t *testing.T) {
	srv, pool, opts := setUp(t)
	if v := queryOne[int](t, pool, `SELECT current_setting('server_version_num')::int`); v < 140000 {
		t.Skipf("PostgreSQL %d has no idle_session_timeout", v)
	}
	role := fmt.Sprintf("idler_%d", schemas.Add(1))
	srv.MustQuery(t, "CREATE ROLE "+role+" LOGIN")
	srv.MustQuery(t, "ALTER ROLE "+role+" SET idle_session_timeout = '300ms'")
	t.Cleanup(func() {
		srv.Query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '" + role + "'")
		srv.Query("DROP ROLE " + role)
	})
	opts.ListenDSN = fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", role, srv.Port)
	s := newStore(t, pool, opts)
	w := startWatch(t, s, "w", time.Hour, newRecorder())
	w.awaitStarted(t, s)
	var pid int
	var started time.Time
	eventually(t, "the watch listens", func() bool {
		err := pool.QueryRow(context.Background(), `SELECT pid, backend_start FROM pg_stat_activity WHERE usename = $1`, role).Scan(&pid, &started)
		return err == nil
	})
	// Ten timeouts later, by the database's clock, the same session is
	// there, and nothing failed.
	eventually(t, "3 s pass", func() bool {
		return queryOne[bool](t, pool, `SELECT clock_timestamp() > $1::timestamptz + interval '3 seconds'`, started)
	})
	if n := queryOne[int](t, pool, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid); n != 1 {
		t.Errorf("the listen connection was ended: %v", w.rec.errs())
	}
	from := w.rec.mark()
	if err := s.Disconnect(context.Background(), "after"); err != nil {
		t.Fatal(err)
	}
	w.expect(t, from, "after", "a Disconnect, pushed")
	if errs := w.rec.errs(); len(errs) > 0 {
		t.Errorf("failures reported: %v", errs)
	}
}
