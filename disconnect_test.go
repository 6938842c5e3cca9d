package dropboxsign_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// These tests hold Accounts.Disconnect to its doc: this process stops at
// once, other replicas when the store tells them (or at their poll), no
// replica writes the grant back, and a later login connects again.

// connected stores a token the fake knows under account and has each
// replica serve it, so that each holds it in memory.
func connected(t *testing.T, ctx context.Context, store dropboxsign.Store, srv *dropboxsigntest.Server, account string, replicas ...*dropboxsign.Accounts) *oauth2.Token {
	t.Helper()
	tok := srv.IssueToken()
	if err := store.Save(ctx, account, nil, tok); err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas {
		if got, err := r.TokenSource(account).TokenContext(ctx); err != nil || got.AccessToken != tok.AccessToken {
			t.Fatalf("replica serves %v, %v; want the stored token", got, err)
		}
	}
	return tok
}

// wantDisconnected fails unless err says the app disconnected account.
func wantDisconnected(t *testing.T, err error, who string) {
	t.Helper()
	var refused *dropboxsign.RefusedError
	switch {
	case !errors.Is(err, dropboxsign.ErrDisconnected):
		t.Fatalf("%s: %v; want ErrDisconnected", who, err)
	case errors.As(err, &refused):
		t.Fatalf("%s: %v is a *RefusedError: Dropbox Sign refused nothing", who, err)
	case dropboxsign.Classify(err) != dropboxsign.Reauthorize:
		t.Fatalf("%s: class %v; want Reauthorize", who, dropboxsign.Classify(err))
	case strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), "next refresh attempt"):
		t.Fatalf("%s: %q speaks of a refusal or a retry", who, err)
	}
}

// until calls f until it returns true or ctx ends (then it fails): for
// what another goroutine does when it does, with no deadline of its own.
func until(t *testing.T, ctx context.Context, what string, f func() bool) {
	t.Helper()
	for !f() {
		select {
		case <-ctx.Done():
			t.Fatalf("never: %s", what)
		case <-time.After(time.Millisecond):
		}
	}
}

func TestDisconnectStopsThisProcessAtOnceAndLeavesNoToken(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	store := dropboxsigntest.NewStore()
	rec := newRecorder()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.WithObserver(rec))
	tok := connected(t, ctx, store, srv, "ann", a)
	if err := a.Disconnect(ctx, "ann"); err != nil {
		t.Fatal(err)
	}
	_, err := a.TokenSource("ann").TokenContext(ctx)
	wantDisconnected(t, err, "the next call")
	_, err = store.Load(ctx, "ann")
	var d *dropboxsign.DisconnectedError
	if !errors.As(err, &d) || d.Key != "ann" || d.Since.IsZero() {
		t.Fatalf("the store: %v; want a disconnection mark", err)
	}
	if err := store.Save(ctx, "ann", tok, srv.IssueToken()); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Fatalf("a save over the mark: %v; want ErrConflict", err)
	}
	if err := store.Save(ctx, "ann", nil, srv.IssueToken()); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Fatalf("a save over the mark with prev nil: %v; want ErrConflict", err)
	}
	// Idempotent, and a request through the client never reaches the API.
	if err := a.Disconnect(ctx, "ann"); err != nil {
		t.Fatalf("again: %v", err)
	}
	before := srv.Stats()
	resp, err := a.Client("ann").Get(srv.AccountURL())
	if err == nil {
		resp.Body.Close()
		t.Fatal("a request for a disconnected account went out")
	}
	wantDisconnected(t, err, "a request through the client")
	if after := srv.Stats(); after.APICalls != before.APICalls || after.TokenRequests != before.TokenRequests {
		t.Fatalf("the fake saw %+v, then %+v", before, after)
	}
	if st := a.Stats(); st.Disconnected != 1 || st.Refused != 0 {
		t.Fatalf("stats %+v; want 1 disconnected, 0 refused", st)
	}
	a.Shutdown(ctx)
	rec.waitFor(t, dropboxsign.EventDisconnected, 1)
	if n := len(rec.of(dropboxsign.EventRefused)); n != 0 {
		t.Fatalf("%d refusal events; want none", n)
	}
}

