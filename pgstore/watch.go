package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// How Watch learns of changes
//
// Push: a connection of its own (not the pool's: a LISTEN lives as long as
// its session) LISTENs on the store's channel, on which Disconnect and
// Replace NOTIFY the account's key when their transaction commits.
//
// The log: every poll, and after every (re)connection of the listener,
// Watch reads the changes table from a cursor. Ids (bigserial) and times
// are taken before a writing transaction commits, so a row may become
// visible after rows with later ids or times were read: a cursor on either
// would skip it. The cursor is the reading snapshot's xmin instead, the
// oldest transaction still running when the read began: every transaction
// whose row that read did not see either was running then (xid >= xmin) or
// began after (xid >= xmax >= xmin), so the next read, of the rows with
// xid >= the last read's xmin, sees it, with no margin to guess. Rows are
// read again while an older transaction runs (anywhere in the cluster:
// xmin is the cluster's); ids seen are remembered, so each row is reported
// once.
//
// A row the reads cannot have seen is pruned only once older than the
// retention; a watcher that read nothing for half of it (it was cut off, or
// report blocked) reports Change{All}, as it does when the database's xids
// or the log's ids went back (another database: restored from a dump, a
// new server; the log truncated).
//
// Each read also sends a probe, a NOTIFY on a channel of the watcher's own,
// through the pool: if it has not come back on the listen connection by
// probeWait, the connection is taken for dead though it says nothing (a
// network partition, a stopped backend): Watch reports it (Change{Err}),
// drops the connection and makes a new one, and the log carries the
// changes meanwhile.
//
// The listen connection must be PostgreSQL's own session, not one a pooler
// lends: PgBouncer in transaction mode accepts the LISTEN, hands the server
// connection to other clients, and (1.18) exits when a notification comes
// on it while no client holds it. A pooler gives the client a backend key
// of its own making: a connection whose announced process id is not
// pg_backend_pid() is not used (errPooler), and the log alone carries the
// changes.

// Timings of the listener.
const (
	listenBackoffMin = 100 * time.Millisecond // after a failure, doubling up to listenBackoffMax
	listenBackoffMax = 30 * time.Second
	poolerPause      = 5 * time.Minute  // after errPooler: a configuration to fix, not a failure to retry soon
	connectTimeout   = 30 * time.Second // a connection and its LISTEN
	minProbeWait     = 5 * time.Second  // what a probe may take, at least (else 2 polls)
	drainWait        = 100 * time.Millisecond
	firstReadMargin  = time.Minute // see watch.read
)

// probeWait is how long a probe may take to come back before the push is
// taken for lost: long enough for a busy machine's delays, short enough
// to find a dead connection within a few polls.
func probeWait(poll time.Duration) time.Duration {
	return max(2*poll, minProbeWait)
}

// Watch reports every key that a Disconnect or a Replace changed, in this
// process or any other, from the moment it is called until ctx ends (see
// dropboxsign.Watcher): pushed by LISTEN/NOTIFY on a connection of its own
// (Options.ListenDSN), and in any case read from the log of changes every
// poll and after each reconnection of the listener. Failures (a read, the
// listen connection, a probe that did not come back) are reported with Err
// and retried. It returns when ctx ends, having closed its connection.
func (s *Store) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	if poll <= 0 {
		poll = dropboxsign.DefaultWatchPoll
	}
	var probe [8]byte
	rand.Read(probe[:])
	w := &watch{s: s, report: report, poll: poll, start: time.Now(), seen: map[int64]uint64{},
		probeChannel: s.channel + "_" + hex.EncodeToString(probe[:])}
	var listener sync.WaitGroup
	defer listener.Wait() // after ctx ended: the listener returns
	var events chan listenEvent
	if !s.pollOnly {
		events = make(chan listenEvent)
		listener.Go(func() { w.listen(ctx, events) })
	}
	w.read(ctx)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			w.checkProbe(ctx, events)
			w.read(ctx)
		case e := <-events:
			w.handle(ctx, e)
		}
	}
}

// watch is one Watch call's state, owned by its goroutine but for what the
// listener goroutine shares (proven).
type watch struct {
	s            *Store
	report       func(dropboxsign.Change)
	poll         time.Duration
	start        time.Time
	probeChannel string

	// The cursor: see "How Watch learns of changes".
	read1  bool             // a read succeeded
	xmin   uint64           // the last read's snapshot xmin
	readAt time.Time        // its database time
	maxID  int64            // the log's highest id then
	seen   map[int64]uint64 // id → xid of the rows read with xid >= xmin

	drop       context.CancelFunc // the listener's connection, if any: drops it
	probeSince time.Time          // when the oldest probe not yet back was sent; zero: none
	proven     atomic.Bool        // a probe came back on the current connection
}

// listenEvent is what the listener tells the watch loop.
type listenEvent struct {
	up  context.CancelFunc   // a new connection listens; this drops it
	n   *pgconn.Notification // a notification
	err error                // the connection failed, or could not be made
}

