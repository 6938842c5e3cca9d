package dropboxsign_test

import (
	"os"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
)

func TestMain(m *testing.M) {
	fleettest.Main(func() (dropboxsign.Store, error) {
		return dropboxsign.NewFileStore(os.Getenv("FLEET_FILESTORE_DIR"))
	})
	os.Exit(m.Run())
}

// checkFleet asserts what a fleet must achieve, whatever its store.
func checkFleet(t *testing.T, cfg fleettest.Config, rep fleettest.Report) {
	t.Helper()
	t.Logf("%d replicas, %d accounts, %s of %s tokens: %d API calls, %d failed; %d refreshes = %.2f per account per token lifetime; %.4f store round trips per API call; %d stale refresh tokens; %d of %d accounts valid after; account 0 first refreshed at %v",
		cfg.Replicas, cfg.Accounts, cfg.Duration, cfg.Lifetime, rep.Calls, rep.Failures, rep.Server.Refreshes,
		rep.RefreshesPerToken, rep.StoreCallsPerCall, rep.Server.StaleRefreshTokens, rep.ValidAccounts, cfg.Accounts, rep.Account0Refreshed.Round(time.Millisecond))
	if rep.Failures != 0 {
		t.Errorf("%d of %d calls failed; first: %s", rep.Failures, rep.Calls, rep.FirstError)
	}
	if rep.Server.StaleRefreshTokens != 0 {
		t.Errorf("%d stale refresh tokens presented", rep.Server.StaleRefreshTokens)
	}
	// Refresh-ahead at half-life makes 2 refreshes per token lifetime for
	// the whole fleet; replicas refreshing on their own would make 2 each.
	if rep.RefreshesPerToken > 3 || rep.RefreshesPerToken < 1 {
		t.Errorf("%.2f refreshes per account per lifetime; want about 2, not %d", rep.RefreshesPerToken, 2*cfg.Replicas)
	}
	if rep.ValidAccounts != cfg.Accounts {
		t.Errorf("%d of %d accounts left with a working refresh token", rep.ValidAccounts, cfg.Accounts)
	}
}

func fileFleet(t *testing.T, kill time.Duration) {
	if testing.Short() {
		t.Skip("a multi-process run of several seconds")
	}
	dir := t.TempDir()
	fs, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fleettest.Config{Replicas: 4, Accounts: 50, Duration: 8 * time.Second, Lifetime: 4 * time.Second,
		Callers: 4, KillAfter: kill, StoreEnv: []string{"FLEET_FILESTORE_DIR=" + dir}}
	rep := fleettest.Run(t, cfg, fs)
	checkFleet(t, cfg, rep)
	if kill > 0 && (rep.Account0Calls == 0 || rep.Account0Refreshed < kill) {
		t.Errorf("account 0: %d calls, first refreshed %v after the start; want calls, and the refresh to wait for the kill at %v",
			rep.Account0Calls, rep.Account0Refreshed, kill)
	}
}

func TestFleetSharingAFileStore(t *testing.T) { fileFleet(t, 0) }

// A process holds account 0's refresh lock past the time its refresh is due
// (half of the 4 s lifetime) and is SIGKILLed at 3 s: the kernel releases its
// flock, and the others refresh then, before the token stops serving at 3.6 s.
func TestFleetSharingAFileStoreSurvivesAKilledLockHolder(t *testing.T) {
	fileFleet(t, 3*time.Second)
}
