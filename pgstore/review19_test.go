package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
)

// Review of issue 19 (failing: the lead fixes the code).

// Accounts.Forget's doc: "from then on the store holds nothing of the
// account, not even its key"; docs/connections.md: the logs of changes
// keep keys "for a bounded retention (about a day)". pgstore prunes its
// log only in Disconnect and Replace (logChange's pruned CTE), and Forget
// leaves the log's rows: in a store that sees no later write, a forgotten
// key stays in <prefix>changes for good, however old, even with a watcher
// polling. (FileStore's Forget removes the journal that names the key;
// redisstore trims at each poll.)
func TestReviewAForgottenKeyLeavesTheLogOfChanges(t *testing.T) {
	_, pool, opts := setUp(t)
	s := newStore(t, pool, opts)
	const retention = 50 * time.Millisecond
	pgstore.SetChangeRetention(s, retention)
	ctx := ctxFor(t)
	const key = "erin@example.com"
	if err := s.Disconnect(ctx, key); err != nil {
		t.Fatal(err)
	}
	changes := `"` + opts.Schema + `"."dropboxsign_changes"`
	count := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+changes+` WHERE account = $1`, key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if count() != 1 {
		t.Fatal("Disconnect logged no change")
	}
	// The row is past the retention, by the database's clock.
	for {
		var old bool
		if err := pool.QueryRow(ctx, `SELECT bool_and(at < now() - make_interval(secs => $2)) FROM `+changes+` WHERE account = $1`,
			key, retention.Seconds()).Scan(&old); err != nil {
			t.Fatal(err)
		}
		if old {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(retention / 5):
		}
	}
	if err := s.Forget(ctx, key, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A watcher polls meanwhile, as every replica's does.
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Watch(wctx, 10*time.Millisecond, func(dropboxsign.Change) {}) }()
	defer func() { stop(); <-done }()
	wait, cancel := context.WithTimeout(ctx, 3*time.Second) // 300 polls
	defer cancel()
	for count() != 0 {
		select {
		case <-wait.Done():
			t.Fatalf("after Forget, with the log's row %v past its retention and 300 polls, <prefix>changes still names %q", retention, key)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