// handle acts on a listener's event.
func (w *watch) handle(ctx context.Context, e listenEvent) {
	switch {
	case e.up != nil:
		// Read what was missed while no connection listened (or before
		// this one did).
		w.drop, w.probeSince = e.up, time.Time{}
		w.read(ctx)
	case e.err != nil:
		w.drop, w.probeSince = nil, time.Time{}
		w.report(dropboxsign.Change{Err: fmt.Errorf("pgstore: watch: %w; changes come from the log of changes, read every %v, until it is back", e.err, w.poll)})
	case e.n.Channel == w.probeChannel:
		w.probeSince = time.Time{}
		w.proven.Store(true)
	case e.n.Payload == "":
		// A key too long for a payload: in the log.
		w.read(ctx)
	default:
		w.report(dropboxsign.Change{Key: e.n.Payload})
	}
}

// checkProbe drops the listener's connection if a probe has not come back
// within probeWait, after taking what the listener may have in hand.
func (w *watch) checkProbe(ctx context.Context, events <-chan listenEvent) {
	if w.drop == nil || w.probeSince.IsZero() || time.Since(w.probeSince) < probeWait(w.poll) {
		return
	}
	// The probe may be waiting behind a notification that the listener
	// could not hand over while report ran.
	drain := time.NewTimer(drainWait)
	defer drain.Stop()
	for w.drop != nil && !w.probeSince.IsZero() {
		select {
		case e := <-events:
			w.handle(ctx, e)
		case <-drain.C:
			w.drop()
			w.drop, w.probeSince = nil, time.Time{}
			w.report(dropboxsign.Change{Err: fmt.Errorf("pgstore: watch: the listen connection received nothing for %v, not even its own probe: taken for dead (a network partition?), reconnecting; changes come from the log of changes, read every %v, meanwhile", probeWait(w.poll), w.poll)})
			return
		case <-ctx.Done():
			return
		}
	}
}

// read reads the log of changes from the cursor, reports what it has not
// reported yet, and moves the cursor; with a listener, it also sends a
// probe, if none is on its way.
func (w *watch) read(ctx context.Context) {
	probe := ""
	if w.drop != nil && w.probeSince.IsZero() {
		probe = w.probeChannel
	}
	// The first read has no cursor: it takes its snapshot's xmin, and
	// reports, besides, the rows written since a little before Watch was
	// called (what committed between the call and the snapshot; the
	// margin covers a write's statement begun before the call), at the
	// price of reporting again a few older ones.
	on := `c.xid >= $1::text::xid8`
	arg := any(fmt.Sprint(w.xmin))
	since := time.Since(w.start) + min(firstReadMargin, w.s.retention/4)
	if !w.read1 {
		on = `c.xid >= s.xmin OR c.at >= s.now - make_interval(secs => $1)`
		arg = since.Seconds()
	}
	sent := time.Now()
	rows, err := w.s.pool.Query(ctx, `WITH s AS MATERIALIZED (
	SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin, now() AS now,
		(SELECT max(id) FROM `+w.s.changes+`) AS max_id,
		CASE WHEN $2 <> '' THEN pg_notify($2, '')::text END AS probe
)
SELECT s.xmin::text, s.now, s.max_id, s.probe, c.id, c.account, c.xid::text FROM s LEFT JOIN `+w.s.changes+` AS c ON `+on,
		execMode, arg, probe)
	var (
		xmin  uint64
		now   time.Time
		maxID *int64
		found []change
	)
	if err == nil {
		found, err = scanChanges(rows, &xmin, &now, &maxID)
	}
	if err != nil {
		if ctx.Err() == nil {
			w.report(dropboxsign.Change{Err: fmt.Errorf("pgstore: watch: reading the log of changes: %w", schemaHint(err))})
		}
		return
	}
	if probe != "" {
		w.probeSince = sent
	}
	var why string
	switch {
	case !w.read1 && since >= w.s.retention/2:
		why = "the first read of the log came too late"
	case !w.read1:
	case xmin < w.xmin:
		why = "the database's transaction ids went back (another database?)"
	case now.Sub(w.readAt) >= w.s.retention/2:
		why = "the log was not read for too long"
	case maxID != nil && *maxID < w.maxID:
		why = "the log's ids went back (reset?)"
	}
	if why != "" {
		w.report(dropboxsign.Change{All: true})
		clear(w.seen)
		w.maxID = 0
	}
	for _, c := range found {
		if _, dup := w.seen[c.id]; dup {
			continue
		}
		if c.xid >= xmin {
			w.seen[c.id] = c.xid // read again next time
		}
		w.report(dropboxsign.Change{Key: c.key})
	}
	for id, xid := range w.seen {
		if xid < xmin {
			delete(w.seen, id) // not read again
		}
	}
	w.read1, w.xmin, w.readAt = true, xmin, now
	if maxID != nil && *maxID > w.maxID {
		w.maxID = *maxID
	}
}

// change is a row of the log of changes.
type change struct {
	id  int64
	key string
	xid uint64
}