// Another replica holding a fresh token stops when the store tells it:
// not at its next refresh, an hour later.
func TestDisconnectStopsAnotherReplicaWhenTheStoreTellsIt(t *testing.T) {
	for _, push := range []bool{true, false} {
		name := "push"
		if !push {
			name = "poll"
		}
		t.Run(name, func(t *testing.T) {
			srv := newServer(t)
			ctx := testContext(t)
			store := dropboxsigntest.NewStore()
			store.SetPush(push)
			// With the push cut, the poll brings the change; a long one
			// when the push is on, so that only the push can.
			poll := time.Hour
			if !push {
				poll = 20 * time.Millisecond
			}
			a := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.AsAnotherProcess(), dropboxsign.WithWatchPoll(poll))
			b := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.AsAnotherProcess(), dropboxsign.WithWatchPoll(poll))
			connected(t, ctx, store, srv, "bo", a, b)
			if err := a.Disconnect(ctx, "bo"); err != nil {
				t.Fatal(err)
			}
			until(t, ctx, "replica b stops using the grant", func() bool {
				_, err := b.TokenSource("bo").TokenContext(ctx)
				return err != nil
			})
			_, err := b.TokenSource("bo").TokenContext(ctx)
			wantDisconnected(t, err, "replica b")
			if n := srv.Stats().TokenRequests; n != 0 {
				t.Fatalf("%d token requests; want none", n)
			}
		})
	}
}

// A refresh under way at another replica when the account is disconnected
// ends without storing or serving its token: its save meets the mark, even
// at a replica that does not watch the store (a, here).
func TestARefreshUnderWayWhenDisconnectedIsNeitherStoredNorServed(t *testing.T) {
	p := newReplicaPair(t)
	ctx := testContext(t)
	old := p.srv.IssueToken()
	if err := p.mem.Save(ctx, "cy", nil, expired(old)); err != nil {
		t.Fatal(err)
	}
	release := p.srv.HoldTokenResponses()
	done := make(chan error, 1)
	go func() {
		_, err := p.a.TokenSource("cy").TokenContext(ctx)
		done <- err
	}()
	if err := p.srv.WaitTokenRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := p.b.Disconnect(ctx, "cy"); err != nil {
		t.Fatal(err)
	}
	release()
	wantDisconnected(t, <-done, "the caller that waited for the refresh")
	if p.srv.Stats().Refreshes != 1 {
		t.Fatalf("stats %+v: the held refresh did not complete", p.srv.Stats())
	}
	if _, err := p.mem.Load(ctx, "cy"); !errors.Is(err, dropboxsign.ErrDisconnected) {
		t.Fatalf("the store holds %v; want the disconnection mark", err)
	}
	_, err := p.a.TokenSource("cy").TokenContext(ctx)
	wantDisconnected(t, err, "replica a afterwards")
}

// A refresh under way in this process when Disconnect is called publishes
// nothing, even if its token reached the store before the disconnection
// and the run began from no token at all (the account's first load).
func TestARefreshUnderWayHereIsCutByDisconnect(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	if err := mem.Save(ctx, "di", nil, expired(srv.IssueToken())); err != nil {
		t.Fatal(err)
	}
	held := &holdAfterSave{Store: mem, saved: make(chan struct{}), resume: make(chan struct{})}
	// Not watching the store: the cut alone must stop the run (the store's
	// news would too, when it comes).
	a := dropboxsign.NewAccounts(ctx, srv.Config(), &hookedStore{Store: held})
	held.arm()
	done := make(chan error, 1)
	go func() {
		_, err := a.TokenSource("di").TokenContext(ctx)
		done <- err
	}()
	<-held.saved // the new token is stored; the run has not published it
	if err := a.Disconnect(ctx, "di"); err != nil {
		t.Fatal(err)
	}
	close(held.resume)
	if err := <-done; err == nil {
		t.Fatal("the caller that waited got a token of a disconnected account")
	}
	_, err := a.TokenSource("di").TokenContext(ctx)
	wantDisconnected(t, err, "the next call")
	if _, err := mem.Load(ctx, "di"); !errors.Is(err, dropboxsign.ErrDisconnected) {
		t.Fatalf("the store holds %v; want the disconnection mark", err)
	}
}

