package dropboxsign_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/storetest"
)

// The conformance suite on a FileStore, looking inside it (key's file, as
// it is on disk) and watching it through a second FileStore on the same
// directory, as another process opens it.
func TestFileStoreConformanceInside(t *testing.T) {
	storetest.Run(t, func(t *testing.T) dropboxsign.Store { return newFileStore(t) },
		storetest.WithRaw(func(s dropboxsign.Store, key string) []byte {
			b, err := os.ReadFile(s.(*dropboxsign.FileStore).Path(key))
			if err != nil {
				return nil
			}
			return b
		}),
		storetest.WithPeer(func(t *testing.T, s dropboxsign.Store) dropboxsign.Store {
			peer, err := dropboxsign.NewFileStore(filepath.Dir(s.(*dropboxsign.FileStore).Path("")))
			if err != nil {
				t.Fatal(err)
			}
			return peer
		}),
		storetest.WithSealers(fileStoreUnder()))
}

// fileStoreUnder returns a WithSealers function: a directory per test,
// opened under each Sealer asked for.
func fileStoreUnder() func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.Store {
	var mu sync.Mutex
	dirs := map[*testing.T]string{}
	return func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.Store {
		mu.Lock()
		dir, ok := dirs[t]
		if !ok {
			dir = filepath.Join(t.TempDir(), "tokens")
			dirs[t] = dir
		}
		mu.Unlock()
		fs, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(s))
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
}
