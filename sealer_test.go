package dropboxsign_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/storetest"
	"golang.org/x/oauth2"
)

func mustSealer(t *testing.T, keys ...[]byte) *dropboxsign.Sealer {
	t.Helper()
	s, err := dropboxsign.NewSealer(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var oldKey, newKey = bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)

// Sealing: nothing of the token in the clear, the whole token back, key
// rotation (the first key seals, all open), a blob bound to its account,
// plain JSON still read, and errors that say what is wrong without a secret.
func TestSealer(t *testing.T) {
	tok := &oauth2.Token{AccessToken: "access-secret-1234", TokenType: "Bearer", RefreshToken: "refresh-secret-5678",
		Expiry: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC), ExpiresIn: 3600}
	old := mustSealer(t, oldKey)
	blob, err := old.Seal("alice", tok)
	if err != nil || bytes.Contains(blob, []byte("secret")) {
		t.Fatalf("sealed %q, %v: want nothing in the clear", blob, err)
	}
	if sealed, current := old.Sealed(blob); !sealed || !current {
		t.Errorf("Sealed = %v, %v", sealed, current)
	}
	rotating := mustSealer(t, newKey, oldKey)
	got, err := rotating.Open("alice", blob)
	if err != nil || *got != *tok {
		t.Fatalf("opened %+v, %v; want %+v", got, err, tok)
	}
	if _, current := rotating.Sealed(blob); current {
		t.Error("a blob sealed with the old key counts as current after rotation")
	}
	resealed, _ := rotating.Seal("alice", tok)
	for _, tc := range []struct {
		name    string
		sealer  *dropboxsign.Sealer
		account string
		blob    []byte
		want    string
	}{
		{"old key dropped too early", mustSealer(t, newKey), "alice", blob, "not configured"},
		{"another account", rotating, "bob", resealed, "does not open"},
		{"no keys", nil, "alice", blob, "encrypted and no encryption keys"},
		{"truncated", rotating, "alice", resealed[:10], "truncated"},
		{"tampered", rotating, "alice", append(resealed[:len(resealed)-1:len(resealed)-1], resealed[len(resealed)-1]^1), "does not open"},
		{"junk", rotating, "alice", []byte("not a token"), "not a token"},
	} {
		_, err := tc.sealer.Open(tc.account, tc.blob)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v; want an error saying %q, no secret", tc.name, err, tc.want)
		}
	}
	if got, err := mustSealer(t, newKey).Open("alice", resealed); err != nil || *got != *tok {
		t.Errorf("after resealing, the new key alone: %v, %v", got, err)
	}
	plain, _ := (*dropboxsign.Sealer)(nil).Seal("alice", tok)
	if got, err := rotating.Open("alice", plain); err != nil || *got != *tok {
		t.Errorf("plain JSON from before encryption: %v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, make([]byte, 31), make([]byte, 33)} {
		if _, err := dropboxsign.NewSealer(bad); err == nil {
			t.Errorf("a %d-byte key was accepted", len(bad))
		}
	}
	if _, err := dropboxsign.NewSealer(); err == nil {
		t.Error("no keys were accepted")
	}
}

func TestSealedFileStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) dropboxsign.Store {
		fs, err := dropboxsign.NewFileStore(t.TempDir(), dropboxsign.WithSealer(mustSealer(t, oldKey)))
		if err != nil {
			t.Fatal(err)
		}
		return fs
	})
}

// A FileStore with a Sealer keeps no token in the clear, still reads files
// written before, and seals them at their next save; a sealed file copied
// under another key does not open.
func TestFileStoreSealsTokensAtRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tok := &oauth2.Token{AccessToken: "access-secret-1234", RefreshToken: "refresh-secret-5678", Expiry: time.Now().Add(time.Hour)}
	plain, _ := dropboxsign.NewFileStore(dir)
	plain.Save(ctx, "legacy", nil, tok)

	sealed, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, oldKey)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := sealed.Load(ctx, "legacy")
	if err != nil || got.AccessToken != tok.AccessToken {
		t.Fatalf("a plain file from before: %v, %v", got, err)
	}
	next := &oauth2.Token{AccessToken: "access-secret-2", RefreshToken: "refresh-secret-2", Expiry: time.Now().Add(time.Hour)}
	if err := sealed.Save(ctx, "legacy", got, next); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"legacy.json"} {
		b, _ := os.ReadFile(dir + "/" + name)
		var rec map[string]json.RawMessage
		json.Unmarshal(b, &rec)
		if bytes.Contains(b, []byte("secret")) || rec["sealed"] == nil {
			t.Errorf("%s after a save: %s; want it sealed", name, b)
		}
	}
	// Copy the sealed file under another key, and fix up the key it records.
	b, _ := os.ReadFile(dir + "/legacy.json")
	os.WriteFile(dir+"/other.json", bytes.Replace(b, []byte(`"key": "legacy"`), []byte(`"key": "other"`), 1), 0o600)
	if _, err := sealed.Load(ctx, "other"); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Errorf("a sealed file copied under another key: %v", err)
	}
}

// A zero Sealer (not made by NewSealer) has no keys: it says so, and never
// panics or writes plain JSON in its name.
func TestAZeroSealerSaysItHasNoKeys(t *testing.T) {
	var s dropboxsign.Sealer
	if blob, err := s.Seal("a", &oauth2.Token{AccessToken: "x"}); err == nil || !strings.Contains(err.Error(), "NewSealer") {
		t.Errorf("Seal: %q, %v; want an error naming NewSealer", blob, err)
	}
	real, _ := dropboxsign.NewSealer(bytes.Repeat([]byte{1}, 32))
	sealed, _ := real.Seal("a", &oauth2.Token{AccessToken: "x"})
	if _, err := s.Open("a", sealed); err == nil || !strings.Contains(err.Error(), "NewSealer") {
		t.Errorf("Open: %v; want an error naming NewSealer", err)
	}
	if isSealed, current := s.Sealed(sealed); !isSealed || current {
		t.Errorf("Sealed: %v, %v; want true, false", isSealed, current)
	}
}
