package dropboxsign_test

import (
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
)

// fileDisconnects is a run with disconnections on a FileStore shared by 4
// worker processes, 50 accounts: refreshes spread over half of an 8 s
// lifetime, each in flight for 300 ms at the fake; a 1 s watch poll. A
// FileStore has no push channel to cut: its watch checks the journal's
// size every 50 ms, which a process cannot lose, and reads it every poll.
func fileDisconnects(t *testing.T, name string, kills int) {
	if testing.Short() {
		t.Skip("a multi-process run of several seconds")
	}
	dir := t.TempDir()
	fs, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fleettest.DisconnectConfig{Name: name, Replicas: 4, Accounts: 50, Callers: 4, Lifetime: 8 * time.Second,
		Latency: 300 * time.Millisecond, Poll: time.Second, Disconnects: 20, Relogins: 6, Window: 4 * time.Second, Kills: kills,
		StoreEnv: []string{"FLEET_FILESTORE_DIR=" + dir}}
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
