package dropboxsign_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// These tests hold the process to spending each grant once (grants.go),
// counted at the fake: token requests, refreshes, stale refresh tokens.

// Sixteen sources made from one stored, expired token, half of them inside
// x/oauth2's ReuseTokenSource, all asking at once: one token request, and
// every one of them gets a token that works.
func TestSourcesFromOneGrantShareOneRefresh(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	stored := expired(srv.IssueToken())
	release := srv.HoldTokenResponses()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var first atomic.Value
	for i := range 16 {
		wg.Go(func() {
			var ts oauth2.TokenSource = dropboxsign.NewTokenSource(ctx, srv.Config(), stored)
			if i%2 == 1 {
				ts = oauth2.ReuseTokenSource(nil, ts)
			}
			if acct, err := accountOf(oauth2.NewClient(ctx, ts), srv.AccountURL()); err != nil || acct != "account-1" {
				failed.Add(1)
				first.CompareAndSwap(nil, fmt.Sprint(acct, err))
			}
		})
	}
	if err := srv.WaitTokenRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	release()
	wg.Wait()
	s := srv.Stats()
	if failed.Load() != 0 || s.TokenRequests != 1 || s.StaleRefreshTokens != 0 {
		t.Errorf("%d of 16 failed (first: %v); %d token requests, %d stale; want 0, 1, 0", failed.Load(), first.Load(), s.TokenRequests, s.StaleRefreshTokens)
	}
}

// A source made after another has refreshed, from the same stale copy (the
// app has not stored the rotated token yet): it gets the token that
// refresh brought, without a request; and the chain is followed, so a copy
// two rotations behind gets the newest token.
func TestASourceFromAJustSpentGrantGetsItsToken(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	stale := expired(srv.IssueToken())
	first := dropboxsign.NewTokenSource(ctx, srv.Config(), stale)
	t1, err := first.TokenContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first.Invalidate(t1) // a 401: the first source refreshes again, spending t1's refresh token
	t2, err := first.TokenContext(ctx)
	if err != nil || t2.AccessToken == t1.AccessToken {
		t.Fatalf("second refresh: %v, %v", t2, err)
	}
	requests := srv.Stats().TokenRequests
	late := dropboxsign.NewTokenSource(ctx, srv.Config(), stale)
	got, err := late.TokenContext(ctx)
	if err != nil || got.AccessToken != t2.AccessToken {
		t.Fatalf("the late source: %v, %v; want the newest token", got, err)
	}
	if n := srv.Stats().TokenRequests - requests; n != 0 {
		t.Errorf("%d token requests for a grant spent moments ago", n)
	}
	if n := srv.Stats().StaleRefreshTokens; n != 0 {
		t.Errorf("%d stale refresh tokens", n)
	}
}

// A failure is shared by the sources whose request it was, but not
// remembered: the next attempt makes a request of its own.
func TestAFailedRefreshIsSharedNotRemembered(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	stored := expired(srv.IssueToken())
	once := dropboxsigntest.BadGateway()
	once.Count = 1
	srv.InjectFault(once)
	if _, err := dropboxsign.NewTokenSource(ctx, srv.Config(), stored).TokenContext(ctx); err == nil {
		t.Fatal("want the 502")
	}
	if _, err := dropboxsign.NewTokenSource(ctx, srv.Config(), stored).TokenContext(ctx); err != nil {
		t.Fatalf("after the 502, a new source: %v", err)
	}
	if s := srv.Stats(); s.TokenRequests != 2 || s.Refreshes != 1 {
		t.Errorf("%d token requests, %d refreshes; want 2 and 1", s.TokenRequests, s.Refreshes)
	}
}

// A callback submitted twice (a double click, a browser's retry) exchanges
// the code once, and both calls get the token: through Exchange and
// through Accounts.Login.
func TestACodeSubmittedTwiceIsExchangedOnce(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	conf := srv.Config()
	for _, via := range []string{"Exchange", "Login"} {
		t.Run(via, func(t *testing.T) {
			code := authorize(t, srv, conf, "state-"+via)
			before := srv.Stats()
			a := dropboxsign.NewAccounts(ctx, conf, dropboxsigntest.NewStore())
			release := srv.HoldTokenResponses()
			toks := make([]*oauth2.Token, 2)
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i := range 2 {
				wg.Go(func() {
					if via == "Exchange" {
						toks[i], errs[i] = dropboxsign.Exchange(ctx, conf, code, "state-"+via)
					} else {
						toks[i], errs[i] = a.Login(ctx, "user", code, "state-"+via)
					}
				})
			}
			srv.WaitTokenRequests(ctx, before.TokenRequests+1)
			release()
			wg.Wait()
			if errs[0] != nil || errs[1] != nil || toks[0].AccessToken != toks[1].AccessToken {
				t.Fatalf("%v, %v; want one token for both", errs[0], errs[1])
			}
			// And a third submission, after the first two returned.
			var third *oauth2.Token
			var err error
			if via == "Exchange" {
				third, err = dropboxsign.Exchange(ctx, conf, code, "state-"+via)
			} else {
				third, err = a.Login(ctx, "user", code, "state-"+via)
			}
			if err != nil || third.AccessToken != toks[0].AccessToken {
				t.Errorf("a third submission: %v, %v", third, err)
			}
			if n := srv.Stats().TokenRequests - before.TokenRequests; n != 1 {
				t.Errorf("%d token requests for one code; want 1", n)
			}
			third.AccessToken = "changed" // the caller's own copy
			if toks[0].AccessToken == "changed" {
				t.Error("callers share one *oauth2.Token")
			}
		})
	}
}

