package dropboxsign_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// blobStore is a store that keeps what a Sealer makes, as redisstore and
// pgstore do, so that tokens go through Sealer.Open; it writes a blob as
// given with put (a plain token planted, say).
type blobStore struct {
	sealer *dropboxsign.Sealer
	mu     sync.Mutex
	blobs  map[string][]byte
	lock   sync.Mutex // one refresh lock for all keys: enough for one process
}

func newBlobStore(s *dropboxsign.Sealer) *blobStore {
	return &blobStore{sealer: s, blobs: map[string][]byte{}}
}

func (b *blobStore) put(key string, blob []byte) {
	b.mu.Lock()
	b.blobs[key] = blob
	b.mu.Unlock()
}

func (b *blobStore) get(key string) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.blobs[key]
}

func (b *blobStore) Load(_ context.Context, key string) (*oauth2.Token, error) {
	blob := b.get(key)
	if blob == nil {
		return nil, dropboxsign.ErrNotFound
	}
	return b.sealer.Open(key, blob)
}

func (b *blobStore) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	blob, err := b.sealer.Seal(key, t)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, err := b.sealer.Open(key, b.blobs[key])
	switch {
	case b.blobs[key] == nil && prev == nil:
	case err != nil || prev == nil || cur.AccessToken != prev.AccessToken || cur.RefreshToken != prev.RefreshToken:
		return dropboxsign.ErrConflict
	}
	b.blobs[key] = blob
	return nil
}

func (b *blobStore) Replace(_ context.Context, key string, t *oauth2.Token) error {
	blob, err := b.sealer.Seal(key, t)
	if err == nil {
		b.put(key, blob)
	}
	return err
}

func (b *blobStore) Lock(context.Context, string) (func(), error) {
	b.lock.Lock()
	var once sync.Once
	return func() { once.Do(b.lock.Unlock) }, nil
}

func (b *blobStore) MarkRefused(context.Context, string, *oauth2.Token) error {
	return dropboxsign.ErrConflict
}

func (b *blobStore) Disconnect(context.Context, string) error {
	return errors.New("blobStore: no disconnection marks")
}

func (b *blobStore) Forget(context.Context, string, time.Time) error {
	return errors.New("blobStore: no disconnection marks")
}

var _ dropboxsign.Store = (*blobStore)(nil)

