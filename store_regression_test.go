package dropboxsign_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// Store regressions, first found in review: each test failed before its fix.

// A store Save fails (the store is briefly down) and the store comes back:
// the next refresh must store and present the newer token held in memory,
// not the stored refresh token, which this very source has already spent.
func TestUnsavedTokenIsStoredBeforeTheNextRefresh(t *testing.T) {
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
	fresh, err := ts.TokenContext(ctx) // refresh #1: RT(old) spent, save fails
	var saveErr *dropboxsign.SaveError
	if !errors.As(err, &saveErr) || fresh == nil {
		t.Fatalf("want the token and a SaveError: %v, %v", fresh, err)
	}
	done.wait(t)
	store.failSaves.Store(false) // the store is back
	// The new token becomes due for a refresh before any save retry ran.
	clk.Set(fresh.Expiry.Add(time.Second))
	tok, err := ts.TokenContext(ctx)
	t.Logf("after the store came back: %v, %v", tok, err)
	if st := srv.Stats(); st.StaleRefreshTokens != 0 {
		t.Errorf("%d stale refresh token(s) presented: the source used the spent stored refresh token, not its own newer one", st.StaleRefreshTokens)
	}
	if err != nil {
		t.Errorf("no token: %v (the valid refresh token is in memory)", err)
	}
}

// The store loses its data (Redis restarts without persistence, the file is
// removed) while a refresh is in flight under the lock: Save(prev) gets
// ErrConflict, and the source must store its new token anyway, not drop it.
func TestSaveIntoAStoreEmptiedMidRefreshStoresTheToken(t *testing.T) {
	srv := newServer(t)
	fs := newFileStore(t)
	ctx := testContext(t)
	old := expired(srv.IssueToken())
	fs.Save(ctx, "acct", nil, old)
	release := srv.HoldTokenResponses()
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "acct"))
	got := make(chan error, 1)
	go func() { _, err := ts.TokenContext(ctx); got <- err }()
	if err := srv.WaitTokenRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	os.Remove(fs.Path("acct")) // the store loses its data mid-refresh
	release()
	err := <-got
	stored, lerr := fs.Load(ctx, "acct")
	if lerr == nil && stored != nil {
		return
	}
	t.Errorf("new token handed out (err=%v) but the store holds nothing (%v): the only valid refresh token lives in memory only", err, lerr)
}

// After a failed save, a 401 on the new token must not make the source
// adopt the older stored token, dropping the only live refresh token.
func TestRejectedUnsavedTokenIsNotReplacedByTheOlderStoredOne(t *testing.T) {
	srv := newServer(t)
	store := &failingStore{FileStore: newFileStore(t)}
	ctx := testContext(t)
	t1 := srv.IssueToken()
	store.Save(ctx, "acct", nil, t1)
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(store, "acct"))
	got, err := ts.TokenContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ts.Invalidate(got) // the API refused t1 (a 401)
	store.failSaves.Store(true)
	t2, err := ts.TokenContext(ctx)
	if t2 == nil || t2.AccessToken == t1.AccessToken {
		t.Fatalf("refresh: %v, %v", t2, err)
	}
	store.failSaves.Store(false)
	ts.Invalidate(t2) // a 401 on t2 too
	t3, err := ts.TokenContext(ctx)
	if err == nil && t3.AccessToken == t1.AccessToken {
		t.Errorf("the source went back to t1, which the API refused, and dropped t2 and its refresh token (never stored)")
	}
	// Whatever it holds now, its next refresh must not present a spent token.
	ts.Invalidate(t3)
	ts.TokenContext(ctx)
	if st := srv.Stats(); st.StaleRefreshTokens != 0 {
		t.Errorf("%d stale refresh token(s) presented", st.StaleRefreshTokens)
	}
}

// After the store loses its data, a replica that is behind may seed it with
// a refresh token another replica spent: no client can tell. The refusal is
// reported as Temporary, not as "re-authorize", and once the up-to-date
// replica stores its token, the one behind adopts it.
// lostDataBehind sets up two replicas (each a process of its own) on a
// FileStore: a rotates the token, then the store loses its data, and b,
// whose token is the one a spent, has its token refused by the API (a 401):
// b's next call must refresh with a refresh token a has spent.
func lostDataBehind(t *testing.T) (srv *dropboxsigntest.Server, fs *dropboxsign.FileStore, clk *clock, a, b *dropboxsign.TokenSource) {
	t.Helper()
	srv, fs, ctx, clk := newServer(t), newFileStore(t), testContext(t), newClock()
	fs.Save(ctx, "acct", nil, srv.IssueToken())
	a = dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "acct"))
	b = dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "acct"), dropboxsign.WithClock(clk.Now),
		dropboxsign.AsAnotherProcess()) // a replica: in this process, a's spending would be b's
	ta, _ := a.TokenContext(ctx)
	tb, _ := b.TokenContext(ctx)
	a.Invalidate(ta)
	if _, err := a.TokenContext(ctx); err != nil { // a rotates; the store holds a's new token
		t.Fatal(err)
	}
	os.Remove(fs.Path("acct")) // data loss
	b.Invalidate(tb)
	return srv, fs, clk, a, b
}