// A save that failed before the disconnection, retried after it, does not
// bring the grant back; nor does a login's save retried after a
// disconnection that came after the login.
func TestASaveRetriedAfterADisconnectionDoesNotWriteTheGrantBack(t *testing.T) {
	t.Run("refresh", func(t *testing.T) {
		p := newReplicaPair(t)
		ctx := testContext(t)
		if err := p.mem.Save(ctx, "ed", nil, expired(p.srv.IssueToken())); err != nil {
			t.Fatal(err)
		}
		p.refreshWithFailedSave(t, ctx, "ed")
		if err := p.b.Disconnect(ctx, "ed"); err != nil {
			t.Fatal(err)
		}
		p.here.set(nil)
		p.clk.Advance(6 * time.Minute) // every backoff has passed
		until(t, ctx, "replica a drops the token it could not save", func() bool {
			_, err := p.a.TokenSource("ed").TokenContext(ctx)
			return errors.Is(err, dropboxsign.ErrDisconnected)
		})
		if _, err := p.mem.Load(ctx, "ed"); !errors.Is(err, dropboxsign.ErrDisconnected) {
			t.Fatalf("the store holds %v; want the disconnection mark", err)
		}
	})
	t.Run("login", func(t *testing.T) {
		p := newReplicaPair(t)
		ctx := testContext(t)
		p.here.set(func(string, *oauth2.Token, *oauth2.Token) error { return errStoreDown })
		tok, err := p.a.Login(ctx, "fay", authorize(t, p.srv, p.srv.Config(), "s"), "s")
		var unsaved *dropboxsign.SaveError
		if tok == nil || !errors.As(err, &unsaved) {
			t.Fatalf("login: %v, %v; want a token and a *SaveError", tok, err)
		}
		if err := p.b.Disconnect(ctx, "fay"); err != nil {
			t.Fatal(err)
		}
		p.here.set(nil)
		p.clk.Advance(6 * time.Minute)
		until(t, ctx, "replica a drops the login it could not save", func() bool {
			_, err := p.a.TokenSource("fay").TokenContext(ctx)
			return errors.Is(err, dropboxsign.ErrDisconnected)
		})
		if _, err := p.mem.Load(ctx, "fay"); !errors.Is(err, dropboxsign.ErrDisconnected) {
			t.Fatalf("the store holds %v; want the disconnection mark", err)
		}
	})
}

// A login made well after a disconnection, whose save fails, is stored
// over the mark by its retry: the user connected again.
func TestALoginAfterADisconnectionIsStoredByItsRetry(t *testing.T) {
	p := newReplicaPair(t)
	ctx := testContext(t)
	if err := p.mem.Disconnect(ctx, "gil"); err != nil {
		t.Fatal(err)
	}
	p.clk.Advance(dropboxsign.MaxMarkSkew + time.Minute) // the login comes later than the clocks may disagree
	p.here.set(func(string, *oauth2.Token, *oauth2.Token) error { return errStoreDown })
	tok, err := p.a.Login(ctx, "gil", authorize(t, p.srv, p.srv.Config(), "s"), "s")
	if tok == nil || err == nil {
		t.Fatalf("login: %v, %v; want a token and a save error", tok, err)
	}
	p.here.set(nil)
	p.clk.Advance(6 * time.Minute)
	p.a.TokenSource("gil").TokenContext(ctx) // a call, or the background retry, stores it
	waitStored(t, ctx, p.mem, "gil", tok)
	got, err := p.b.TokenSource("gil").TokenContext(ctx)
	if err != nil || got.AccessToken != tok.AccessToken {
		t.Fatalf("replica b: %v, %v; want the new login's token", got, err)
	}
}

