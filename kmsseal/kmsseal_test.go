package kmsseal_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/kmsseal"
	"gocloud.dev/gcerrors"
	"gocloud.dev/secrets"
	"golang.org/x/oauth2"
)

// unwrapForTest is what an operator never does: the data key out of its
// wrapping, to check what the library did with it.
func unwrapForTest(t *testing.T, k *secrets.Keeper, wrapped []byte) []byte {
	t.Helper()
	key, err := k.Decrypt(context.Background(), wrapped)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// NewSealer makes one Decrypt per wrapped key, at once, and none after:
// not for sealing and opening, not for a FileStore under an Accounts that
// refreshes against the fake.
func TestNewSealerUnwrapsOnceThenNoKMSCall(t *testing.T) {
	ctx := context.Background()
	kms, keeper := newKMS(t)
	w1, err := kmsseal.NewDataKey(ctx, keeper)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := kmsseal.NewDataKey(ctx, keeper)
	if err != nil {
		t.Fatal(err)
	}
	if enc, dec := kms.calls(); enc != 2 || dec != 0 {
		t.Fatalf("two NewDataKey: %d encrypts, %d decrypts; want 2, 0", enc, dec)
	}
	kms.reset()
	s, err := kmsseal.NewSealer(ctx, keeper, w1, w2)
	if err != nil {
		t.Fatal(err)
	}
	if enc, dec := kms.calls(); enc != 0 || dec != 2 {
		t.Fatalf("NewSealer of 2 wrapped keys: %d encrypts, %d decrypts; want 0, 2", enc, dec)
	}
	if ids := s.KeyIDs(); len(ids) != 2 || ids[0] != dropboxsign.KeyID(unwrapForTest(t, keeper, w1)) || ids[1] != dropboxsign.KeyID(unwrapForTest(t, keeper, w2)) {
		t.Fatalf("KeyIDs %v: want the IDs of the data keys, in the order given", ids)
	}
	kms.reset()

	tok := &oauth2.Token{AccessToken: "at", RefreshToken: "rt", TokenType: "Bearer"}
	for i := range 1000 {
		account := fmt.Sprint("user-", i)
		blob, err := s.Seal(account, tok)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Open(account, blob)
		if err != nil || got.RefreshToken != "rt" {
			t.Fatalf("Open: %v, %v", got, err)
		}
	}

	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	store := fileStore(t, t.TempDir(), s)
	const accounts = 8
	for i := range accounts {
		if err := store.Save(ctx, fmt.Sprint("user-", i), nil, expired(srv.IssueToken())); err != nil {
			t.Fatal(err)
		}
	}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store)
	for i := range accounts {
		if _, err := a.TokenSource(fmt.Sprint("user-", i)).Token(); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := srv.Stats().Refreshes; got != accounts {
		t.Fatalf("the fake saw %d refreshes, want %d", got, accounts)
	}
	r := census(t, store)
	if r.ByKey[s.KeyIDs()[0]] != accounts || r.Current != accounts || len(r.Unopenable) != 0 {
		t.Fatalf("census after the refreshes: %+v; want %d tokens sealed under the first data key", r, accounts)
	}
	if enc, dec := kms.calls(); enc != 0 || dec != 0 {
		t.Fatalf("1000 seals and opens, %d refreshes saved and a census: %d encrypts, %d decrypts at the KMS; want none", accounts, enc, dec)
	}
}

// A wrapped key from another KEK, a damaged one, one that is not a data
// key, and a KMS that is down or refuses: each fails NewSealer with an
// error that names the key's position, is classed, and holds no key.
func TestNewSealerFailsClearly(t *testing.T) {
	ctx := context.Background()
	kmsA, keeperA := newKMS(t)
	kmsB, keeperB := newKMS(t)
	good, err := kmsseal.NewDataKey(ctx, keeperA)
	if err != nil {
		t.Fatal(err)
	}
	other, err := kmsseal.NewDataKey(ctx, keeperB)
	if err != nil {
		t.Fatal(err)
	}
	damaged := slices.Clone(good)
	damaged[len(damaged)-1] ^= 1
	notDataKey := randomKey(t)[:16]
	short, err := keeperA.Encrypt(ctx, notDataKey) // wrapped, but not a data key
	if err != nil {
		t.Fatal(err)
	}
	secretsToHide := [][]byte{kmsA.kek[:], kmsB.kek[:], unwrapForTest(t, keeperA, good), unwrapForTest(t, keeperB, other), good, other, short, notDataKey}

	for _, tc := range []struct {
		name    string
		keeper  *secrets.Keeper
		wrapped [][]byte
		fault   error
		want    []string
		class   dropboxsign.Class
		code    gcerrors.ErrorCode
	}{
		{"another KEK", keeperA, [][]byte{good, other}, nil,
			[]string{"unwrapping wrapped data key 2 of 2", "another key-encryption key"}, dropboxsign.Temporary, gcerrors.Unknown},
		{"damaged", keeperA, [][]byte{damaged}, nil,
			[]string{"wrapped data key 1 of 1", "damaged"}, dropboxsign.Temporary, gcerrors.Unknown},
		{"truncated", keeperA, [][]byte{good, good[:10]}, nil,
			[]string{"wrapped data key 2 of 2"}, dropboxsign.Temporary, gcerrors.Unknown},
		{"empty", keeperA, [][]byte{good, nil}, nil,
			[]string{"wrapped data key 2 of 2: empty"}, dropboxsign.Misconfigured, gcerrors.OK},
		{"not a data key", keeperA, [][]byte{short}, nil,
			[]string{"wrapped data key 1 of 1", "16 bytes, want 32"}, dropboxsign.Misconfigured, gcerrors.OK},
		{"none", keeperA, nil, nil,
			[]string{"at least one wrapped data key"}, dropboxsign.Misconfigured, gcerrors.OK},
		{"nil keeper", nil, [][]byte{good}, nil,
			[]string{"wrapped data key 1 of 1", "no KMS keeper"}, dropboxsign.Misconfigured, gcerrors.OK},
		{"KMS down", keeperA, [][]byte{good}, errKMSDown,
			[]string{"wrapped data key 1 of 1", "connection refused"}, dropboxsign.Temporary, gcerrors.Unknown},
		{"KMS refuses", keeperA, [][]byte{good}, errKMSDenied,
			[]string{"wrapped data key 1 of 1", "AccessDeniedException", "PermissionDenied", "misconfigured"}, dropboxsign.Misconfigured, gcerrors.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				kmsA.failWith(tc.fault)
				defer kmsA.failWith(nil)
			}
			s, err := kmsseal.NewSealer(ctx, tc.keeper, tc.wrapped...)
			if err == nil || s != nil {
				t.Fatalf("NewSealer: %v, %v; want an error", s, err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			var kerr *kmsseal.Error
			if !errors.As(err, &kerr) {
				t.Fatalf("error %T is not a *kmsseal.Error", err)
			}
			if kerr.Code != tc.code || dropboxsign.Classify(err) != tc.class {
				t.Errorf("code %v class %v, want %v %v", kerr.Code, dropboxsign.Classify(err), tc.code, tc.class)
			}
			if tc.fault != nil && !errors.Is(err, tc.fault) {
				t.Errorf("error %q does not wrap the KMS's", msg)
			}
			checkNoSecret(t, "NewSealer's error", msg, secretsToHide...)
		})
	}
}

// Rotating the KEK: Rewrap gives the same data key under the new KEK; the
// tokens sealed before open with it, and not one is written again.
func TestKEKRotationRewrapsWithoutResealing(t *testing.T) {
	ctx := context.Background()
	_, oldKEK := newKMS(t)
	newCount, newKEK := newKMS(t)
	wrapped, err := kmsseal.NewDataKey(ctx, oldKEK)
	if err != nil {
		t.Fatal(err)
	}
	before, err := kmsseal.NewSealer(ctx, oldKEK, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	store := fileStore(t, dir, before)
	toks := map[string]*oauth2.Token{}
	for i := range 5 {
		key := fmt.Sprint("user-", i)
		toks[key] = &oauth2.Token{AccessToken: "at-" + key, RefreshToken: "rt-" + key}
		if err := store.Save(ctx, key, nil, toks[key]); err != nil {
			t.Fatal(err)
		}
	}
	files := readDir(t, dir)

	rewrapped, err := kmsseal.Rewrap(ctx, oldKEK, newKEK, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(rewrapped, wrapped) {
		t.Fatal("Rewrap returned its input")
	}
	oldID, err := kmsseal.DataKeyID(ctx, oldKEK, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	newID, err := kmsseal.DataKeyID(ctx, newKEK, rewrapped)
	if err != nil {
		t.Fatal(err)
	}
	if oldID != newID || oldID != before.KeyIDs()[0] {
		t.Fatalf("data key IDs: %s before, %s after Rewrap, %s in the Sealer; want one", oldID, newID, before.KeyIDs()[0])
	}
	if _, err := kmsseal.NewSealer(ctx, oldKEK, rewrapped); err == nil {
		t.Fatal("the old KEK unwraps the rewrapped key: Rewrap did not use the new KEK")
	}

	newCount.reset()
	after, err := kmsseal.NewSealer(ctx, newKEK, rewrapped)
	if err != nil {
		t.Fatal(err)
	}
	rotated := fileStore(t, dir, after)
	for key, want := range toks {
		got, err := rotated.Load(ctx, key)
		if err != nil || got.RefreshToken != want.RefreshToken {
			t.Fatalf("Load %s under the new KEK: %v, %v", key, got, err)
		}
	}
	if r := census(t, rotated); r.Current != len(toks) || len(r.Unopenable) != 0 {
		t.Fatalf("census under the new KEK: %+v; want every token current", r)
	}
	p, err := dropboxsign.Reseal(ctx, rotated, dropboxsign.ResealOptions{PerSecond: 1e6})
	if err != nil || p.Resealed != 0 {
		t.Fatalf("Reseal after a KEK rotation: %+v, %v; want nothing to re-seal", p, err)
	}
	if !maps.Equal(files, readDir(t, dir)) {
		t.Fatal("files changed: a KEK rotation re-sealed tokens")
	}
	if enc, dec := newCount.calls(); enc != 0 || dec != 1 {
		t.Fatalf("the new KMS saw %d encrypts, %d decrypts after start-up; want 0, 1 (NewSealer's)", enc, dec)
	}
}

// Rotating the data key: [new, old], Reseal, and the census shows the old
// key empty; the new key alone then opens everything.
func TestDataKeyRotationResealsAndCensusEmptiesOld(t *testing.T) {
	ctx := context.Background()
	_, keeper := newKMS(t)
	oldW, err := kmsseal.NewDataKey(ctx, keeper)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := kmsseal.NewSealer(ctx, keeper, oldW)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const n = 6
	for i := range n {
		if err := fileStore(t, dir, s1).Save(ctx, fmt.Sprint("user-", i), nil, &oauth2.Token{AccessToken: "a", RefreshToken: fmt.Sprint("r", i)}); err != nil {
			t.Fatal(err)
		}
	}
	newW, err := kmsseal.NewDataKey(ctx, keeper)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := kmsseal.NewSealer(ctx, keeper, newW, oldW)
	if err != nil {
		t.Fatal(err)
	}
	oldID, newID := s1.KeyIDs()[0], s2.KeyIDs()[0]
	if oldID == newID || s2.KeyIDs()[1] != oldID {
		t.Fatalf("key IDs %v after %v", s2.KeyIDs(), s1.KeyIDs())
	}
	store := fileStore(t, dir, s2)
	if r := census(t, store); r.ByKey[oldID] != n || r.ByKey[newID] != 0 {
		t.Fatalf("census before the re-seal: %+v", r)
	}
	p, err := dropboxsign.Reseal(ctx, store, dropboxsign.ResealOptions{PerSecond: 1e6})
	if err != nil || p.Resealed != n {
		t.Fatalf("Reseal: %+v, %v; want %d re-sealed", p, err, n)
	}
	r := census(t, store)
	if r.ByKey[oldID] != 0 || r.ByKey[newID] != n || r.Current != n {
		t.Fatalf("census after the re-seal: %+v; want 0 under the old key %s, %d under the new %s", r, oldID, n, newID)
	}
	s3, err := kmsseal.NewSealer(ctx, keeper, newW)
	if err != nil {
		t.Fatal(err)
	}
	if r := census(t, fileStore(t, dir, s3)); len(r.Unopenable) != 0 || r.Current != n {
		t.Fatalf("census with the new key alone: %+v; want every token openable", r)
	}
}

// Adopting a KMS: Wrap of a raw key in use gives a Sealer with the same
// key IDs, which opens the tokens the raw key sealed.
func TestWrapAdoptsARawKey(t *testing.T) {
	ctx := context.Background()
	_, keeper := newKMS(t)
	k1 := randomKey(t)
	raw, err := dropboxsign.NewSealer(k1)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := raw.Seal("alice", &oauth2.Token{AccessToken: "a", RefreshToken: "r"})
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := kmsseal.Wrap(ctx, keeper, k1)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wrapped, k1) {
		t.Fatal("the wrapped key holds the raw key")
	}
	s, err := kmsseal.NewSealer(ctx, keeper, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.KeyIDs(), raw.KeyIDs()) {
		t.Fatalf("KeyIDs %v, want the raw Sealer's %v", s.KeyIDs(), raw.KeyIDs())
	}
	if tok, err := s.Open("alice", blob); err != nil || tok.RefreshToken != "r" {
		t.Fatalf("Open of a token the raw key sealed: %v, %v", tok, err)
	}
	if _, current := s.Sealed(blob); !current {
		t.Fatal("a token the raw key sealed is not current for the KMS Sealer: adoption would re-seal")
	}
	for _, bad := range [][]byte{nil, k1[:31], append(slices.Clone(k1), 0)} {
		_, err := kmsseal.Wrap(ctx, keeper, bad)
		if err == nil || !strings.Contains(err.Error(), "want 32") {
			t.Fatalf("Wrap of %d bytes: %v", len(bad), err)
		}
		checkNoSecret(t, "Wrap's error", err.Error(), k1)
	}
	if _, err := kmsseal.Wrap(ctx, nil, k1); err == nil {
		t.Fatal("Wrap with a nil keeper: no error")
	}
}

// Adopting a KMS one replica at a time: two replicas share a FileStore,
// and go raw+raw, then KMS+raw, then KMS+KMS, each refreshing tokens the
// other saved; no call fails, no refresh token is presented stale, and no
// log line or error holds a key.
func TestAdoptionOneReplicaAtATime(t *testing.T) {
	ctx := context.Background()
	kms, keeper := newKMS(t)
	k1 := randomKey(t)
	raw, err := dropboxsign.NewSealer(k1)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := kmsseal.Wrap(ctx, keeper, k1)
	if err != nil {
		t.Fatal(err)
	}
	viaKMS, err := kmsseal.NewSealer(ctx, keeper, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	dir := t.TempDir()
	var logs logBuffer
	const n = 6
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("user-", i)
		if err := fileStore(t, dir, raw).Save(ctx, keys[i], nil, srv.IssueToken()); err != nil {
			t.Fatal(err)
		}
	}
	failed, refreshes := 0, 0
	for phase, sealers := range [][2]*dropboxsign.Sealer{{raw, raw}, {viaKMS, raw}, {viaKMS, viaKMS}} {
		// Each phase restarts the replicas with their configuration.
		var stores [2]*dropboxsign.FileStore
		var replicas [2]*dropboxsign.Accounts
		for r := range 2 {
			stores[r] = fileStore(t, dir, sealers[r])
			replicas[r] = dropboxsign.NewAccounts(ctx, srv.Config(), stores[r], dropboxsign.WithLogger(logs.logger()))
		}
		for i, key := range keys {
			writer, reader := (i+phase)%2, (i+phase+1)%2
			// The writer saves the token due, as a refresh would have; the
			// reader opens it and refreshes it; the writer opens the result.
			tok, err := stores[writer].Load(ctx, key)
			if err != nil {
				failed++
				t.Errorf("phase %d: replica %d: Load %s: %v", phase, writer, key, err)
				continue
			}
			if err := stores[writer].Save(ctx, key, tok, expired(tok)); err != nil {
				t.Fatal(err)
			}
			for _, r := range []int{reader, writer} {
				if _, err := replicas[r].TokenSource(key).Token(); err != nil {
					failed++
					t.Errorf("phase %d: replica %d: Token %s: %v", phase, r, key, err)
					checkNoSecret(t, "an error", err.Error(), k1, wrapped, kms.kek[:])
				}
			}
			refreshes++
		}
		for r := range 2 {
			if err := replicas[r].Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := srv.Stats()
	if failed != 0 || st.StaleRefreshTokens != 0 || st.Refreshes != refreshes {
		t.Fatalf("%d failed calls, %d stale refresh tokens, %d refreshes (want 0, 0, %d)", failed, st.StaleRefreshTokens, st.Refreshes, refreshes)
	}
	if r := census(t, fileStore(t, dir, viaKMS)); r.ByKey[dropboxsign.KeyID(k1)] != n || r.Current != n {
		t.Fatalf("census at the end: %+v", r)
	}
	checkNoSecret(t, "the logs", logs.String(), k1, wrapped, kms.kek[:])
}

// ParseWrappedKeys reads what FormatWrappedKeys writes, in any base64 an
// operator may paste, and names the bad entry without its text.
func TestParseWrappedKeys(t *testing.T) {
	w1, w2 := []byte{0xfb, 0xff, 1, 2, 3}, bytes.Repeat([]byte{0xfe}, 184)
	list := kmsseal.FormatWrappedKeys(w1, w2)
	got, err := kmsseal.ParseWrappedKeys(list)
	if err != nil || len(got) != 2 || !bytes.Equal(got[0], w1) || !bytes.Equal(got[1], w2) {
		t.Fatalf("ParseWrappedKeys(FormatWrappedKeys): %v, %v", got, err)
	}
	if got, err := kmsseal.ParseWrappedKeys(" -_8BAgM , " + strings.TrimRight(strings.Split(list, ",")[1], "=") + " "); err != nil || !bytes.Equal(got[0], w1) || !bytes.Equal(got[1], w2) {
		t.Fatalf("URL alphabet, spaces, no padding: %v, %v", got, err)
	}
	for list, want := range map[string]string{
		"":              "no wrapped data keys",
		"  ":            "no wrapped data keys",
		"AAAA,,AAAA":    "key 2 of the list is empty",
		"AAAA,s3cr*t!x": "key 2 of the list is not base64",
	} {
		_, err := kmsseal.ParseWrappedKeys(list)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseWrappedKeys(%q): %v; want %q", list, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr") {
			t.Errorf("the error holds the entry's text: %v", err)
		}
	}
}

func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	if len(out) == 0 {
		t.Fatal("no token files")
	}
	return out
}