// scanChanges reads the rows of watch.read's query, and closes them.
func scanChanges(rows pgx.Rows, xmin *uint64, now *time.Time, maxID **int64) ([]change, error) {
	defer rows.Close()
	var found []change
	for rows.Next() {
		var xminText string
		var id *int64
		var key, xid *string
		if err := rows.Scan(&xminText, now, maxID, new(*string), &id, &key, &xid); err != nil {
			return nil, err
		}
		var err error
		if *xmin, err = parseXid(xminText); err != nil {
			return nil, err
		}
		if id == nil || key == nil || xid == nil { // the LEFT JOIN's row when there is none
			continue
		}
		x, err := parseXid(*xid)
		if err != nil {
			return nil, err
		}
		found = append(found, change{*id, *key, x})
	}
	return found, rows.Err()
}

// parseXid parses an xid8 in its text form.
func parseXid(s string) (uint64, error) {
	var x uint64
	if _, err := fmt.Sscan(s, &x); err != nil {
		return 0, fmt.Errorf("a transaction id %q: %w", s, err)
	}
	return x, nil
}

// listen keeps a connection LISTENing on the store's channel and the
// watch's probe channel, and hands what it receives to the watch loop,
// until ctx ends: it makes a new connection, with a growing pause, after
// each failure, and when the loop drops the connection.
func (w *watch) listen(ctx context.Context, events chan<- listenEvent) {
	send := func(e listenEvent) bool {
		select {
		case events <- e:
			return true
		case <-ctx.Done():
			return false
		}
	}
	backoff := listenBackoffMin
	for {
		conn, err := w.connect(ctx)
		if err != nil {
			if ctx.Err() != nil || !send(listenEvent{err: fmt.Errorf("making the listen connection: %w", err)}) {
				return
			}
		} else {
			w.proven.Store(false)
			connCtx, drop := context.WithCancel(ctx)
			if !send(listenEvent{up: drop}) {
				drop()
				closeConn(conn)
				return
			}
			for {
				var n *pgconn.Notification
				n, err = conn.WaitForNotification(connCtx)
				if err != nil || !send(listenEvent{n: n}) {
					break
				}
			}
			dropped := connCtx.Err() != nil
			drop()
			closeConn(conn)
			if ctx.Err() != nil {
				return
			}
			if !dropped && !send(listenEvent{err: fmt.Errorf("the listen connection failed: %w", err)}) {
				return
			}
			if w.proven.Load() {
				backoff = listenBackoffMin // it worked: a new failure
			}
		}
		wait := backoff
		if errors.Is(err, errPooler) {
			wait = poolerPause
		}
		pause := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			pause.Stop()
			return
		case <-pause.C:
		}
		backoff = min(2*backoff, listenBackoffMax)
	}
}

// connect makes the listen connection (Options.ListenDSN, or as the pool
// makes its own) and LISTENs.
func (w *watch) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var cfg *pgx.ConnConfig
	var after func(context.Context, *pgx.Conn) error
	if w.s.listen != nil {
		cfg = w.s.listen.Copy()
	} else {
		pc := w.s.pool.Config()
		cfg, after = pc.ConnConfig, pc.AfterConnect // pc is a copy
		if pc.BeforeConnect != nil {
			if err := pc.BeforeConnect(ctx, cfg); err != nil {
				return nil, err
			}
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if after != nil {
		err = after(ctx, conn)
	}
	if err == nil {
		err = direct(ctx, conn)
	}
	if err == nil {
		// The connection is idle but for notifications: a server-wide
		// idle_session_timeout (PostgreSQL 14 and later) must not end it.
		_, err = conn.Exec(ctx, `SELECT set_config('idle_session_timeout', '0', false) WHERE current_setting('server_version_num')::int >= 140000`, execMode)
	}
	if err == nil {
		_, err = conn.Exec(ctx, `LISTEN `+pgx.Identifier{w.s.channel}.Sanitize()+`; LISTEN `+pgx.Identifier{w.probeChannel}.Sanitize())
	}
	if err != nil {
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

// errPooler is connect's error for a connection through a pooler.
var errPooler = errors.New("the listen connection goes through a connection pooler (the backend process it announced is not the one that serves it): LISTEN needs a session of PostgreSQL's own, and PgBouncer in transaction mode mishandles (1.18: crashes on) the notifications of a LISTEN made through it; point Options.ListenDSN at PostgreSQL itself, or set Options.PollOnly")

// direct checks that conn is a session of PostgreSQL's own, not one that
// a pooler (PgBouncer, in any mode: it cannot tell which) lends between
// transactions: a pooler announces a backend key of its own making, so
// the process id in it is not the backend's.
func direct(ctx context.Context, conn *pgx.Conn) error {
	var pid uint32
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`, execMode).Scan(&pid); err != nil {
		return err
	}
	if pid != conn.PgConn().PID() {
		return errPooler
	}
	return nil
}

// closeConn closes a listen connection, waiting a little for the server to
// hear it (its LISTENs end with its session).
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}