// A token in plain JSON in a store whose Sealer has keys (planted, or from
// before encryption) is used, reported once per account's source (an
// EventPlaintextToken, a Warn line), and sealed at its next save; sealed
// tokens, and plain ones in a store without keys, are not reported. Both
// ways a store reads plain JSON: Sealer.Open (redisstore, pgstore) and a
// FileStore's own records.
func TestPlaintextTokenIsReportedOncePerAccountAndSealedAtItsNextSave(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	sealer := mustSealer(t, newKey)
	dir := t.TempDir()
	plainFiles, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(sealer))
	if err != nil {
		t.Fatal(err)
	}
	blobs := newBlobStore(sealer)
	for _, tc := range []struct {
		name  string
		store interface {
			dropboxsign.Store
			raw(key string) []byte
		}
		plant func(key string, tok *oauth2.Token)
	}{
		{"FileStore", fileRaw{files}, func(key string, tok *oauth2.Token) {
			if err := plainFiles.Save(ctx, key, nil, tok); err != nil {
				t.Fatal(err)
			}
		}},
		{"Sealer.Open", blobRaw{blobs}, func(key string, tok *oauth2.Token) {
			plain, _ := (*dropboxsign.Sealer)(nil).Seal(key, tok)
			blobs.put(key, plain)
		}},
	} {
		store := tc.store
		t.Run(tc.name, func(t *testing.T) {
			planted := map[string]*oauth2.Token{}
			for _, key := range []string{"alice", "bob"} {
				planted[key] = expired(srv.IssueToken()) // due: the first call refreshes, reading the store twice
				tc.plant(key, planted[key])
			}
			if err := store.Save(ctx, "carol", nil, srv.IssueToken()); err != nil { // sealed: not reported
				t.Fatal(err)
			}
			rec := newRecorder()
			a := dropboxsign.NewAccounts(ctx, srv.Config(), store, rec.options()...)
			for _, key := range []string{"alice", "bob", "carol"} {
				for range 3 {
					if _, err := a.TokenSource(key).TokenContext(ctx); err != nil {
						t.Fatalf("%s: %v", key, err)
					}
				}
			}
			// Events come in order: once the last refresh's is in, so is
			// every report before it.
			rec.waitFor(t, dropboxsign.EventTokenRequest, 2)
			got := map[string]int{}
			for _, e := range rec.of(dropboxsign.EventPlaintextToken) {
				got[e.Account]++
				if e.Op != "load" || e.Err != nil {
					t.Errorf("event %+v", e)
				}
			}
			if got["alice"] != 1 || got["bob"] != 1 || len(got) != 2 {
				t.Errorf("plaintext reports per account: %v; want alice and bob once each", got)
			}
			r, attrs := rec.record(t, dropboxsign.EventPlaintextToken, 0)
			if r.Level != slog.LevelWarn || attrs["account"] == "" || !strings.Contains(r.Message, "plain JSON") {
				t.Errorf("log record %v %q %v", r.Level, r.Message, attrs)
			}
			rec.noSecrets(t, srv.Secrets())
			for _, key := range []string{"alice", "bob"} {
				raw := store.raw(key)
				if bytes.Contains(raw, []byte(planted[key].RefreshToken)) || bytes.Contains(raw, []byte("refresh_token")) {
					t.Errorf("%s after its refresh: still in plain JSON: %s", key, raw)
				}
				if tok, err := store.Load(ctx, key); err != nil || tok.RefreshToken == planted[key].RefreshToken {
					t.Errorf("%s: %v, %v: want the refreshed token, sealed", key, tokenText(tok), err)
				}
			}
		})
	}

	// A store without keys reads plain JSON by design: nothing to report.
	rec := newRecorder()
	if err := plainFiles.Save(ctx, "dave", nil, expired(srv.IssueToken())); err != nil {
		t.Fatal(err)
	}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), plainFiles, rec.options()...)
	if _, err := a.TokenSource("dave").TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, dropboxsign.EventTokenRequest, 1)
	if n := len(rec.of(dropboxsign.EventPlaintextToken)); n != 0 {
		t.Errorf("%d plaintext reports from a store without keys", n)
	}
}

type fileRaw struct{ *dropboxsign.FileStore }

func (f fileRaw) raw(key string) []byte {
	b, _ := os.ReadFile(f.Path(key))
	return b
}

type blobRaw struct{ *blobStore }

func (b blobRaw) raw(key string) []byte { return b.get(key) }

// A Sealer that refuses plaintext does not open a token in plain JSON, with
// an error that says so and how to repair it, and holds no secret; it opens
// sealed ones; the Sealer it was made from still reads plain JSON. From a
// nil Sealer it makes one that opens nothing.
func TestRefusePlaintext(t *testing.T) {
	tok := &oauth2.Token{AccessToken: "access-secret-1234", TokenType: "Bearer", RefreshToken: "refresh-secret-5678"}
	lenient := mustSealer(t, newKey, oldKey)
	strict := lenient.RefusePlaintext()
	plain, _ := (*dropboxsign.Sealer)(nil).Seal("alice", tok)
	_, err := strict.Open("alice", plain)
	if !errors.Is(err, dropboxsign.ErrPlaintextToken) || strings.Contains(err.Error(), "secret-") || !strings.Contains(err.Error(), "plain JSON") {
		t.Errorf("strict Open of plain JSON: %v; want ErrPlaintextToken, no secret", err)
	}
	if got, err := lenient.Open("alice", plain); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Errorf("the Sealer RefusePlaintext copied now refuses plain JSON too: %v", err)
	}
	sealedOld, _ := mustSealer(t, oldKey).Seal("alice", tok)
	if got, err := strict.Open("alice", sealedOld); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Errorf("strict Open of a token sealed with its second key: %v", err)
	}
	if _, err := strict.Open("alice", []byte("junk")); err == nil || errors.Is(err, dropboxsign.ErrPlaintextToken) {
		t.Errorf("junk: %v; want 'not a token'", err)
	}
	none := (*dropboxsign.Sealer)(nil).RefusePlaintext()
	if _, err := none.Open("alice", plain); err == nil {
		t.Error("a strict Sealer made from nil opens plain JSON")
	}
	if _, err := none.Seal("alice", tok); err == nil {
		t.Error("a strict Sealer made from nil seals (with no key) or writes plain JSON")
	}
}

