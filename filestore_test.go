package dropboxsign_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/storetest"
	"golang.org/x/oauth2"
)

func newFileStore(t *testing.T) *dropboxsign.FileStore {
	t.Helper()
	fs, err := dropboxsign.NewFileStore(filepath.Join(t.TempDir(), "tokens"))
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// The conformance suite on a FileStore that seals its tokens, watched
// through a second one on the same directory with the same key
// (filestore_storetest_test.go runs it on a plain one, looked into).
func TestFileStoreConformance(t *testing.T) {
	sealer := mustSealer(t, bytes.Repeat([]byte{9}, 32))
	open := func(t *testing.T, dir string) dropboxsign.Store {
		fs, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(sealer))
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	storetest.Run(t, func(t *testing.T) dropboxsign.Store { return open(t, filepath.Join(t.TempDir(), "tokens")) },
		storetest.WithPeer(func(t *testing.T, s dropboxsign.Store) dropboxsign.Store {
			return open(t, filepath.Dir(s.(*dropboxsign.FileStore).Path("")))
		}))
}

func TestFileStoreFilesArePrivate(t *testing.T) {
	fs := newFileStore(t)
	if err := fs.Save(testContext(t), "acct", nil, &oauth2.Token{AccessToken: "a"}); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(fs.Path("acct"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v (%v), want 0600", info.Mode().Perm(), err)
	}
	dir, _ := os.Stat(filepath.Dir(fs.Path("acct")))
	if dir.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", dir.Mode().Perm())
	}
	if at, err := fs.SavedAt("acct"); err != nil || time.Since(at) > time.Minute {
		t.Errorf("SavedAt = %v, %v", at, err)
	}
}

func TestFileStoreKeysAreSafeFileNames(t *testing.T) {
	fs := newFileStore(t)
	ctx := testContext(t)
	keys := []string{"", "user@example.com", "../../etc/passwd", "a/b", "ünï", "%41", ".hidden", strings.Repeat("ä/", 300)}
	for _, k := range keys {
		if err := fs.Save(ctx, k, nil, &oauth2.Token{AccessToken: "x" + k}); err != nil {
			t.Fatalf("%q: %v", k, err)
		}
		if dir := filepath.Dir(fs.Path(k)); dir != filepath.Dir(fs.Path("plain")) {
			t.Errorf("%q: file %s lies outside the store", k, fs.Path(k))
		}
		if strings.HasPrefix(filepath.Base(fs.Path(k)), ".") {
			t.Errorf("%q: hidden file name %s", k, fs.Path(k))
		}
	}
	got, err := keysOf(fs)
	want := slices.Clone(keys)
	slices.Sort(want)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Keys = %q, %v; want %q", got, err, want)
	}
	for _, k := range keys {
		if tok, err := fs.Load(ctx, k); err != nil || tok.AccessToken != "x"+k {
			t.Errorf("Load(%q) = %v, %v", k, tok, err)
		}
	}
}

func TestFileStoreReportsACorruptFile(t *testing.T) {
	fs := newFileStore(t)
	for _, content := range []string{`{"token": 12`, `{"token":{}}`, `[]`} {
		os.WriteFile(fs.Path("acct"), []byte(content), 0o600)
		_, err := fs.Load(testContext(t), "acct")
		if err == nil || !strings.Contains(err.Error(), fs.Path("acct")) || errors.Is(err, dropboxsign.ErrNotFound) {
			t.Errorf("%s: err = %v, want one naming the corrupt file", content, err)
		}
	}
}

