package dropboxsign_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// These tests hold the spend mark (spending.go) to its promise under what a
// fleet meets: clocks that disagree, a store that cannot be written, a
// replica that gets no calls, a mark left behind.

// The grace runs from when a replica first sees a mark, by its own clock:
// a replica whose clock is minutes off either way still waits for the
// successor rather than present the spent refresh token.
func TestClockSkewDoesNotDefeatTheSpendMark(t *testing.T) {
	for _, skew := range []time.Duration{3 * time.Minute, -3 * time.Minute, 90 * time.Second} {
		t.Run(skew.String(), func(t *testing.T) {
			p := &replicaPair{srv: newServer(t), mem: dropboxsigntest.NewStore(), clk: newClock(), runs: newRuns()}
			p.here = &hookedStore{Store: p.mem}
			ctx := testContext(t)
			conf := p.srv.Config()
			p.a = dropboxsign.NewAccounts(ctx, conf, p.here, dropboxsign.WithClock(p.clk.Now), p.runs.option(), dropboxsign.AsAnotherProcess())
			bNow := func() time.Time { return p.clk.Now().Add(skew) }
			p.b = dropboxsign.NewAccounts(ctx, conf, p.mem, dropboxsign.WithClock(bNow), dropboxsign.AsAnotherProcess())

			old := p.srv.IssueToken()
			if err := p.mem.Save(ctx, "oli", nil, expired(old)); err != nil {
				t.Fatal(err)
			}
			p.refreshWithFailedSave(t, ctx, "oli")
			_, err := p.b.TokenSource("oli").TokenContext(ctx)
			var refusal *dropboxsign.RefusedError
			if errors.As(err, &refusal) {
				t.Errorf("replica b (clock %v off) was told to reauthorize while replica a holds the successor", skew)
			}
			if n := p.srv.Stats().StaleRefreshTokens; n != 0 {
				t.Errorf("replica b presented the spent refresh token (%d stale)", n)
			}
			if _, err := p.mem.Load(ctx, "oli"); errors.As(err, &refusal) {
				t.Errorf("the store was marked refused while replica a holds the successor")
			}
		})
	}
}

// A mark this replica left itself (its token request failed, and so did
// taking the mark off) does not hold this replica back: it knows that it
// holds no successor.
func TestAReplicaIgnoresAMarkItLeftItself(t *testing.T) {
	p := newReplicaPair(t)
	ctx := testContext(t)
	old := p.srv.IssueToken()
	if err := p.mem.Save(ctx, "pat", nil, expired(old)); err != nil {
		t.Fatal(err)
	}
	// The token request gets a 502; the unmark that follows fails.
	once := dropboxsigntest.BadGateway()
	once.Count = 1
	p.srv.InjectFault(once)
	marked := false
	p.here.set(func(op string, prev, tok *oauth2.Token) error {
		if op == "save" && tok != nil && tok.ExpiresIn < 0 {
			marked = true
			return nil
		}
		if op == "save" && marked {
			return errStoreDown // the unmark
		}
		return nil
	})
	if _, err := p.a.TokenSource("pat").TokenContext(ctx); err == nil {
		t.Fatal("want the 502")
	}
	p.runs.wait(t)
	p.here.set(nil)
	p.clk.Advance(5 * time.Second) // past the backoff
	before := p.srv.Stats().TokenRequests
	_, err := p.a.TokenSource("pat").TokenContext(ctx)
	if err != nil {
		t.Errorf("replica a, 5 s later, with the store up and Dropbox Sign back: %v (token requests since: %d)", err, p.srv.Stats().TokenRequests-before)
	}
}

// A store that cannot be written while reads and locks work (a FileStore
// on a full disk): no replica presents a refresh token it could not mark,
// so none spends a grant it could then not store, and nobody is told to
// reconnect: callers get the store's error, Temporary.
func TestAStoreThatCannotBeWrittenStopsRefreshesNotGrants(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	conf := srv.Config()
	mem := dropboxsigntest.NewStore()
	var full atomic.Bool
	ws := &writeFailingStore{Store: mem, fail: full.Load}
	a := dropboxsign.NewAccounts(ctx, conf, ws)
	b := dropboxsign.NewAccounts(ctx, conf, ws)
	old := srv.IssueToken()
	if err := mem.Save(ctx, "quin", nil, expired(old)); err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	for name, acc := range map[string]*dropboxsign.Accounts{"a": a, "b": b} {
		_, err := acc.TokenSource("quin").TokenContext(ctx)
		if err == nil || dropboxsign.Classify(err) != dropboxsign.Temporary || !errors.Is(err, errDiskFull) {
			t.Errorf("replica %s: %v (%v); want the store's error, temporary", name, err, dropboxsign.Classify(err))
		}
	}
	if s := srv.Stats(); s.TokenRequests != 0 {
		t.Errorf("%d token requests while the mark could not be written", s.TokenRequests)
	}
	// The disk has room again: the grant was never spent, and serves.
	full.Store(false)
	b2 := dropboxsign.NewAccounts(ctx, conf, ws)
	if acct, err := accountOf(b2.Client("quin"), srv.AccountURL()); err != nil || acct != "account-1" {
		t.Errorf("once the store can be written: %q, %v", acct, err)
	}
	if n := srv.Stats().StaleRefreshTokens; n != 0 {
		t.Errorf("%d stale refresh tokens", n)
	}
}