// A new login on one replica serves on another at once, through the
// store's push: even one that holds a fresh token of the old grant, or is
// waiting out a disconnection.
func TestALoginServesOnEveryReplicaWhenTheStoreTellsIt(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	store := dropboxsigntest.NewStore()
	clk := newClock() // frozen: only the push can bring the login
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.AsAnotherProcess(), dropboxsign.WithClock(clk.Now), dropboxsign.WithWatchPoll(time.Hour))
	b := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.AsAnotherProcess(), dropboxsign.WithClock(clk.Now), dropboxsign.WithWatchPoll(time.Hour))
	old := connected(t, ctx, store, srv, "hal", a, b)
	login := func() *oauth2.Token {
		tok, err := a.Login(ctx, "hal", authorize(t, srv, srv.Config(), "s"), "s")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	serves := func(want *oauth2.Token) func() bool {
		return func() bool {
			got, err := b.TokenSource("hal").TokenContext(ctx)
			return err == nil && got.AccessToken == want.AccessToken
		}
	}
	first := login()
	if first.AccessToken == old.AccessToken {
		t.Fatal("the login brought the old token")
	}
	until(t, ctx, "replica b serves the new login instead of the old grant", serves(first))
	if err := a.Disconnect(ctx, "hal"); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "replica b stops", func() bool {
		_, err := b.TokenSource("hal").TokenContext(ctx)
		return errors.Is(err, dropboxsign.ErrDisconnected)
	})
	second := login()
	until(t, ctx, "replica b serves the login after the disconnection", serves(second))
}

// A store that lost its data is re-seeded from a replica's memory (the
// replica holds the newest refresh token); a disconnected account is not,
// and neither is one whose store was emptied after its mark was forgotten.
func TestRemovalIsToldFromDataLoss(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	lossy := &losingStore{}
	lossy.lose()
	clk := newClock()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), lossy, dropboxsign.WithClock(clk.Now))
	connected(t, ctx, lossy, srv, "ida", a)
	lossy.lose()
	clk.Advance(time.Hour) // due: the refresh finds the store empty
	if _, err := a.TokenSource("ida").TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := lossy.Load(ctx, "ida"); err != nil {
		t.Fatalf("after a data loss the store holds %v; want the replica's token again", err)
	}

	// Forgotten after the horizon: nothing is written back.
	if err := a.Disconnect(ctx, "ida"); err != nil {
		t.Fatal(err)
	}
	b := dropboxsign.NewAccounts(ctx, srv.Config(), lossy, dropboxsign.WithClock(clk.Now), dropboxsign.AsAnotherProcess())
	if err := b.Forget(ctx, "ida"); err == nil || !strings.Contains(err.Error(), "disconnect") {
		t.Fatalf("forget at once: %v; want an error saying the mark is too young", err)
	}
	clk.Advance(dropboxsign.ForgetAfter + time.Minute)
	if err := b.Forget(ctx, "ida"); err != nil {
		t.Fatal(err)
	}
	if c := b.Connection(ctx, "ida"); c.Status != dropboxsign.StatusNeverConnected {
		t.Fatalf("after Forget: %+v", c)
	}
	if err := b.Forget(ctx, "ida"); err != nil {
		t.Fatalf("forget again: %v", err)
	}
}

