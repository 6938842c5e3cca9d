package dropboxsign_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// These tests hold a new login to its promise: the user's new grant is
// what the store keeps and what this process acts with from then on, even
// when it lands in the middle of a refresh of the grant it replaces, and
// even when the store fails when it lands.

// accountOf asks the fake's API which Dropbox Sign account c acts for.
func accountOf(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status)
	}
	var body struct {
		Account struct {
			ID string `json:"account_id"`
		} `json:"account"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	return body.Account.ID, nil
}

// hookedStore calls before, if set, ahead of every Save and Load: a test's
// way to hold a call up, or make it fail, at a chosen moment.
type hookedStore struct {
	dropboxsign.Store
	mu     sync.Mutex
	before func(op string, prev, t *oauth2.Token) error
}

func (h *hookedStore) hook(op string, prev, t *oauth2.Token) error {
	h.mu.Lock()
	fn := h.before
	h.mu.Unlock()
	if fn == nil {
		return nil
	}
	return fn(op, prev, t)
}

func (h *hookedStore) set(fn func(op string, prev, t *oauth2.Token) error) {
	h.mu.Lock()
	h.before = fn
	h.mu.Unlock()
}

func (h *hookedStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	if err := h.hook("load", nil, nil); err != nil {
		return nil, err
	}
	return h.Store.Load(ctx, key)
}

func (h *hookedStore) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if err := h.hook("save", prev, t); err != nil {
		return err
	}
	return h.Store.Save(ctx, key, prev, t)
}

func (h *hookedStore) Replace(ctx context.Context, key string, t *oauth2.Token) error {
	if err := h.hook("replace", nil, t); err != nil {
		return err
	}
	return h.Store.Replace(ctx, key, t)
}

// A login that lands while a refresh of the account's old grant is under
// way (its new token on its way to the store) wins: the store keeps the
// login's token, and this process acts as the user's new Dropbox Sign
// account at once, not as the old one for a token lifetime.
func TestLoginDuringItsAccountsRefreshIsNotUndone(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	store := &hookedStore{Store: mem}
	conf := srv.Config()
	a := dropboxsign.NewAccounts(ctx, conf, store)

	old := srv.IssueToken() // account-1: the user's first connection
	if err := mem.Save(ctx, "erin", nil, expired(old)); err != nil {
		t.Fatal(err)
	}
	// Hold up the save of the refreshed old grant until the login is done.
	refreshSaving, loginDone := make(chan struct{}), make(chan struct{})
	var once sync.Once
	store.set(func(op string, prev, tok *oauth2.Token) error {
		if op == "save" && prev != nil && prev.AccessToken == old.AccessToken &&
			tok.RefreshToken != old.RefreshToken && tok.ExpiresIn > 0 {
			held := false
			once.Do(func() { held = true })
			if held {
				close(refreshSaving)
				<-loginDone
			}
		}
		return nil
	})
	callDone := make(chan error, 1)
	go func() {
		_, err := a.TokenSource("erin").TokenContext(ctx)
		callDone <- err
	}()
	select {
	case <-refreshSaving:
	case <-ctx.Done():
		t.Fatal("the refresh never reached its save")
	}
	// The user connects again, with another Dropbox Sign account.
	code := authorize(t, srv, conf, "state-erin")
	fresh, err := a.Login(ctx, "erin", code, "state-erin")
	if err != nil {
		t.Fatal(err)
	}
	close(loginDone)
	if err := <-callDone; err != nil {
		t.Fatalf("the call that refreshed: %v", err)
	}
	freshAccount, err := accountOf(&http.Client{Transport: &oauth2.Transport{Source: oauth2.StaticTokenSource(fresh)}}, srv.AccountURL())
	if err != nil || freshAccount == "account-1" {
		t.Fatalf("the login's token acts for %q, %v: want another account", freshAccount, err)
	}

	stored, err := mem.Load(ctx, "erin")
	if err != nil || stored.AccessToken != fresh.AccessToken {
		t.Errorf("the store holds %v, %v; want the login's token", stored, err)
	}
	got, err := a.TokenSource("erin").TokenContext(ctx)
	if err != nil || got.AccessToken != fresh.AccessToken {
		t.Errorf("the source holds %v, %v; want the login's token", got, err)
	}
	if acct, err := accountOf(a.Client("erin"), srv.AccountURL()); err != nil || acct != freshAccount {
		t.Errorf("after the login, calls act for %q (%v); want %q", acct, err, freshAccount)
	}
	if n := srv.Stats().StaleRefreshTokens; n != 0 {
		t.Errorf("%d stale refresh tokens presented", n)
	}
}

// A login whose save fails (the store is down) keeps its token, and its
// retry replaces whatever the store holds by then (another replica went on
// refreshing the old grant meanwhile): the new grant reaches the store, the
// save is reported only once it has, and a 401 does not send this process
// back to the old grant.
func TestLoginWhoseSaveFailsReachesTheStoreLater(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	conf := srv.Config()
	clk := newClock()
	here := &hookedStore{Store: mem}
	r := newRuns()
	rec := newRecorder()
	a := dropboxsign.NewAccounts(ctx, conf, here, dropboxsign.WithClock(clk.Now), r.option(), dropboxsign.WithObserver(rec))

	old := srv.IssueToken()
	if err := mem.Save(ctx, "finn", nil, old); err != nil {
		t.Fatal(err)
	}
	if acct, err := accountOf(a.Client("finn"), srv.AccountURL()); err != nil || acct != "account-1" {
		t.Fatalf("before the login: %q, %v", acct, err)
	}

	here.set(func(string, *oauth2.Token, *oauth2.Token) error { return errStoreDown })
	code := authorize(t, srv, conf, "state-finn")
	fresh, err := a.Login(ctx, "finn", code, "state-finn")
	var saveErr *dropboxsign.SaveError
	if fresh == nil || !errors.As(err, &saveErr) {
		t.Fatalf("Login with the store down: %v, %v; want the token and a SaveError", fresh, err)
	}
	// Meanwhile the other replica refreshes the old grant and stores it.
	later := func() time.Time { return time.Now().Add(2 * time.Hour) } // its clock says the token is due
	dropboxsign.NewTokenSource(ctx, conf, nil, dropboxsign.WithStore(mem, "finn"), dropboxsign.WithClock(later)).TokenContext(ctx)
	if s, _ := mem.Load(ctx, "finn"); s.AccessToken == old.AccessToken {
		t.Fatal("the other replica did not refresh the old grant")
	}

	// The store is back; this replica's next call after the backoff saves.
	here.set(nil)
	clk.Advance(2 * time.Minute)
	if _, err := a.TokenSource("finn").TokenContext(ctx); err != nil && !errors.As(err, &saveErr) {
		t.Fatal(err)
	}
	r.wait(t)
	rec.waitFor(t, dropboxsign.EventSaved, 1) // reported as saved: then it must be
	stored, err := mem.Load(ctx, "finn")
	if err != nil || stored.AccessToken != fresh.AccessToken {
		t.Fatalf("after the retry the store holds %v, %v; want the login's token", stored, err)
	}
	if _, err := a.TokenSource("finn").TokenContext(ctx); err != nil {
		t.Errorf("after the retry: %v", err)
	}
	// A 401 on the login's token: the refresh starts from the login's
	// grant, not the old one.
	tok, _ := a.TokenSource("finn").TokenContext(ctx)
	a.TokenSource("finn").Invalidate(tok)
	if acct, err := accountOf(a.Client("finn"), srv.AccountURL()); err != nil || acct == "account-1" {
		t.Errorf("after a 401: acts for %q, %v; want the login's account", acct, err)
	}
	// And another replica's next read of the store (a new process, here)
	// acts for the login's account.
	fresh2 := dropboxsign.NewAccounts(ctx, conf, mem)
	if acct, err := accountOf(fresh2.Client("finn"), srv.AccountURL()); err != nil || acct == "account-1" {
		t.Errorf("another replica acts for %q, %v; want the login's account", acct, err)
	}
}

// A login that lands while the store is down, before the first load of the
// account in this process, is not lost when the old grant's stored token
// is read later: the login's token is not taken for one "the store lost".
func TestLoginWhoseSaveFailsIsNotUndoneByALaterRead(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	conf := srv.Config()
	clk := newClock()
	here := &hookedStore{Store: mem}
	r := newRuns()
	a := dropboxsign.NewAccounts(ctx, conf, here, dropboxsign.WithClock(clk.Now), r.option())
	old := srv.IssueToken()
	if err := mem.Save(ctx, "gus", nil, old); err != nil {
		t.Fatal(err)
	}
	here.set(func(string, *oauth2.Token, *oauth2.Token) error { return errStoreDown })
	code := authorize(t, srv, conf, "state-gus")
	fresh, err := a.Login(ctx, "gus", code, "state-gus")
	if fresh == nil || err == nil {
		t.Fatalf("Login with the store down: %v, %v", fresh, err)
	}
	here.set(nil)
	// The login's token nears expiry before the save is retried: the run
	// that comes stores it, then refreshes it: never adopts the old grant.
	clk.Advance(time.Hour)
	for i := 0; i < 3; i++ {
		acct, err := accountOf(a.Client("gus"), srv.AccountURL())
		if err != nil {
			t.Fatal(err)
		}
		if acct == "account-1" {
			t.Fatalf("call %d acts for the old grant's account", i)
		}
	}
	stored, err := mem.Load(ctx, "gus")
	if err != nil || stored.AccessToken == old.AccessToken {
		t.Fatalf("the store holds the old grant: %v", err)
	}
	if n := srv.Stats().StaleRefreshTokens; n != 0 {
		t.Errorf("%d stale refresh tokens", n)
	}
}

// Two logins of one account at once in one process: the token the store
// keeps is the one the process acts with.
func TestConcurrentLoginsOfOneAccountAgree(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	conf := srv.Config()
	a := dropboxsign.NewAccounts(ctx, conf, mem)
	for round := range 20 {
		var wg sync.WaitGroup
		var failed atomic.Int64
		for i := range 2 {
			state := fmt.Sprintf("s-%d-%d", round, i)
			code := authorize(t, srv, conf, state)
			wg.Go(func() {
				if _, err := a.Login(ctx, "hana", code, state); err != nil {
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		if failed.Load() != 0 {
			t.Fatalf("round %d: a login failed", round)
		}
		stored, err := mem.Load(ctx, "hana")
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.TokenSource("hana").TokenContext(ctx)
		if err != nil || got.AccessToken != stored.AccessToken {
			t.Fatalf("round %d: the process acts with %v (%v), the store holds another", round, got, err)
		}
	}
}

// The retry of a failed login's save and a later login of the same account
// in the same process are one at a time too: the store ends with the later
// login's token, which the process acts with.
func TestALoginRetryNeverLandsOverALaterLogin(t *testing.T) {
	p := newReplicaPair(t)
	ctx := testContext(t)
	conf := p.srv.Config()
	old := p.srv.IssueToken()
	if err := p.mem.Save(ctx, "nia", nil, old); err != nil {
		t.Fatal(err)
	}
	p.here.set(func(string, *oauth2.Token, *oauth2.Token) error { return errStoreDown })
	code1 := authorize(t, p.srv, conf, "s1")
	first, err := p.a.Login(ctx, "nia", code1, "s1")
	if first == nil || err == nil {
		t.Fatalf("first login: %v, %v", first, err)
	}
	// The store is back; hold the retry's first write of the first login's
	// token until the second login is installed.
	retrying, secondDone := make(chan struct{}), make(chan struct{})
	var once sync.Once
	p.here.set(func(op string, prev, tok *oauth2.Token) error {
		if op == "replace" && tok != nil && tok.AccessToken == first.AccessToken {
			held := false
			once.Do(func() { held = true })
			if held {
				close(retrying)
				<-secondDone
			}
		}
		return nil
	})
	p.clk.Advance(2 * time.Minute)
	go p.a.TokenSource("nia").TokenContext(ctx)
	select {
	case <-retrying:
	case <-ctx.Done():
		t.Fatal("no retry")
	}
	code2 := authorize(t, p.srv, conf, "s2")
	type result struct {
		tok *oauth2.Token
		err error
	}
	logged := make(chan result, 1)
	go func() { // waits for the retry under way to end
		tok, err := p.a.Login(ctx, "nia", code2, "s2")
		logged <- result{tok, err}
	}()
	if err := p.srv.WaitTokenRequests(ctx, 2); err != nil { // the second exchange is made
		t.Fatal(err)
	}
	close(secondDone)
	r := <-logged
	second, err := r.tok, r.err
	if err != nil {
		t.Fatal(err)
	}

	stored, err := p.mem.Load(ctx, "nia")
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.a.TokenSource("nia").TokenContext(ctx)
	if stored.AccessToken != second.AccessToken || err != nil || got.AccessToken != second.AccessToken {
		t.Errorf("the store holds the first login's token: %v; the process holds the second's: %v (%v)",
			stored.AccessToken == first.AccessToken, got != nil && got.AccessToken == second.AccessToken, err)
	}
}

// The hot path stays allocation-free after a login, after a login whose
// save failed and was retried, and after a wait on a mark.
func TestHotPathAfterLoginsAndMarks(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	here := &hookedStore{Store: mem}
	clk := newClock()
	r := newRuns()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), here, dropboxsign.WithClock(clk.Now), r.option())
	bg := context.Background()
	check := func(what, key string) {
		t.Helper()
		ts := a.TokenSource(key)
		if _, err := ts.TokenContext(bg); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n := testing.AllocsPerRun(200, func() { ts.TokenContext(bg) }); n != 0 {
			t.Errorf("%s: %v allocations per call", what, n)
		}
	}
	code := authorize(t, srv, srv.Config(), "s1")
	if _, err := a.Login(ctx, "u1", code, "s1"); err != nil {
		t.Fatal(err)
	}
	check("after a login", "u1")

	here.set(func(string, *oauth2.Token, *oauth2.Token) error { return errStoreDown })
	code = authorize(t, srv, srv.Config(), "s2")
	if _, err := a.Login(ctx, "u2", code, "s2"); err == nil {
		t.Fatal("want a SaveError")
	}
	here.set(nil)
	clk.Advance(3 * time.Second)
	a.TokenSource("u2").TokenContext(bg)
	r.wait(t)
	check("after a login whose save was retried", "u2")

	old := srv.IssueToken()
	mem.Save(ctx, "u3", nil, dropboxsign.WithSpendMark(expired(old), clk.Now()))
	a.TokenSource("u3").TokenContext(bg)
	clk.Advance(dropboxsign.SuccessorGrace + time.Second)
	check("after a mark's grace", "u3")
}