// A replica holding a token it could not store retries the save by itself
// when its backoff ends, calls or no calls: the account's calls may all go
// to other replicas (a load balancer), which wait for the token only for
// the grace.
func TestAnIdleReplicaStoresItsTokenWithoutCalls(t *testing.T) {
	p := newReplicaPair(t)
	ctx := testContext(t)
	old := p.srv.IssueToken()
	if err := p.mem.Save(ctx, "rae", nil, expired(old)); err != nil {
		t.Fatal(err)
	}
	held := p.refreshWithFailedSave(t, ctx, "rae")
	p.here.set(nil)                 // a's store is back
	p.clk.Advance(10 * time.Second) // past a's backoff; a gets no call from now on
	waitStored(t, ctx, p.mem, "rae", held)
	if acct, err := accountOf(p.b.Client("rae"), p.srv.AccountURL()); err != nil || acct != "account-1" {
		t.Errorf("replica b: %q, %v", acct, err)
	}
	if s := p.srv.Stats(); s.StaleRefreshTokens != 0 || s.Refreshes != 1 {
		t.Errorf("%d refreshes, %d stale; want 1 and 0", s.Refreshes, s.StaleRefreshTokens)
	}
}

// A token whose save failed and that is stored at last
// by the refresh path (it became due before the save's retry: run.go's
// "case st.holdsNewer(stored)") is stored without EventSaved: observers see
// save_failed and never the matching saved (docs/operating.md: EventSaved
// "a save succeeded after failed ones").
func TestATokenStoredAtLastByItsRefreshIsReportedSaved(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	here := &hookedStore{Store: mem}
	clk := newClock()
	r := newRuns()
	rec := newRecorder()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), here, dropboxsign.WithClock(clk.Now), r.option(), dropboxsign.WithObserver(rec))
	old := srv.IssueToken()
	if err := mem.Save(ctx, "sam", nil, expired(old)); err != nil {
		t.Fatal(err)
	}
	here.set(func(op string, prev, tok *oauth2.Token) error {
		if op == "save" && tok != nil && tok.ExpiresIn > 0 && tok.AccessToken != old.AccessToken {
			return errStoreDown // the new token's save
		}
		return nil
	})
	held, err := a.TokenSource("sam").TokenContext(ctx)
	var saveErr *dropboxsign.SaveError
	if held == nil || !errors.As(err, &saveErr) {
		t.Fatalf("%v, %v; want a SaveError", held, err)
	}
	r.wait(t)
	rec.waitFor(t, dropboxsign.EventSaveFailed, 1)
	here.set(nil)
	clk.Set(held.Expiry.Add(-time.Second)) // due before any retry of the save
	if _, err := a.TokenSource("sam").TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, dropboxsign.EventTokenRequest, 2)
	if stored, err := mem.Load(ctx, "sam"); err != nil || stored.AccessToken == old.AccessToken {
		t.Fatalf("store: %v", err)
	}
	if n := len(rec.of(dropboxsign.EventSaved)); n == 0 {
		t.Errorf("the token that failed to save was stored at last, and %d EventSaved came", n)
	}
}

// A 401 makes the token in hand unusable at once; if the mark cannot be
// written then (the replica's writes to the store fail, its reads and lock
// work), the replica does not present the refresh token: the grant stays
// whole in the store, and another replica refreshes it as usual.
func TestA401WithTheMarkUnwritableSpendsNothing(t *testing.T) {
	p := newReplicaPair(t)
	ctx := testContext(t)
	old := p.srv.IssueToken()
	if err := p.mem.Save(ctx, "tess", nil, old); err != nil {
		t.Fatal(err)
	}
	tok, err := p.a.TokenSource("tess").TokenContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.here.set(func(op string, _, _ *oauth2.Token) error {
		if op == "save" {
			return errStoreDown // a's writes fail; its reads and lock work
		}
		return nil
	})
	p.a.TokenSource("tess").Invalidate(tok) // a 401
	if _, err := p.a.TokenSource("tess").TokenContext(ctx); err == nil || dropboxsign.Classify(err) != dropboxsign.Temporary {
		t.Fatalf("replica a: %v; want the store's error, temporary", err)
	}
	if n := p.srv.Stats().TokenRequests; n != 0 {
		t.Fatalf("replica a presented the refresh token unmarked (%d token requests)", n)
	}
	p.clk.Set(old.Expiry.Add(-time.Minute)) // b's token comes due
	if acct, err := accountOf(p.b.Client("tess"), p.srv.AccountURL()); err != nil || acct != "account-1" {
		t.Errorf("replica b: %q, %v", acct, err)
	}
	var refusal *dropboxsign.RefusedError
	if _, err := p.mem.Load(ctx, "tess"); errors.As(err, &refusal) {
		t.Errorf("the store is marked refused")
	}
	if n := p.srv.Stats().StaleRefreshTokens; n != 0 {
		t.Errorf("%d stale refresh tokens", n)
	}
}

