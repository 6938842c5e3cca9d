package dropboxsign_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// These tests hold replicas to the rule that a refusal is never recorded
// while another replica may hold the grant's successor: a replica that
// refreshed, but could not store the new token, has spent the stored
// refresh token; another replica must neither present it (a stale refresh
// token) nor take the refusal that would follow for the account's.

// replicaPair is two replicas of one app on one store: a's own store calls
// go through a hook (its network to the store may fail), b's do not. Each
// is a process of its own (AsAnotherProcess): they share no grant.
type replicaPair struct {
	srv  *dropboxsigntest.Server
	mem  *dropboxsigntest.Store
	here *hookedStore
	clk  *clock
	runs runs
	a, b *dropboxsign.Accounts
}

func newReplicaPair(t *testing.T) *replicaPair {
	p := &replicaPair{srv: newServer(t), mem: dropboxsigntest.NewStore(), clk: newClock(), runs: newRuns()}
	p.here = &hookedStore{Store: p.mem}
	ctx := testContext(t)
	conf := p.srv.Config()
	p.a = dropboxsign.NewAccounts(ctx, conf, p.here, dropboxsign.WithClock(p.clk.Now), p.runs.option(), dropboxsign.AsAnotherProcess())
	p.b = dropboxsign.NewAccounts(ctx, conf, p.mem, dropboxsign.WithClock(p.clk.Now), dropboxsign.AsAnotherProcess())
	return p
}

// refreshWithFailedSave makes replica a refresh the account's due token
// and fail to store the new one: its store fails from the moment the
// token request is under way. It returns the token a holds.
func (p *replicaPair) refreshWithFailedSave(t *testing.T, ctx context.Context, account string) *oauth2.Token {
	t.Helper()
	before := p.srv.Stats().TokenRequests
	release := p.srv.HoldTokenResponses()
	type result struct {
		tok *oauth2.Token
		err error
	}
	done := make(chan result, 1)
	go func() {
		tok, err := p.a.TokenSource(account).TokenContext(ctx)
		done <- result{tok, err}
	}()
	if err := p.srv.WaitTokenRequests(ctx, before+1); err != nil {
		t.Fatal(err)
	}
	p.here.set(func(string, *oauth2.Token, *oauth2.Token) error { return errStoreDown })
	release()
	r := <-done
	p.runs.wait(t) // the refresh's run has ended
	var saveErr *dropboxsign.SaveError
	if r.tok == nil || !errors.As(r.err, &saveErr) {
		t.Fatalf("replica a: %v, %v; want the new token and a SaveError", r.tok, r.err)
	}
	return r.tok
}

func TestAFailedSaveIsNotTakenForARefusalByAnotherReplica(t *testing.T) {
	p := newReplicaPair(t)
	ctx := testContext(t)
	old := p.srv.IssueToken()
	if err := p.mem.Save(ctx, "ivy", nil, expired(old)); err != nil {
		t.Fatal(err)
	}
	held := p.refreshWithFailedSave(t, ctx, "ivy")

	// Replica b needs a token too: the store still holds the spent one.
	_, err := p.b.TokenSource("ivy").TokenContext(ctx)
	var refusal *dropboxsign.RefusedError
	if err == nil || errors.As(err, &refusal) || dropboxsign.Classify(err) != dropboxsign.Temporary {
		t.Fatalf("replica b: %v (class %v); want a temporary error, not a refusal", err, dropboxsign.Classify(err))
	}
	if n := p.srv.Stats().StaleRefreshTokens; n != 0 {
		t.Errorf("replica b presented the spent refresh token (%d stale)", n)
	}
	if _, err := p.mem.Load(ctx, "ivy"); errors.As(err, &refusal) {
		t.Fatalf("the store was marked refused while replica a holds the successor")
	}

	// a's store is back: its save is retried after the backoff, and b
	// adopts the token at its next read.
	p.here.set(nil)
	p.clk.Advance(2 * time.Minute / 3) // past a's first backoff, within the grace
	if _, err := p.a.TokenSource("ivy").TokenContext(ctx); err != nil {
		var saveErr *dropboxsign.SaveError
		if !errors.As(err, &saveErr) {
			t.Fatal(err)
		}
	}
	waitStored(t, ctx, p.mem, "ivy", held)
	got, err := p.b.TokenSource("ivy").TokenContext(ctx)
	if err != nil || got.AccessToken != held.AccessToken {
		t.Fatalf("replica b after the save: %v, %v; want a's token", got, err)
	}
	if acct, err := accountOf(p.b.Client("ivy"), p.srv.AccountURL()); err != nil || acct != "account-1" {
		t.Errorf("replica b acts for %q, %v", acct, err)
	}
	if s := p.srv.Stats(); s.StaleRefreshTokens != 0 || s.Refreshes != 1 {
		t.Errorf("%d refreshes, %d stale refresh tokens; want 1 and 0", s.Refreshes, s.StaleRefreshTokens)
	}
}