// The same code with another state is not the same callback: it is not
// given the token (Dropbox Sign judges the state).
func TestACodeWithAnotherStateIsNotShared(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	conf := srv.Config()
	code := authorize(t, srv, conf, "state-a")
	if _, err := dropboxsign.Exchange(ctx, conf, code, "state-a"); err != nil {
		t.Fatal(err)
	}
	if tok, err := dropboxsign.Exchange(ctx, conf, code, "state-b"); err == nil {
		t.Errorf("another state got %v", tok)
	}
}

// With a store, the store stays the authority and the memory composes: two
// Accounts of one process on one store, one of them reading a stale token
// (as after a lapsed lease), present the grant once; the second gets the
// first's token, which the store holds.
func TestTheGrantMemoryComposesWithAStore(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	old := expired(srv.IssueToken())
	fs.Save(ctx, "dana", nil, old)
	a := dropboxsign.NewAccounts(ctx, srv.Config(), fs)
	t1, err := a.TokenSource("dana").TokenContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// b reads the stale token twice (before and under the lock), as if its
	// read had raced a's refresh: it presents the spent refresh token.
	b := dropboxsign.NewAccounts(ctx, srv.Config(), &staleOnce{Store: fs, stale: old})
	got, err := b.TokenSource("dana").TokenContext(ctx)
	if err != nil || got.AccessToken != t1.AccessToken {
		t.Fatalf("b: %v, %v; want a's token", got, err)
	}
	if stored, err := fs.Load(ctx, "dana"); err != nil || stored.AccessToken != t1.AccessToken {
		t.Errorf("the store holds %v, %v", stored, err)
	}
	if s := srv.Stats(); s.Refreshes != 1 || s.StaleRefreshTokens != 0 {
		t.Errorf("%d refreshes, %d stale; want 1, 0", s.Refreshes, s.StaleRefreshTokens)
	}
}

// The memory is bounded: at most 4096 grants, each kept a minute; its size
// measured with tokens of Dropbox Sign's size.
func TestGrantMemoryIsBounded(t *testing.T) {
	g := dropboxsign.NewGrants()
	now := time.Now()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 10000
	for i := range n {
		g.Remember(fmt.Sprintf("rt_%032x", i), &oauth2.Token{
			AccessToken: fmt.Sprintf("at_%032x", i), RefreshToken: fmt.Sprintf("rt_%032x", i+n), TokenType: "Bearer",
			Expiry: now.Add(time.Hour), ExpiresIn: 3600}, now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := g.Len()
	if held > 4096 {
		t.Errorf("%d grants remembered; want at most 4096", held)
	}
	t.Logf("%d grants remembered of %d; about %d bytes each", held, n, int(after.HeapAlloc-before.HeapAlloc)/max(held, 1))
	runtime.KeepAlive(g)
	g.Remember("one-more", &oauth2.Token{AccessToken: "x"}, now.Add(time.Minute))
	if n := g.Len(); n != 1 {
		t.Errorf("%d grants remembered a minute later; want 1", n)
	}
}

// expires_in below zero, however little, is an error, not "no expiry".
func TestNegativeFractionalExpiresInIsAnError(t *testing.T) {
	for _, v := range []string{`-0.5`, `"-0.5"`, `-0.000001`, `-1e-300`} {
		srv := newHostileTokenEndpoint(t, `{"access_token":"at-neg-1","token_type":"bearer","expires_in":`+v+`}`)
		_, err := dropboxsign.Refresh(context.Background(), &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv}}, "rt-1")
		if err == nil {
			t.Errorf("expires_in %s: no error", v)
		}
	}
}

func newHostileTokenEndpoint(t *testing.T, body string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s.URL + "/oauth/token"
}

// Exchange with a nil context works, as it did before exchanges were
// shared (a nil context is a caller's mistake, never a panic).
func TestExchangeWithANilContext(t *testing.T) {
	srv := newServer(t)
	conf := srv.Config()
	code := authorize(t, srv, conf, "state-nil")
	//lint:ignore SA1012 a nil context must not panic
	if tok, err := dropboxsign.Exchange(nil, conf, code, "state-nil"); err != nil || tok == nil {
		t.Errorf("%v, %v", tok, err)
	}
}