// Two sources on one store and key (two replicas): one refresh between them.
func TestSourcesSharingAStoreRefreshOnce(t *testing.T) {
	srv := newServer(t)
	fs := newFileStore(t)
	ctx := testContext(t)
	if err := fs.Save(ctx, "acct", nil, expired(srv.IssueToken())); err != nil {
		t.Fatal(err)
	}
	var sources []*dropboxsign.TokenSource
	for range 4 {
		sources = append(sources, dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "acct")))
	}
	var wg sync.WaitGroup
	tokens := make([]*oauth2.Token, 4*8)
	for i := range tokens {
		wg.Go(func() {
			tok, err := sources[i%4].TokenContext(ctx)
			if err != nil {
				t.Error(err)
			}
			tokens[i] = tok
		})
	}
	wg.Wait()
	for _, tok := range tokens {
		if tok == nil || tok.AccessToken != tokens[0].AccessToken {
			t.Fatalf("sources disagree: %v vs %v", tok, tokens[0])
		}
	}
	if st := srv.Stats(); st.Refreshes != 1 || st.StaleRefreshTokens != 0 {
		t.Errorf("refreshes = %d, stale = %d; want 1 and 0", st.Refreshes, st.StaleRefreshTokens)
	}
	if stored, _ := fs.Load(ctx, "acct"); stored.AccessToken != tokens[0].AccessToken {
		t.Error("the store does not hold the token handed out")
	}
}

func TestSourceLoadsFromTheStoreAndSeedsIt(t *testing.T) {
	srv := newServer(t)
	fs := newFileStore(t)
	ctx := testContext(t)
	live := srv.IssueToken()
	fs.Save(ctx, "stored", nil, live)
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "stored"))
	if tok, err := ts.TokenContext(ctx); err != nil || tok.AccessToken != live.AccessToken {
		t.Fatalf("cold start: %v, %v; want the stored token", tok, err)
	}
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("%d token requests for a stored, valid token", n)
	}

	// Nothing stored: the token given seeds the store at its first refresh.
	seeded := dropboxsign.NewTokenSource(ctx, srv.Config(), expired(srv.IssueToken()), dropboxsign.WithStore(fs, "new"))
	tok, err := seeded.TokenContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stored, err := fs.Load(ctx, "new"); err != nil || stored.AccessToken != tok.AccessToken {
		t.Errorf("store after the first refresh: %v, %v", stored, err)
	}

	// Nothing stored, nothing given: a clear error.
	empty := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "nobody"))
	if _, err := empty.TokenContext(ctx); err == nil || dropboxsign.Classify(err) != dropboxsign.Reauthorize {
		t.Errorf("no token anywhere: %v, want a Reauthorize error", err)
	}
}

// failingStore is a FileStore whose calls can be made to fail, as a store's
// network can.
type failingStore struct {
	*dropboxsign.FileStore
	fail      atomic.Bool // every call fails
	failSaves atomic.Bool // saves fail
}

var errStoreDown = errors.New("store unreachable")

func (s *failingStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	if s.fail.Load() {
		return nil, errStoreDown
	}
	return s.FileStore.Load(ctx, key)
}

func (s *failingStore) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if s.fail.Load() || s.failSaves.Load() && !spendMark(t) {
		return errStoreDown
	}
	return s.FileStore.Save(ctx, key, prev, t)
}

func TestStoreOutagesAreReportedAndSurvived(t *testing.T) {
	srv := newServer(t)
	clk, done := newClock(), newRuns()
	store := &failingStore{FileStore: newFileStore(t)}
	ctx := testContext(t)
	old := srv.IssueToken()
	store.Save(ctx, "acct", nil, old)
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(store, "acct"),
		dropboxsign.WithClock(clk.Now), done.option())
	if _, err := ts.TokenContext(ctx); err != nil { // loads
		t.Fatal(err)
	}
	done.wait(t)

	// Store down, token in its window: callers keep the token, no refresh.
	store.fail.Store(true)
	clk.Set(old.Expiry.Add(-time.Minute))
	if tok, err := ts.TokenContext(ctx); err != nil || tok.AccessToken != old.AccessToken {
		t.Fatalf("store down, token usable: %v, %v", tok, err)
	}
	done.wait(t)
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("refreshed without the store: %d requests", n)
	}
	// Store down, token expired: the store's error, wrapped.
	clk.Set(old.Expiry.Add(time.Second))
	if _, err := ts.TokenContext(ctx); !errors.Is(err, errStoreDown) {
		t.Errorf("store down, token expired: %v, want the store's error", err)
	}
	// Store back: a refresh, saved.
	store.fail.Store(false)
	clk.Advance(time.Minute)
	tok, err := ts.TokenContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stored, _ := store.Load(ctx, "acct"); stored.AccessToken != tok.AccessToken {
		t.Error("the new token was not saved")
	}
}

