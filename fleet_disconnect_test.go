package dropboxsign_test

import (
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
)

// fileDisconnects runs fleettest.Disconnects on a FileStore shared by the
// worker processes. A FileStore has no push channel to cut: its watch
// checks the journal's size every 50 ms, which no connection can lose, and
// reads it every poll in any case.
func fileDisconnects(t *testing.T, name string, kills int) {
	if testing.Short() {
		t.Skip("a multi-process run of several seconds")
	}
	dir := t.TempDir()
	fs, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fleettest.Disconnects(name)
	cfg.Kills, cfg.StoreEnv = kills, []string{"FLEET_FILESTORE_DIR=" + dir}
	fleettest.CheckDisconnects(t, fleettest.RunDisconnects(t, cfg, fs))
}

// Accounts disconnected at random moments (half of them while their
// refresh is in flight), 6 of them logged in again: no grant written back,
// none handed out by a worker after its watch reported the disconnection
// or past poll + a store read, every new login served by every worker.
func TestFleetDisconnectsOnAFileStore(t *testing.T) {
	fileDisconnects(t, "FileStore", 0)
}

// Three processes disconnecting accounts one at a time, each SIGKILLed
// just after it began one: the store holds the token or the mark, a
// retried Disconnect succeeds, and no worker hands the grant out past the
// bound from it.
func TestFleetDisconnectorKilledOnAFileStore(t *testing.T) {
	fileDisconnects(t, "FileStore, SIGKILLed disconnector", 3)
}