// Past the grace, the replica that held the successor is presumed gone: a
// refusal is then the account's (and a replica that did survive with the
// successor overwrites the mark when its save succeeds).
func TestAfterTheGraceARefusalIsTheAccounts(t *testing.T) {
	p := newReplicaPair(t)
	ctx := testContext(t)
	old := p.srv.IssueToken()
	if err := p.mem.Save(ctx, "jo", nil, expired(old)); err != nil {
		t.Fatal(err)
	}
	held := p.refreshWithFailedSave(t, ctx, "jo")
	// b first sees the mark, and waits out the grace from then, by its
	// own clock.
	if _, err := p.b.TokenSource("jo").TokenContext(ctx); dropboxsign.Classify(err) != dropboxsign.Temporary {
		t.Fatalf("replica b within the grace: %v; want a temporary error", err)
	}
	p.clk.Advance(dropboxsign.SuccessorGrace + time.Second)
	_, err := p.b.TokenSource("jo").TokenContext(ctx)
	var refusal *dropboxsign.RefusedError
	if !errors.As(err, &refusal) {
		t.Fatalf("replica b past the grace: %v; want a refusal", err)
	}
	if _, err := p.mem.Load(ctx, "jo"); !errors.As(err, &refusal) {
		t.Fatalf("the store is not marked: %v", err)
	}
	// Replica a was not gone after all: its save replaces the mark. (Its
	// background retry may have met the store down meanwhile and be set
	// for later: let any backoff pass.)
	p.here.set(nil)
	p.clk.Advance(6 * time.Minute)
	if _, err := p.a.TokenSource("jo").TokenContext(ctx); err != nil {
		var saveErr *dropboxsign.SaveError
		if !errors.As(err, &saveErr) {
			t.Fatal(err)
		}
	}
	waitStored(t, ctx, p.mem, "jo", held)
}

// waitStored waits, until ctx ends, for store to hold want under key: a
// save retried in the background lands when it lands.
func waitStored(t *testing.T, ctx context.Context, store dropboxsign.Store, key string, want *oauth2.Token) {
	t.Helper()
	for {
		stored, err := store.Load(ctx, key)
		if err == nil && stored.AccessToken == want.AccessToken {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the store holds %v, %v; want the token %s…", stored, err, want.AccessToken[:6])
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// A mark left by a replica killed before its token request reached
// Dropbox Sign: once the grace has passed, the refresh token, unspent,
// still works, and nothing is refused.
func TestAMarkLeftBehindDelaysOnlyByTheGrace(t *testing.T) {
	p := newReplicaPair(t)
	ctx := testContext(t)
	old := p.srv.IssueToken()
	if err := p.mem.Save(ctx, "kim", nil, dropboxsign.WithSpendMark(expired(old), p.clk.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := p.b.TokenSource("kim").TokenContext(ctx); err == nil || dropboxsign.Classify(err) != dropboxsign.Temporary {
		t.Fatalf("within the grace: %v; want a temporary error", err)
	}
	if n := p.srv.Stats().TokenRequests; n != 0 {
		t.Fatalf("%d token requests within the grace", n)
	}
	p.clk.Advance(dropboxsign.SuccessorGrace)
	if acct, err := accountOf(p.b.Client("kim"), p.srv.AccountURL()); err != nil || acct != "account-1" {
		t.Fatalf("past the grace: %q, %v", acct, err)
	}
	stored, err := p.mem.Load(ctx, "kim")
	if err != nil || stored.ExpiresIn < 0 {
		t.Errorf("the store holds %+v, %v; want the new token, unmarked", stored, err)
	}
}

// The mark never reaches callers: a token read from the store while a
// replica spends its refresh token has its own ExpiresIn.
func TestTheSpendMarkStaysInTheStore(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	tok := srv.IssueToken()
	if err := fs.Save(ctx, "lee", nil, dropboxsign.WithSpendMark(tok, time.Now())); err != nil {
		t.Fatal(err)
	}
	got, err := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(fs, "lee")).TokenContext(ctx)
	if err != nil || got.ExpiresIn != tok.ExpiresIn {
		t.Fatalf("%+v, %v; want ExpiresIn %d", got, err, tok.ExpiresIn)
	}
}
