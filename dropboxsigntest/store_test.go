package dropboxsigntest

import (
	"fmt"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/storetest"
)

// The conformance suite, with a look inside (the entry, every field, as
// text) and, as the second handle on the same backend, the same Store:
// there is no other handle on memory.
func TestStoreConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) dropboxsign.Store { return NewStore() },
		storetest.WithRaw(func(s dropboxsign.Store, key string) []byte {
			st := s.(*Store)
			st.mu.Lock()
			defer st.mu.Unlock()
			e, ok := st.entries[key]
			if !ok {
				return nil
			}
			b := fmt.Appendf(nil, "%+v", e)
			if e.tok != nil {
				b = fmt.Appendf(b, " %+v", *e.tok)
			}
			return b
		}),
		storetest.WithPeer(func(_ *testing.T, s dropboxsign.Store) dropboxsign.Store { return s }))
}