// A replica holding a token from before a disconnection whose mark was
// later forgotten takes the account for not connected, and writes nothing.
func TestATokenOlderThanTheHorizonIsNotRestored(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	store := dropboxsigntest.NewStore()
	clk := newClock()
	b := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.WithClock(clk.Now), dropboxsign.WithWatchPoll(time.Hour))
	store.SetPush(false) // b never hears of the disconnection
	connected(t, ctx, store, srv, "jan", b)
	if err := store.Disconnect(ctx, "jan"); err != nil {
		t.Fatal(err)
	}
	if err := store.Forget(ctx, "jan", time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(dropboxsign.RestoreHorizon + time.Minute)
	before := srv.Stats().TokenRequests
	_, err := b.TokenSource("jan").TokenContext(ctx)
	if !errors.Is(err, dropboxsign.ErrNotConnected) || dropboxsign.Classify(err) != dropboxsign.Reauthorize {
		t.Fatalf("replica b: %v; want ErrNotConnected", err)
	}
	if _, err := store.Load(ctx, "jan"); !errors.Is(err, dropboxsign.ErrNotFound) {
		t.Fatalf("the store holds %v; want nothing", err)
	}
	if n := srv.Stats().TokenRequests - before; n != 0 {
		t.Fatalf("%d token requests with a forgotten grant", n)
	}
}

func TestANeverConnectedAccountIsToldSoWithoutRetryWording(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	a := dropboxsign.NewAccounts(ctx, srv.Config(), dropboxsigntest.NewStore())
	for range 2 { // the first call, and one within the recheck's pause
		_, err := a.TokenSource("kim").TokenContext(ctx)
		if !errors.Is(err, dropboxsign.ErrNotConnected) || dropboxsign.Classify(err) != dropboxsign.Reauthorize {
			t.Fatalf("%v (class %v); want ErrNotConnected, Reauthorize", err, dropboxsign.Classify(err))
		}
		if msg := err.Error(); strings.Contains(msg, "attempt") || strings.Contains(msg, "retry") || !strings.Contains(msg, "not connected") {
			t.Fatalf("%q", msg)
		}
	}
	if c := a.Connection(ctx, "kim"); c.Status != dropboxsign.StatusNeverConnected || c.Err != nil {
		t.Fatalf("connection %+v", c)
	}
	if err := a.Disconnect(ctx, "kim"); err != nil {
		t.Fatalf("disconnect of a never-connected account: %v", err)
	}
}

func TestDisconnectWhenTheStoreFailsSaysSoAndChangesNothingHere(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	store := &hookedStore{Store: &failingDisconnects{mem}}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store)
	tok := connected(t, ctx, mem, srv, "lou", a)
	err := a.Disconnect(ctx, "lou")
	if err == nil || dropboxsign.Classify(err) != dropboxsign.Temporary || !strings.Contains(err.Error(), "try again") {
		t.Fatalf("disconnect: %v (class %v); want a temporary error", err, dropboxsign.Classify(err))
	}
	got, err := a.TokenSource("lou").TokenContext(ctx)
	if err != nil || got.AccessToken != tok.AccessToken {
		t.Fatalf("after a failed disconnect: %v, %v; want the stored token (the store decides)", got, err)
	}
}

type failingDisconnects struct{ dropboxsign.Store }

func (f *failingDisconnects) Disconnect(context.Context, string) error { return errStoreDown }

func TestDisconnectRefusesAnInvalidKeyAndWorksNotAfterShutdown(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	a := dropboxsign.NewAccounts(ctx, srv.Config(), dropboxsigntest.NewStore())
	for _, key := range []string{"", "a\x00b", strings.Repeat("k", dropboxsign.MaxAccountKeyLen+1)} {
		if err := a.Disconnect(ctx, key); dropboxsign.Classify(err) != dropboxsign.Misconfigured {
			t.Fatalf("key %q: %v; want Misconfigured", key, err)
		}
	}
	a.Shutdown(ctx)
	if err := a.Disconnect(ctx, "x"); !errors.Is(err, dropboxsign.ErrShutdown) {
		t.Fatalf("after Shutdown: %v", err)
	}
}