// With a strict Sealer, a FileStore refuses a planted plain token (the
// account's calls fail with an error naming the file, without a token
// request), and a new login repairs the record: sealed, readable.
func TestStrictFileStoreRefusesPlaintextAndALoginRepairsIt(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	dir := t.TempDir()
	plainFiles, _ := dropboxsign.NewFileStore(dir)
	strict, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, newKey).RefusePlaintext()))
	if err != nil {
		t.Fatal(err)
	}
	planted := srv.IssueToken()
	if err := plainFiles.Save(ctx, "alice", nil, planted); err != nil {
		t.Fatal(err)
	}
	_, err = strict.Load(ctx, "alice")
	if !errors.Is(err, dropboxsign.ErrPlaintextToken) || !strings.Contains(err.Error(), strict.Path("alice")) {
		t.Errorf("Load: %v; want ErrPlaintextToken naming the file", err)
	}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), strict)
	before := srv.Stats()
	tok, err := a.TokenSource("alice").TokenContext(ctx)
	if err == nil || !errors.Is(err, dropboxsign.ErrPlaintextToken) {
		t.Errorf("the account's call: %v, %v; want an error wrapping ErrPlaintextToken", tokenText(tok), err)
	} else if c := dropboxsign.Classify(err); c != dropboxsign.Misconfigured {
		t.Errorf("the account's call: class %v; want misconfigured (an operator must act)", c)
	} else {
		assertClean(t, "the account's error", err.Error(), append(srv.Secrets(), planted.AccessToken, planted.RefreshToken)...)
	}
	if after := srv.Stats(); after != before {
		t.Errorf("the refused record cost token requests: %+v → %+v", before, after)
	}

	code := authorize(t, srv, srv.Config(), "state-1")
	if _, err := a.Login(ctx, "alice", code, "state-1"); err != nil {
		t.Fatalf("a new login over the plain record: %v", err)
	}
	raw, _ := os.ReadFile(strict.Path("alice"))
	if bytes.Contains(raw, []byte("access_token")) || !bytes.Contains(raw, []byte(`"sealed"`)) {
		t.Errorf("after the login the file is not sealed: %s", raw)
	}
	if got, err := strict.Load(ctx, "alice"); err != nil || got.AccessToken == planted.AccessToken {
		t.Errorf("after the login: %v, %v; want the new token", tokenText(got), err)
	}
	if _, err := a.TokenSource("alice").TokenContext(ctx); err != nil {
		t.Errorf("the account after the login: %v", err)
	}
}

// A token nobody refreshes is sealed in place, as the docs say: Load it and
// Save it over itself with a store that seals.
func TestPlaintextTokenIsSealedInPlace(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	plainFiles, _ := dropboxsign.NewFileStore(dir)
	sealer := mustSealer(t, newKey)
	files, _ := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(sealer))
	strict, _ := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(sealer.RefusePlaintext()))
	planted := &oauth2.Token{AccessToken: "access-secret-1234", TokenType: "Bearer", RefreshToken: "refresh-secret-5678"}
	if err := plainFiles.Save(ctx, "alice", nil, planted); err != nil {
		t.Fatal(err)
	}
	tok, err := files.Load(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := files.Save(ctx, "alice", tok, tok); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(files.Path("alice")); bytes.Contains(raw, []byte("secret")) {
		t.Errorf("still in the clear: %s", raw)
	}
	if got, err := strict.Load(ctx, "alice"); err != nil || got.RefreshToken != planted.RefreshToken {
		t.Errorf("after sealing in place, strict Load: %v, %v", tokenText(got), err)
	}
}
