package dropboxsign_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// These tests hold refusals to what callers are told: never Reauthorize for
// a grant that may still be alive elsewhere, and never a refused refresh
// token presented again because its refusal could not be recorded.

// The store lost its data and this replica's token was spent by another:
// its refusal is Temporary, and stays so while the up-to-date replica may
// still store its token (the grace), not only for the first second.
func TestALostDataRefusalStaysTemporaryForTheGrace(t *testing.T) {
	srv, _, clk, _, b := lostDataBehind(t)
	ctx := testContext(t)
	for elapsed := time.Duration(0); elapsed < 100*time.Second; elapsed += 10 * time.Second {
		if _, err := b.TokenContext(ctx); dropboxsign.Classify(err) != dropboxsign.Temporary {
			t.Fatalf("%v after the refusal: %v (%v); want temporary", elapsed, err, dropboxsign.Classify(err))
		}
		clk.Advance(10 * time.Second)
	}
	if n := srv.Stats().StaleRefreshTokens; n != 1 {
		t.Errorf("%d stale refresh tokens; want the one refusal, never presented again", n)
	}
}

// A store whose writes fail while reads and the lock work (a row locked by
// an operator's open transaction): a revoked grant's refusal cannot be
// recorded; the refused refresh token is not presented again meanwhile,
// and callers are told to try again, not to reconnect, until it is.
func TestARefusalThatCannotBeRecordedIsNotPresentedAgain(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	var locked atomic.Bool
	store := &writeFailingStore{Store: mem, fail: locked.Load}
	clk := newClock()
	tok := srv.IssueToken()
	mem.Save(ctx, "acct", nil, expired(tok))
	srv.Revoke(tok)
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.WithClock(clk.Now))
	// The spend mark goes through; the refusal's record does not.
	var marked atomic.Bool
	store.fail = func() bool { return marked.Swap(true) && locked.Load() }
	locked.Store(true)
	for i := range 5 {
		_, err := a.TokenSource("acct").TokenContext(ctx)
		if c := dropboxsign.Classify(err); c != dropboxsign.Temporary {
			t.Fatalf("call %d: %v (%v); want temporary while the refusal is not recorded", i, err, c)
		}
		clk.Advance(2 * time.Second)
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("%d token requests; the refused refresh token was presented again", n)
	}
	locked.Store(false) // recorded at the next attempt, without a request
	clk.Advance(time.Minute)
	_, err := a.TokenSource("acct").TokenContext(ctx)
	var refusal *dropboxsign.RefusedError
	if !errors.As(err, &refusal) {
		t.Fatalf("once the store can be written: %v; want the refusal", err)
	}
	if _, err := mem.Load(ctx, "acct"); !errors.As(err, &refusal) {
		t.Errorf("the store is not marked: %v", err)
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("%d token requests in all; want 1", n)
	}
}

// A login's token goes to the WithOnRefresh function too, as every token
// the source obtains does.
func TestALoginsTokenReachesTheOnRefreshFunction(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	conf := srv.Config()
	var got atomic.Value
	a := dropboxsign.NewAccounts(ctx, conf, dropboxsigntest.NewStore(), dropboxsign.WithOnRefresh(func(_ context.Context, tok *oauth2.Token) error {
		got.Store(tok.AccessToken)
		return nil
	}))
	code := authorize(t, srv, conf, "state-1")
	tok, err := a.Login(ctx, "u1", code, "state-1")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Load().(string); v != tok.AccessToken {
		t.Errorf("WithOnRefresh was not given the login's token")
	}
}

// The test store refuses to save a nil token, with an error, not a panic.
func TestTheTestStoreRefusesANilToken(t *testing.T) {
	if err := dropboxsigntest.NewStore().Save(context.Background(), "k", nil, nil); err == nil {
		t.Error("Save of a nil token succeeded")
	}
}
