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
	fleettest.Check(t, cfg, fleettest.Run(t, cfg, fs))
}

func TestFleetSharingAFileStore(t *testing.T) { fileFleet(t, 0) }

// A process holds account 0's refresh lock past the time its refresh is due
// (half of the 4 s lifetime) and is SIGKILLed at 3 s: the kernel releases its
// flock, and the others refresh then, before the token stops serving at 3.6 s.
func TestFleetSharingAFileStoreSurvivesAKilledLockHolder(t *testing.T) {
	fileFleet(t, 3*time.Second)
}