func TestConnectionSaysEachState(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	store := dropboxsigntest.NewStore()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store)
	tok := connected(t, ctx, store, srv, "on", a)
	if c := a.Connection(ctx, "on"); c.Status != dropboxsign.StatusConnected || !c.Expiry.Equal(tok.Expiry) {
		t.Fatalf("connected: %+v", c)
	}
	refused := srv.IssueToken()
	if err := store.Save(ctx, "no", nil, refused); err != nil {
		t.Fatal(err)
	}
	if err := store.MarkRefused(ctx, "no", refused); err != nil {
		t.Fatal(err)
	}
	if c := a.Connection(ctx, "no"); c.Status != dropboxsign.StatusRefused || c.Since.IsZero() {
		t.Fatalf("refused: %+v", c)
	}
	if err := a.Disconnect(ctx, "on"); err != nil {
		t.Fatal(err)
	}
	if c := a.Connection(ctx, "on"); c.Status != dropboxsign.StatusDisconnected || c.Since.IsZero() {
		t.Fatalf("disconnected: %+v", c)
	}
	down := dropboxsign.NewAccounts(ctx, srv.Config(), &hookedStore{Store: store, before: func(string, *oauth2.Token, *oauth2.Token) error { return errStoreDown }})
	if c := down.Connection(ctx, "on"); c.Status != dropboxsign.StatusUnknown || c.Err == nil {
		t.Fatalf("store down: %+v", c)
	}
	var listed []string
	for d, err := range a.Disconnected(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, d.Key)
	}
	if len(listed) != 1 || listed[0] != "on" {
		t.Fatalf("listed %v", listed)
	}
	for r, err := range a.Refused(ctx) {
		if err != nil || r.Key != "no" {
			t.Fatalf("refused listing: %v, %v", r, err)
		}
	}
}

// losingStore is a store that can lose all its data at once, as a Redis
// without persistence does when it restarts.
type losingStore struct {
	mu  sync.Mutex
	mem *dropboxsigntest.Store
}

func (l *losingStore) lose() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mem = dropboxsigntest.NewStore()
}

func (l *losingStore) cur() *dropboxsigntest.Store {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mem
}

func (l *losingStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	return l.cur().Load(ctx, key)
}

func (l *losingStore) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	return l.cur().Save(ctx, key, prev, t)
}

func (l *losingStore) Replace(ctx context.Context, key string, t *oauth2.Token) error {
	return l.cur().Replace(ctx, key, t)
}

func (l *losingStore) Lock(ctx context.Context, key string) (func(), error) {
	return l.cur().Lock(ctx, key)
}

func (l *losingStore) MarkRefused(ctx context.Context, key string, t *oauth2.Token) error {
	return l.cur().MarkRefused(ctx, key, t)
}

func (l *losingStore) Disconnect(ctx context.Context, key string) error {
	return l.cur().Disconnect(ctx, key)
}

func (l *losingStore) Forget(ctx context.Context, key string, before time.Time) error {
	return l.cur().Forget(ctx, key, before)
}

// A refresh whose token reached the store just before the disconnection,
// and whose run ends after the store told this replica of it, does not
// serve its token: the store's news outlives the run.
func TestARunEndingAfterTheStoresNewsDoesNotServe(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	held := &holdAfterSave{Store: mem, saved: make(chan struct{}), resume: make(chan struct{})}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), mem, dropboxsign.AsAnotherProcess())
	rec := newRecorder()
	b := dropboxsign.NewAccounts(ctx, srv.Config(), held, dropboxsign.AsAnotherProcess(), dropboxsign.WithObserver(rec))
	if err := mem.Save(ctx, "max", nil, expired(srv.IssueToken())); err != nil {
		t.Fatal(err)
	}
	held.arm()
	done := make(chan error, 1)
	go func() {
		_, err := b.TokenSource("max").TokenContext(ctx)
		done <- err
	}()
	<-held.saved // b's new token is stored; its run has not published it
	if err := a.Disconnect(ctx, "max"); err != nil {
		t.Fatal(err)
	}
	// b's watch reports the change; once b has handled it, let the run end.
	until(t, ctx, "replica b hears of the change", func() bool { return b.Stats().Held == 1 && held.watched() })
	close(held.resume)
	<-done // the caller that waited got the run's token: it was handed out before the news
	_, err := b.TokenSource("max").TokenContext(ctx)
	wantDisconnected(t, err, "replica b's next call")
}