// Reading the store while waiting for a successor is not a failure: after
// the grace, a first real failure backs off as a first one does (1 s to
// 1.5 s), not as the hundred-and-twentieth.
func TestWaitingOnAMarkDoesNotAddToTheBackoff(t *testing.T) {
	p := newReplicaPair(t)
	ctx := testContext(t)
	old := p.srv.IssueToken()
	if err := p.mem.Save(ctx, "uma", nil, dropboxsign.WithSpendMark(expired(old), p.clk.Now())); err != nil {
		t.Fatal(err)
	}
	for range 118 {
		p.b.TokenSource("uma").TokenContext(ctx)
		p.clk.Advance(time.Second)
	}
	if n := p.srv.Stats().TokenRequests; n != 0 {
		t.Fatalf("%d token requests within the grace", n)
	}
	p.clk.Advance(3 * time.Second) // past the grace
	once := dropboxsigntest.BadGateway()
	once.Count = 1
	p.srv.InjectFault(once)
	if _, err := p.b.TokenSource("uma").TokenContext(ctx); err == nil {
		t.Fatal("want the 502")
	}
	p.clk.Advance(3 * time.Second) // Dropbox Sign is back
	if _, err := p.b.TokenSource("uma").TokenContext(ctx); err != nil {
		t.Errorf("3 s after one 502, the account still fails: %v", err)
	}
}

// writeFailingStore is a store whose writes fail (a full disk under a
// FileStore, say) while reads and locks work.
type writeFailingStore struct {
	dropboxsign.Store
	fail func() bool
}

var errDiskFull = errors.New("no space left on device")

func (w *writeFailingStore) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if w.fail() {
		return errDiskFull
	}
	return w.Store.Save(ctx, key, prev, t)
}

func (w *writeFailingStore) MarkRefused(ctx context.Context, key string, t *oauth2.Token) error {
	if w.fail() {
		return errDiskFull
	}
	return w.Store.MarkRefused(ctx, key, t)
}

// A mark left long ago (a replica, or a `dropboxsign-token print`, killed
// between its token request and its save) holds off no new process for
// long: past the grace and the clocks' tolerance since the mark, by the
// reader's clock, a source that sees it for the first time (each CLI
// print, a restarted replica) does not wait.
func TestAStaleMarkHoldsOffNoNewProcess(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	tok := srv.IssueToken()
	marked := dropboxsign.WithSpendMark(expired(tok), time.Now().Add(-dropboxsign.SuccessorGrace-dropboxsign.MaxMarkSkew-time.Second))
	if err := fs.Save(ctx, "acct", nil, marked); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // three CLI prints, minutes apart in real life
		ts := dropboxsign.NewTokenSource(context.Background(), srv.Config(), nil,
			dropboxsign.WithStore(fs, "acct"), dropboxsign.WithExpiryWindow(time.Minute))
		_, err := ts.TokenContext(ctx)
		if err != nil {
			t.Errorf("print %d, long after the mark: %v (token requests so far %d)", i, err, srv.Stats().TokenRequests)
		}
	}
}

// The same under Accounts churn: an account let go and loaded again sees
// the mark for the first time again; the wait still ends once the mark is
// older than the grace and the clocks' tolerance.
func TestAMarkHoldsOffAnAccountReloadedUnderChurnForBoundedTime(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := newFileStore(t)
	clk := newClock()
	tok := srv.IssueToken()
	marked := dropboxsign.WithSpendMark(expired(tok), clk.Now())
	if err := mem.Save(ctx, "acct", nil, marked); err != nil {
		t.Fatal(err)
	}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), mem, dropboxsign.WithClock(clk.Now), dropboxsign.WithMaxAccounts(16))
	for i := range 4 { // every 130 s, with 16+ other accounts used in between
		clk.Advance(90 * time.Second)
		_, err := a.TokenSource("acct").TokenContext(ctx)
		t.Logf("%v after the mark: %v", time.Duration(i+1)*130*time.Second, err)
		for j := range 40 {
			clk.Advance(time.Second)
			other := string(rune('a'+j)) + "-other"
			mem.Save(ctx, other, nil, srv.IssueToken())
			a.TokenSource(other).TokenContext(ctx)
		}
		runtime.GC()
		runtime.GC()
	}
	if n := srv.Stats().TokenRequests; n == 0 {
		t.Errorf("8 min after a mark, with the account let go between uses, no refresh was ever tried")
	}
}
