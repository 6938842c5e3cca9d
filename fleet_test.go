package dropboxsign_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
)

func TestMain(m *testing.M) {
	fleettest.Main(func() (dropboxsign.Store, error) {
		opts, err := rolloutStoreOptions() // FLEET_SEALER: see rollout_test.go
		if err != nil {
			return nil, err
		}
		if keys := os.Getenv("FLEET_SEALER_KEYS"); keys != "" {
			var raw [][]byte
			for _, k := range strings.Split(keys, ",") {
				b, err := hex.DecodeString(k)
				if err != nil {
					return nil, err
				}
				raw = append(raw, b)
			}
			s, err := dropboxsign.NewSealer(raw...)
			if err != nil {
				return nil, err
			}
			opts = append(opts, dropboxsign.WithSealer(s))
		}
		return dropboxsign.NewFileStore(os.Getenv("FLEET_FILESTORE_DIR"), opts...)
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
// flock, and the others refresh then, never before the kill (on a quiet
// machine, before the seeded token stops serving at 3.6 s; callers wait
// rather than fail if not).
func TestFleetSharingAFileStoreSurvivesAKilledLockHolder(t *testing.T) {
	fileFleet(t, 3*time.Second)
}

// Encryption keys rotated across a running fleet, as Sealer's doc says to:
// [old] (the seeded files are plain: sealed at their first save); a rolling
// deploy of [old, new]; then of [new, old]; then [new] alone. Replicas with
// different keys run side by side at each step, and none may fail to open a
// token, nor lose one.
func TestFleetRotatesEncryptionKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("a multi-process run of several seconds")
	}
	dir := t.TempDir()
	fs, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	old, new := hex.EncodeToString(bytes.Repeat([]byte{1}, 32)), hex.EncodeToString(bytes.Repeat([]byte{2}, 32))
	cfg := fleettest.Config{Accounts: 20, Lifetime: 2 * time.Second, StoreEnv: []string{"FLEET_FILESTORE_DIR=" + dir}}
	f := fleettest.New(t, cfg, fs)
	for _, step := range []struct {
		name       string
		half, rest string // the keys of replicas 0-1, and of 2-3
	}{
		{"old", old, old},
		{"rolling out old,new", old + "," + new, old},
		{"rolling out new,old", new + "," + old, old + "," + new},
		{"new,old", new + "," + old, new + "," + old},
		{"new alone", new, new},
	} {
		rep := f.Phase(fleettest.Phase{Replicas: 4, Duration: 2500 * time.Millisecond, Callers: 2, Env: func(i int) []string {
			if i < 2 {
				return []string{"FLEET_SEALER_KEYS=" + step.half}
			}
			return []string{"FLEET_SEALER_KEYS=" + step.rest}
		}})
		t.Logf("%s: %d calls, %d failed, %d refreshes, %d stale", step.name, rep.Calls, rep.Failures, rep.Server.Refreshes, rep.Server.StaleRefreshTokens)
		if rep.Failures != 0 || rep.Server.StaleRefreshTokens != 0 || rep.Server.Refreshes == 0 {
			t.Fatalf("%s: %d of %d calls failed (first: %s), %d stale refresh tokens, %d refreshes",
				step.name, rep.Failures, rep.Calls, rep.FirstError, rep.Server.StaleRefreshTokens, rep.Server.Refreshes)
		}
	}
	newOnly, _ := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, bytes.Repeat([]byte{2}, 32))))
	for i := range cfg.Accounts {
		b, _ := os.ReadFile(newOnly.Path(fleettest.Key(i)))
		if !bytes.Contains(b, []byte(`"sealed"`)) {
			t.Errorf("%s is not sealed after the rotation", fleettest.Key(i))
		}
	}
	if n := f.ValidWith(newOnly); n != cfg.Accounts {
		t.Errorf("%d of %d accounts valid after the rotation", n, cfg.Accounts)
	}
}