// holdAfterSave holds the first Save of a new token (not a spending mark),
// once it has succeeded, until resume is closed; it counts the changes its
// watch reports.
type holdAfterSave struct {
	*dropboxsigntest.Store
	on            bool
	mu            sync.Mutex
	saved, resume chan struct{}
	reports       int
}

func (h *holdAfterSave) arm() { h.mu.Lock(); h.on = true; h.mu.Unlock() }

func (h *holdAfterSave) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	err := h.Store.Save(ctx, key, prev, t)
	h.mu.Lock()
	hold := err == nil && h.on && !spendMark(t)
	if hold {
		h.on = false
	}
	h.mu.Unlock()
	if hold {
		close(h.saved)
		<-h.resume
	}
	return err
}

func (h *holdAfterSave) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	h.Store.Watch(ctx, poll, func(c dropboxsign.Change) {
		report(c) // handled (the account rechecks) before it is counted
		h.mu.Lock()
		h.reports++
		h.mu.Unlock()
	})
}

func (h *holdAfterSave) watched() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reports > 0
}

// A new login that the store reports while a run of a disconnected account
// is under way, the run having read the mark before the login, serves at
// the next call: the run's outcome does not hold it off for the pause a
// disconnected account waits between reads of the store.
func TestALoginReportedDuringARunFromTheMarkServesAtOnce(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	clk := newClock() // frozen but where the test moves it: only the store's news can cut the pause short
	held := &holdAfterLoad{Store: mem, loaded: make(chan struct{}), resume: make(chan struct{})}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), mem, dropboxsign.AsAnotherProcess(), dropboxsign.WithClock(clk.Now), dropboxsign.WithWatchPoll(time.Hour))
	b := dropboxsign.NewAccounts(ctx, srv.Config(), held, dropboxsign.AsAnotherProcess(), dropboxsign.WithClock(clk.Now), dropboxsign.WithWatchPoll(time.Hour))
	connected(t, ctx, mem, srv, "ned", a, b)
	if err := a.Disconnect(ctx, "ned"); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "replica b stops", func() bool {
		_, err := b.TokenSource("ned").TokenContext(ctx)
		return errors.Is(err, dropboxsign.ErrDisconnected)
	})
	clk.Advance(2 * time.Second) // b's pause before it reads the store again has passed
	held.arm()
	go b.TokenSource("ned").TokenContext(ctx) // a run that reads the mark, then waits
	<-held.loaded
	before := held.count()
	tok, err := a.Login(ctx, "ned", authorize(t, srv, srv.Config(), "s"), "s")
	if err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "replica b hears of the login", func() bool { return held.count() > before })
	close(held.resume)
	until(t, ctx, "replica b serves the new login", func() bool {
		got, err := b.TokenSource("ned").TokenContext(ctx)
		return err == nil && got.AccessToken == tok.AccessToken
	})
}

// holdAfterLoad holds the first Load once armed, after it has read the
// store, until resume is closed; it counts the changes its watch reports.
type holdAfterLoad struct {
	*dropboxsigntest.Store
	mu             sync.Mutex
	on             bool
	reports        int
	loaded, resume chan struct{}
}

func (h *holdAfterLoad) arm() { h.mu.Lock(); h.on = true; h.mu.Unlock() }

