package dropboxsign_test

import (
	"os"
	"path/filepath"
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
		}))
}
