package dropboxsign_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// realisticToken is shaped like Dropbox Sign's: the spec's example access
// token is 88 characters of base64, and so is a refresh token here.
func realisticToken(expiry time.Time) *oauth2.Token {
	b := make([]byte, 64)
	rand.Read(b)
	r := make([]byte, 64)
	rand.Read(r)
	return &oauth2.Token{AccessToken: base64.StdEncoding.EncodeToString(b), TokenType: "Bearer",
		RefreshToken: base64.StdEncoding.EncodeToString(r), Expiry: expiry, ExpiresIn: 3600}
}

// heldBytes returns the heap that held accounts cost, each: n accounts, all
// loaded from an in-memory store, measured after a GC.
func heldBytes(t testing.TB, n int) float64 {
	ctx := context.Background()
	store := dropboxsigntest.NewStore()
	keys := make([]string, n)
	expiry := time.Now().Add(time.Hour)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%07d", i)
		store.Save(ctx, keys[i], nil, realisticToken(expiry))
	}
	conf := &oauth2.Config{ClientID: "id", ClientSecret: "secret", Endpoint: dropboxsign.Endpoint}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	a := dropboxsign.NewAccounts(ctx, conf, ownStrings{store}, dropboxsign.WithMaxAccounts(n))
	for _, k := range keys {
		if _, err := a.TokenSource(k).TokenContext(ctx); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(a)
	runtime.KeepAlive(store)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// A held account, with its 88-character tokens, costs at most 512 bytes.
func TestHeldAccountCostsAtMost512Bytes(t *testing.T) {
	per := heldBytes(t, 20000)
	t.Logf("%.0f bytes per held account", per)
	if per > 512 {
		t.Errorf("%.0f bytes per held account, want at most 512", per)
	}
}

// ownStrings gives each loaded token strings of its own, as a store that
// decodes a file, a Redis reply or a row does: the in-memory store's would
// be shared with it, and the token's bytes would count for nobody.
type ownStrings struct{ dropboxsign.Store }

func (s ownStrings) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	t, err := s.Store.Load(ctx, key)
	if t != nil {
		t.AccessToken, t.RefreshToken, t.TokenType = strings.Clone(t.AccessToken), strings.Clone(t.RefreshToken), strings.Clone(t.TokenType)
	}
	return t, err
}