func TestFailedStoreSaveKeepsTheTokenAndRetries(t *testing.T) {
	srv := newServer(t)
	clk, done := newClock(), newRuns()
	store := &failingStore{FileStore: newFileStore(t)}
	ctx := testContext(t)
	old := srv.IssueToken()
	store.Save(ctx, "acct", nil, old)
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(store, "acct"),
		dropboxsign.WithClock(clk.Now), done.option())
	clk.Set(old.Expiry.Add(time.Second))
	store.failSaves.Store(true)
	fresh, err := ts.TokenContext(ctx)
	var saveErr *dropboxsign.SaveError
	if !errors.As(err, &saveErr) || !errors.Is(err, errStoreDown) || fresh == nil {
		t.Fatalf("save failed: %v, %v; want the token and a SaveError", fresh, err)
	}
	done.wait(t)
	store.failSaves.Store(false)
	clk.Advance(2 * time.Second)
	ts.TokenContext(ctx) // the retry, in the background
	done.wait(t)
	if tok, err := ts.TokenContext(ctx); err != nil || tok != fresh {
		t.Fatalf("after the retry: %v, %v", tok, err)
	}
	if stored, _ := store.Load(ctx, "acct"); stored.AccessToken != fresh.AccessToken {
		t.Error("the retry did not save the token")
	}
}

// The in-process cache is the hot path: between refreshes an API call costs
// no store round trip.
func TestNoStoreRoundTripsBetweenRefreshes(t *testing.T) {
	srv := newServer(t)
	store := &storetest.Counting{Store: newFileStore(t)}
	ctx := testContext(t)
	store.Store.Save(ctx, "acct", nil, srv.IssueToken())
	client := dropboxsign.NewClient(ctx, srv.Config(), nil, dropboxsign.WithStore(store, "acct"))
	get(t, client, srv.AccountURL()) // loads the token
	loaded := store.Calls()
	for range 200 {
		if get(t, client, srv.AccountURL()) != 200 {
			t.Fatal("call failed")
		}
	}
	if n := store.Calls() - loaded; n != 0 {
		t.Errorf("%d store round trips for 200 API calls between refreshes", n)
	}
}

// The store lost its data (say, Redis restarted without persistence): the
// next refresh seeds it again from the token in memory.
func TestSourceSeedsAStoreThatLostItsData(t *testing.T) {
	srv := newServer(t)
	fs := newFileStore(t)
	ctx := testContext(t)
	fs.Save(ctx, "acct", nil, srv.IssueToken())
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "acct"))
	tok, err := ts.TokenContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(fs.Path("acct"))
	ts.Invalidate(tok)
	fresh, err := ts.TokenContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stored, err := fs.Load(ctx, "acct"); err != nil || stored.AccessToken != fresh.AccessToken {
		t.Errorf("store after the refresh: %v, %v; want the new token", stored, err)
	}
}

// Loads never fail because another writer's save renamed a new file into
// place between a load's check of the file and its open: every save does.
func TestFileStoreLoadsDuringSavesNeverFail(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	tok := func(n int) *oauth2.Token {
		return &oauth2.Token{AccessToken: fmt.Sprint("at-", n), RefreshToken: fmt.Sprint("rt-", n), TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}
	}
	if err := fs.Save(ctx, "k", nil, tok(0)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var stop atomic.Bool
	for w := range 2 {
		wg.Go(func() {
			for n := 1; !stop.Load(); n++ {
				cur, err := fs.Load(ctx, "k")
				if err == nil {
					fs.Save(ctx, "k", cur, tok(w*1_000_000+n))
				}
			}
		})
	}
	var failed atomic.Int64
	var first atomic.Value
	var loaders sync.WaitGroup
	for range 4 {
		loaders.Go(func() {
			for range 2000 {
				if _, err := fs.Load(ctx, "k"); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err)
				}
			}
		})
	}
	loaders.Wait()
	stop.Store(true)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of 8000 loads failed during saves; first: %v", n, first.Load())
	}
}