func (h *holdAfterLoad) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	t, err := h.Store.Load(ctx, key)
	h.mu.Lock()
	hold := h.on
	h.on = false
	h.mu.Unlock()
	if hold {
		close(h.loaded)
		<-h.resume
	}
	return t, err
}

func (h *holdAfterLoad) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	h.Store.Watch(ctx, poll, func(c dropboxsign.Change) {
		report(c)
		h.mu.Lock()
		h.reports++
		h.mu.Unlock()
	})
}

func (h *holdAfterLoad) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reports
}

// A replica that read the store before its watch began still hears of a
// disconnection made in between: the watch reports what its log holds
// from before it was called.
func TestADisconnectionBeforeTheWatchBeganIsNotMissed(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	late := &lateWatch{Store: mem, begin: make(chan struct{})}
	b := dropboxsign.NewAccounts(ctx, srv.Config(), late, dropboxsign.AsAnotherProcess(), dropboxsign.WithWatchPoll(time.Hour))
	connected(t, ctx, mem, srv, "oz", b) // read before the watch began
	a := dropboxsign.NewAccounts(ctx, srv.Config(), mem, dropboxsign.AsAnotherProcess())
	if err := a.Disconnect(ctx, "oz"); err != nil {
		t.Fatal(err)
	}
	close(late.begin) // b's watch begins only now
	until(t, ctx, "replica b stops", func() bool {
		_, err := b.TokenSource("oz").TokenContext(ctx)
		return errors.Is(err, dropboxsign.ErrDisconnected)
	})
}

// lateWatch begins its watch only once begin is closed, as a goroutine
// that the scheduler runs late would.
type lateWatch struct {
	*dropboxsigntest.Store
	begin chan struct{}
}

func (l *lateWatch) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	select {
	case <-l.begin:
	case <-ctx.Done():
		return
	}
	l.Store.Watch(ctx, poll, report)
}

// The store's news makes a replica read the store, never make a token
// request that its backoff forbids: a rate-limited account keeps its
// token, and Dropbox Sign hears nothing until the limit's reset.
func TestTheStoresNewsBreaksNoRateLimit(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	watched := &holdAfterLoad{Store: mem} // never armed: it counts the watch's reports
	clk := newClock()
	b := dropboxsign.NewAccounts(ctx, srv.Config(), watched, dropboxsign.WithClock(clk.Now), dropboxsign.WithWatchPoll(time.Hour))
	tok := srv.IssueToken()
	if err := mem.Save(ctx, "pia", nil, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := b.TokenSource("pia").TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	// Into the refresh window; the refresh meets a rate limit for an hour.
	srv.InjectFault(dropboxsigntest.RateLimited(time.Now().Add(time.Hour)))
	clk.Advance(time.Until(tok.Expiry) - 2*time.Minute)
	if _, err := b.TokenSource("pia").TokenContext(ctx); err != nil {
		t.Fatalf("in the window: %v", err)
	}
	until(t, ctx, "the rate-limited refresh", func() bool { return srv.Stats().Faults == 1 })
	before, reports, loads := srv.Stats().TokenRequests, watched.count(), mem.Stats().Loads
	// The account written anew (the same token: news, nothing new): the
	// store reports it, and b's held account reads the store again.
	if err := mem.Replace(ctx, "pia", tok); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "replica b hears of it", func() bool { return watched.count() > reports })
	for range 20 {
		got, err := b.TokenSource("pia").TokenContext(ctx)
		if err != nil || got.AccessToken != tok.AccessToken {
			t.Fatalf("after the store's news: %v, %v; want the token still", got, err)
		}
	}
	if n := srv.Stats().TokenRequests - before; n != 0 {
		t.Fatalf("%d token requests during the rate limit's backoff", n)
	}
	if mem.Stats().Loads == loads {
		t.Fatal("the news made no read of the store")
	}
}
