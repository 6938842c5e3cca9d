package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
)

// pgDisconnects runs cfg (fleettest.Disconnects) on a schema of its own,
// every connection of the test's and the workers' named by an
// application_name of its own. With cut, the push is cut for the whole
// run: the listen connections (pg_stat_activity's backends of that name
// whose last statement was a LISTEN) are terminated every 20 ms.
func pgDisconnects(t *testing.T, name string, cut bool, kills int) {
	if testing.Short() {
		t.Skip("a multi-process run of several seconds")
	}
	app := fmt.Sprintf("fleet_disconnects_%d", schemas.Load()+1)
	srv, pool, opts := setUp(t, "application_name="+app)
	opts.LeaseTTL = 3 * time.Second // as fleetConfig's, for the same reason
	store := newStore(t, pool, opts)
	cfg := fleettest.Disconnects(name)
	cfg.Kills = kills
	cfg.StoreEnv = []string{"FLEET_PG_DSN=" + srv.DSN() + "&application_name=" + app, "FLEET_PG_SCHEMA=" + opts.Schema, "FLEET_PG_LEASE=3s"}
	if cut {
		cfg.Cut = func(ctx context.Context) error {
			_, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE application_name = $1 AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()`, app)
			return err
		}
	}
	fleettest.CheckDisconnects(t, fleettest.RunDisconnects(t, cfg, store))
}

// Accounts disconnected at random moments (half of them while their
// refresh is in flight), 6 of them logged in again: no grant written back,
// none handed out by a worker after its watch reported the disconnection
// or past poll + a store read, every new login served by every worker.
func TestFleetDisconnects(t *testing.T) { pgDisconnects(t, "PostgreSQL", false, 0) }

// The same with every listen connection terminated again and again: the
// workers learn of changes by their 1 s poll of the log.
func TestFleetDisconnectsWithListenCut(t *testing.T) {
	pgDisconnects(t, "PostgreSQL, LISTEN cut", true, 0)
}

// Three processes disconnecting accounts one at a time, each SIGKILLed
// just after it began one: the store holds the token or the mark, a
// retried Disconnect succeeds, and no worker hands the grant out past the
// bound from it.
func TestFleetDisconnectorKilled(t *testing.T) {
	pgDisconnects(t, "PostgreSQL, SIGKILLed disconnector", false, 3)
}