func TestReplicaBehindRecoversAfterTheStoreLostItsData(t *testing.T) {
	srv, fs, clk, a, b := lostDataBehind(t)
	ctx := testContext(t)
	_, err := b.TokenContext(ctx)
	if c := dropboxsign.Classify(err); c != dropboxsign.Temporary {
		t.Fatalf("B's refusal: %v classed %v; want Temporary", err, c)
	}
	tokA, _ := a.TokenContext(ctx)
	// A (restarted, say) seeds the store again with its token.
	a2 := dropboxsign.NewTokenSource(ctx, srv.Config(), tokA, dropboxsign.WithStore(fs, "acct"))
	fromA, err := a2.TokenContext(ctx)
	if err != nil || fromA.AccessToken != tokA.AccessToken {
		t.Fatal(fromA, err)
	}
	clk.Advance(2 * time.Second) // B's backoff
	fromB, err := b.TokenContext(ctx)
	if err != nil || fromB.AccessToken != fromA.AccessToken {
		t.Fatalf("B after A re-seeded: %v, %v; want A's token", fromB, err)
	}
	if n := srv.Stats().StaleRefreshTokens; n != 1 {
		t.Errorf("%d stale refresh tokens, want only B's one", n)
	}
}

// A token given with a store is stored before it is handed out, if the
// store holds none; if it holds one, the store wins: a new login is saved to
// the store (as `dropboxsign-token login` does) before sources read it.
func TestGivenTokenSeedsTheStoreAndAStoredGrantWins(t *testing.T) {
	srv := newServer(t)
	fs := newFileStore(t)
	ctx := testContext(t)
	given := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), given, dropboxsign.WithStore(fs, "new"))
	if _, err := ts.TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	if stored, err := fs.Load(ctx, "new"); err != nil || stored.AccessToken != given.AccessToken {
		t.Errorf("the given token was handed out but not stored: %v, %v", stored, err)
	}

	oldGrant := srv.IssueToken() // the user's previous login
	fs.Save(ctx, "relogin", nil, oldGrant)
	fresh := srv.IssueToken() // the user logs in again
	ts2 := dropboxsign.NewTokenSource(ctx, srv.Config(), fresh, dropboxsign.WithStore(fs, "relogin"))
	if tok, _ := ts2.TokenContext(ctx); tok.AccessToken != oldGrant.AccessToken {
		t.Errorf("a given token overrode the stored one")
	}
	prev, _ := fs.Load(ctx, "relogin")
	if err := fs.Save(ctx, "relogin", prev, fresh); err != nil {
		t.Fatal(err)
	}
	ts3 := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "relogin"))
	if tok, _ := ts3.TokenContext(ctx); tok.AccessToken != fresh.AccessToken {
		t.Errorf("after the login was saved, a source got %v", tok)
	}
}

// A replica that starts while the store's lock cannot be had (a holder that
// hangs, long contention, a store refusing writes) serves a stored token
// that is due for refresh but still good, instead of an error, and
// refreshes once the lock is free.
func TestColdReplicaServesAUsableStoredTokenWithoutTheLock(t *testing.T) {
	srv := newServer(t)
	fs := newFileStore(t)
	ctx := testContext(t)
	clk, done := newClock(), newRuns()
	stored := srv.IssueToken()
	stored.Expiry = clk.Now().Add(2 * time.Minute) // inside the 5 min window, usable
	if err := fs.Save(ctx, "acct", nil, stored); err != nil {
		t.Fatal(err)
	}
	unlock, err := fs.Lock(ctx, "acct")
	if err != nil {
		t.Fatal(err)
	}
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "acct"),
		dropboxsign.WithClock(clk.Now), dropboxsign.WithTimeout(100*time.Millisecond), done.option())
	for i := range 3 {
		tok, err := ts.TokenContext(ctx)
		if err != nil || tok.AccessToken != stored.AccessToken {
			t.Fatalf("cold start without the lock: %v, %v; want the stored token", tok, err)
		}
		if i == 0 {
			done.wait(t) // the cold start's run, which could not lock
		}
	}
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Fatalf("%d token requests without the lock", n)
	}
	unlock()
	clk.Advance(2 * time.Second) // past the backoff
	ts.TokenContext(ctx)         // in the window: a background refresh
	done.wait(t)
	tok, err := ts.TokenContext(ctx)
	if err != nil || tok.AccessToken == stored.AccessToken || srv.Stats().Refreshes != 1 {
		t.Fatalf("once the lock is free: %v, %v, %+v; want one refresh", tok, err, srv.Stats())
	}
}

