package oteldropboxsign_test

import (
	"context"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

// A token in plain JSON, loaded from a store that seals tokens, is counted
// once for the account held, though its refresh reads the store twice.
func TestAPlaintextToken(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	dir := t.TempDir()
	plain, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := dropboxsign.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(sealer))
	if err != nil {
		t.Fatal(err)
	}
	tok := h.srv.IssueToken()
	tok.Expiry = time.Now().Add(-time.Minute) // due: its refresh reads the store twice
	if err := plain.Save(ctx, "ivan", nil, tok); err != nil {
		t.Fatal(err)
	}
	a := h.accounts(sealed)
	for range 2 {
		if _, err := a.TokenSource("ivan").TokenContext(ctx); err != nil {
			t.Fatal(err)
		}
	}
	h.rec.waitFor(t, dropboxsign.EventTokenRequest, 1)
	c := h.wantMetrics(map[string]float64{
		"dropboxsign.store.plaintext_tokens{}": 1,
		refreshOK:                              1, refreshOKs: 1, connected: 1, refused: 0, disconnected: 0, dropped: 0})
	h.noSecrets(c)
}