// A stored token is checked like an answer: an access token that could not
// be sent (a tampered or corrupt store) is never handed out; the source
// refreshes instead. A refresh token that could not be sent is never sent.
func TestTamperedStoredTokensAreNotUsed(t *testing.T) {
	srv := newServer(t)
	fs := newFileStore(t)
	ctx := testContext(t)
	good := srv.IssueToken()
	bad := *good
	bad.AccessToken = "at\r\nX-Injected: 1"
	fs.Save(ctx, "acct", nil, &bad)
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "acct"))
	tok, err := ts.TokenContext(ctx)
	if err != nil || tok.AccessToken == bad.AccessToken || srv.Stats().Refreshes != 1 {
		t.Fatalf("%+v, %v, %+v; want a refreshed token", tok, err, srv.Stats())
	}

	worse := *good
	worse.AccessToken, worse.RefreshToken = "", "rt\x00tampered"
	fs.Save(ctx, "acct2", nil, &worse)
	ts = dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "acct2"))
	if _, err := ts.TokenContext(ctx); dropboxsign.Classify(err) != dropboxsign.Reauthorize {
		t.Fatalf("err = %v; want one classed Reauthorize", err)
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("%d token requests; the unsendable refresh token was sent", n)
	}

	// A token given to the source is checked the same way.
	given := *srv.IssueToken()
	given.AccessToken = "tab\there"
	ts = dropboxsign.NewTokenSource(ctx, srv.Config(), &given)
	if tok, err := ts.TokenContext(ctx); err != nil || tok.AccessToken == given.AccessToken {
		t.Fatalf("given an unsendable token: %+v, %v", tok, err)
	}
}

// hangingStore ignores its context: Lock never returns (a dead network file
// system, say), until released; Save panics when asked to.
type hangingStore struct {
	dropboxsign.Store
	release  chan struct{}
	unlocked atomic.Int64
	panics   bool
}

func (s *hangingStore) Lock(ctx context.Context, key string) (func(), error) {
	<-s.release
	return func() { s.unlocked.Add(1) }, nil
}

func (s *hangingStore) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if s.panics && !spendMark(t) {
		panic("store bug")
	}
	return s.Store.Save(ctx, key, prev, t)
}

// A store or a save function that ignores its context cannot hang the
// source: each call out is abandoned at the source's timeout, a lock taken
// too late is released, a panic is an error, and callers with no context of
// their own (Token) get an answer.
func TestStoreAndSaveFunctionsThatHangOrPanicCannotHangTheSource(t *testing.T) {
	srv := newServer(t)
	fs := newFileStore(t)
	ctx := testContext(t)
	fs.Save(ctx, "acct", nil, expired(srv.IssueToken()))
	store := &hangingStore{Store: fs, release: make(chan struct{})}
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(store, "acct"), dropboxsign.WithTimeout(50*time.Millisecond))
	if _, err := ts.Token(); err == nil || !strings.Contains(err.Error(), "Store.Lock did not return within its deadline") {
		t.Fatalf("Token with a hung store: %v", err)
	}
	close(store.release) // the abandoned Lock returns at last: its lock must not stay held
	deadline := time.Now().Add(10 * time.Second)
	for store.unlocked.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := store.unlocked.Load(); n != 1 {
		t.Errorf("the lock taken too late was released %d times, want 1", n)
	}

	store.panics = true
	ts = dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(store, "acct"))
	tok, err := ts.TokenContext(ctx)
	var saveErr *dropboxsign.SaveError
	if !errors.As(err, &saveErr) || tok == nil || !strings.Contains(err.Error(), "Store.Save panicked: store bug") {
		t.Fatalf("a panicking store: %v, %v; want the new token and a SaveError", tok, err)
	}

	hung := make(chan struct{})
	defer close(hung)
	ts = dropboxsign.NewTokenSource(ctx, srv.Config(), expired(srv.IssueToken()), dropboxsign.WithTimeout(50*time.Millisecond),
		dropboxsign.WithOnRefresh(func(context.Context, *oauth2.Token) error { <-hung; return nil }))
	if tok, err := ts.Token(); err != nil || tok == nil {
		t.Fatalf("a hung WithOnRefresh: %v, %v; want the new token, its save reported by TokenContext", tok, err)
	}
	if _, err := ts.TokenContext(ctx); !errors.As(err, &saveErr) {
		t.Fatalf("TokenContext: %v, want a SaveError", err)
	}
}
