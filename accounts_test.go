package dropboxsign_test

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/internal/storetest"
	"golang.org/x/oauth2"
)

// getStatus makes one API call through c and returns its status, or the
// error.
func getStatus(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// N goroutines asking at once for one account: one source, one token
// request, the store read once before the lock and once under it, and
// written twice (the mark that the refresh token is being spent, then the
// new token); for a valid stored token, one read and nothing else.
func TestAccountsMakeOneSourcePerAccountHoweverManyAsk(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	store := &storetest.Counting{Store: fs}
	fs.Save(ctx, "expired", nil, expired(srv.IssueToken()))
	fs.Save(ctx, "valid", nil, srv.IssueToken())
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store)

	for _, tc := range []struct {
		key                           string
		loads, locks, saves, requests int64
	}{
		{"expired", 2, 1, 2, 1},
		{"valid", 1, 0, 0, 0},
	} {
		loads, locks, saves, requests := store.Loads(), store.Locks(), store.Saves(), int64(srv.Stats().TokenRequests)
		const n = 64
		sources := make([]*dropboxsign.TokenSource, n)
		statuses := make([]int, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				sources[i] = a.TokenSource(tc.key)
				statuses[i], _ = getStatus(a.Client(tc.key), srv.AccountURL())
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if sources[i] != sources[0] || statuses[i] != 200 {
				t.Fatalf("%s: caller %d got source %p and status %d; want one source, 200", tc.key, i, sources[i], statuses[i])
			}
		}
		got := [4]int64{store.Loads() - loads, store.Locks() - locks, store.Saves() - saves, int64(srv.Stats().TokenRequests) - requests}
		if want := [4]int64{tc.loads, tc.locks, tc.saves, tc.requests}; got != want {
			t.Errorf("%s: %d loads, %d locks, %d saves, %d token requests; want %v", tc.key, got[0], got[1], got[2], got[3], want)
		}
	}
	if n := srv.Stats().StaleRefreshTokens; n != 0 {
		t.Errorf("%d stale refresh tokens", n)
	}
}

// Ten times WithMaxAccounts accounts in use: at most the maximum are held,
// the least recently used go first, and one let go is read again from the
// store (one read) when used again.
func TestAccountsHoldAtMostTheMaximumAndReloadWhatTheyLetGo(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	store := &storetest.Counting{Store: fs}
	clk := newClock()
	const max, used = 50, 500
	for i := range used {
		fs.Save(ctx, fmt.Sprint("acct-", i), nil, srv.IssueToken())
	}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.WithMaxAccounts(max), dropboxsign.WithClock(clk.Now))
	for i := range used {
		clk.Advance(time.Second) // recency is kept to the second
		if _, err := a.TokenSource(fmt.Sprint("acct-", i)).TokenContext(ctx); err != nil {
			t.Fatal(err)
		}
		if h := a.Stats().Held; h > max {
			t.Fatalf("%d accounts held after %d used; want at most %d", h, i+1, max)
		}
	}
	if n := store.Loads(); n != used {
		t.Fatalf("%d store reads for %d accounts", n, used)
	}
	runtime.GC() // let go sources that nothing references are collected
	clk.Advance(time.Second)
	if _, err := a.TokenSource("acct-499").TokenContext(ctx); err != nil || store.Loads() != used {
		t.Errorf("the most recent account: %v, %d reads; want it still held", err, store.Loads()-used)
	}
	if _, err := a.TokenSource("acct-0").TokenContext(ctx); err != nil || store.Loads() != used+1 {
		t.Errorf("the least recent account: %v, %d reads; want it let go and read once", err, store.Loads()-used)
	}
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("%d token requests; valid stored tokens need none", n)
	}
}

// A client kept for long keeps working across its account being let go,
// and the account never has two sources in one process while anything
// holds one.
func TestAccountsClientOutlivesItsAccountsStay(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	for i := range 40 {
		fs.Save(ctx, fmt.Sprint("acct-", i), nil, srv.IssueToken())
	}
	clk := newClock()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), fs, dropboxsign.WithMaxAccounts(8), dropboxsign.WithClock(clk.Now))
	client := a.Client("acct-0")
	kept := a.TokenSource("acct-1")
	for i := range 40 {
		clk.Advance(time.Second)
		if status, err := getStatus(a.Client(fmt.Sprint("acct-", i)), srv.AccountURL()); status != 200 {
			t.Fatalf("acct-%d: %d %v", i, status, err)
		}
	}
	runtime.GC()
	if status, err := getStatus(client, srv.AccountURL()); status != 200 {
		t.Fatalf("the kept client after its account was let go: %d %v", status, err)
	}
	if a.TokenSource("acct-1") != kept {
		t.Error("a let-go account that something still held got a second source")
	}
}

// An account whose newest token is not stored yet is never let go: that
// token may hold the only refresh token Dropbox Sign still accepts.
func TestAccountsNeverLetGoAnUnsavedToken(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	flaky := &failingSaves{Store: fs}
	fs.Save(ctx, "unsaved", nil, expired(srv.IssueToken()))
	for i := range 20 {
		fs.Save(ctx, fmt.Sprint("acct-", i), nil, srv.IssueToken())
	}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), flaky, dropboxsign.WithMaxAccounts(4))
	flaky.failing.Store(true)
	tok, err := a.TokenSource("unsaved").TokenContext(ctx) // refreshed (rotated), not stored
	var saveErr *dropboxsign.SaveError
	if !errors.As(err, &saveErr) {
		t.Fatalf("%v, %v; want the new token and a SaveError", tok, err)
	}
	for i := range 20 { // crowd it out, if it could be
		a.TokenSource(fmt.Sprint("acct-", i)).TokenContext(ctx)
	}
	runtime.GC()
	flaky.failing.Store(false)
	// Expire it too: the next call must store it, then refresh from it.
	got, err := a.TokenSource("unsaved").TokenContext(ctx)
	if err != nil && !errors.As(err, &saveErr) {
		t.Fatal(err)
	}
	if got.AccessToken != tok.AccessToken {
		t.Errorf("after the crowd: a different token; the unsaved one was lost")
	}
	if n := srv.Stats().StaleRefreshTokens; n != 0 {
		t.Errorf("%d stale refresh tokens: the spent stored one was presented", n)
	}
}

type failingSaves struct {
	dropboxsign.Store
	failing atomic.Bool
}

func (f *failingSaves) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if f.failing.Load() && !spendMark(t) {
		return errors.New("database down")
	}
	return f.Store.Save(ctx, key, prev, t)
}

// A grant refused for good is an account state, fleet-wide: the replica
// that meets the refusal marks the store; every other replica learns it at
// its next store read (its next refresh, or when the API refuses its cached
// token) and from then on fails at once, all with zero token requests; the
// app can list the account; and a new login on any replica serves
// everywhere within a second.
func TestRefusalIsAnAccountStateAcrossReplicas(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	conf := srv.Config()
	clk := newClock()
	a1 := dropboxsign.NewAccounts(ctx, conf, fs, dropboxsign.WithClock(clk.Now))
	a2 := dropboxsign.NewAccounts(ctx, conf, fs, dropboxsign.WithClock(clk.Now))
	tok := srv.IssueToken()
	fs.Save(ctx, "carol", nil, expired(tok))
	srv.Revoke(tok) // carol disconnected the app

	for round, tc := range []struct{ sees, logsIn *dropboxsign.Accounts }{{a1, a2}, {a2, a1}} {
		requests := srv.Stats().TokenRequests
		// The first call meets the revocation: the API's 401 (a token still
		// in memory) or the refusal (a token due for refresh); then the
		// refusal, at once.
		status, err := getStatus(tc.sees.Client("carol"), srv.AccountURL())
		var refusal *dropboxsign.RefusedError
		if status != 401 && !errors.As(err, &refusal) {
			t.Fatalf("round %d: the first call: %d, %v", round, status, err)
		}
		_, err = tc.sees.TokenSource("carol").TokenContext(ctx)
		if !errors.As(err, &refusal) || refusal.Key != "carol" || dropboxsign.Classify(err) != dropboxsign.Reauthorize {
			t.Fatalf("round %d: %v; want a RefusedError for carol, classed Reauthorize", round, err)
		}
		if n := srv.Stats().TokenRequests - requests; n > 1 {
			t.Fatalf("round %d: %d token requests to learn of the refusal, want at most 1", round, n)
		}
		requests = srv.Stats().TokenRequests
		// The other replica learns of it at its next store read: at once if
		// its token is due, else when the API refuses its cached token.
		for _, a := range []*dropboxsign.Accounts{tc.logsIn, tc.sees} {
			status, err := getStatus(a.Client("carol"), srv.AccountURL())
			if status != 401 && !errors.As(err, &refusal) {
				t.Fatalf("round %d: %d, %v", round, status, err)
			}
			for range 3 {
				if _, err := a.Client("carol").Get(srv.AccountURL()); !errors.As(err, &refusal) {
					t.Fatalf("round %d: %v; want the refusal", round, err)
				}
			}
		}
		if n := srv.Stats().TokenRequests - requests; n != 0 {
			t.Fatalf("round %d: %d token requests once the store is marked, want 0", round, n)
		}
		var listed []string
		for r, err := range a2.Refused(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			listed = append(listed, r.Key)
		}
		if len(listed) != 1 || listed[0] != "carol" {
			t.Fatalf("round %d: Refused listed %v", round, listed)
		}

		// carol connects again, on one replica; the other serves her next
		// call once its second has passed.
		code := authorize(t, srv, conf, "state-carol")
		fresh, err := tc.logsIn.Login(ctx, "carol", code, "state-carol")
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
		for _, a := range []*dropboxsign.Accounts{tc.sees, tc.logsIn} {
			got, err := a.TokenSource("carol").TokenContext(ctx)
			if err != nil || got.AccessToken != fresh.AccessToken {
				t.Fatalf("round %d: after the login: %v, %v", round, got, err)
			}
		}
		for r := range a1.Refused(ctx) {
			t.Errorf("round %d: %s still listed as refused", round, r.Key)
		}
		srv.Revoke(fresh) // and she disconnects again, for the next round
		stored, _ := fs.Load(ctx, "carol")
		expiredCopy := *stored
		expiredCopy.Expiry = clk.Now().Add(-time.Minute)
		fs.Save(ctx, "carol", stored, &expiredCopy)
	}
}

// A refusal caused by another replica, which spent the refresh token and
// stored the new one meanwhile, is never taken for the account's.
func TestRefusalOfASpentTokenIsNotTheAccounts(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	tok := srv.IssueToken()
	fs.Save(ctx, "dana", nil, expired(tok))
	// Another replica refreshes first and stores the new token, but this
	// one holds the old token in memory and presents it (a lease lapsed).
	newer, err := dropboxsign.Refresh(ctx, srv.Config(), tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	behind := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(&staleOnce{Store: fs, stale: expired(tok)}, "dana"))
	if err := fs.Save(ctx, "dana", expired(tok), newer); err != nil {
		t.Fatal(err)
	}
	got, err := behind.TokenContext(ctx)
	if err != nil || got.AccessToken != newer.AccessToken {
		t.Fatalf("%v, %v; want the newer stored token", got, err)
	}
	if _, err := fs.Load(ctx, "dana"); err != nil {
		t.Errorf("the store was marked: %v", err)
	}
}

// staleOnce answers its first two Loads (before and under the lock) with a
// stale token, as a replica whose read raced a refresh elsewhere sees.
type staleOnce struct {
	dropboxsign.Store
	stale *oauth2.Token
	n     atomic.Int64
}

func (s *staleOnce) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	if s.n.Add(1) <= 2 {
		return s.stale, nil
	}
	return s.Store.Load(ctx, key)
}

// Shutdown waits for a refresh held up at the token endpoint and for its
// save; every call after it fails with ErrShutdown.
func TestShutdownWaitsForARefreshAndItsSave(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	old := expired(srv.IssueToken())
	fs.Save(ctx, "erin", nil, old)
	a := dropboxsign.NewAccounts(ctx, srv.Config(), fs)
	release := srv.HoldTokenResponses()
	defer release()
	call := make(chan error, 1)
	go func() { _, err := getStatus(a.Client("erin"), srv.AccountURL()); call <- err }()
	if err := srv.WaitTokenRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := a.Shutdown(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown while a refresh is held: %v; want it to wait until its context ends", err)
	}
	if _, err := a.TokenSource("frank").TokenContext(ctx); !errors.Is(err, dropboxsign.ErrShutdown) {
		t.Errorf("a new call during Shutdown: %v, want ErrShutdown", err)
	}
	release()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown once the refresh is released: %v", err)
	}
	if err := <-call; err != nil {
		t.Fatalf("the call that started the refresh: %v", err)
	}
	stored, err := fs.Load(ctx, "erin")
	if err != nil || stored.RefreshToken == old.RefreshToken {
		t.Fatalf("stored after Shutdown: %v, %v; want the rotated token", stored, err)
	}
	if _, err := dropboxsign.Refresh(ctx, srv.Config(), stored.RefreshToken); err != nil {
		t.Errorf("the stored refresh token does not work: %v", err)
	}
	for name, call := range map[string]func() error{
		"Client":        func() error { _, err := a.Client("erin").Get(srv.AccountURL()); return err },
		"TokenSource":   func() error { _, err := a.TokenSource("erin").TokenContext(ctx); return err },
		"Login":         func() error { _, err := a.Login(ctx, "erin", "code", "state"); return err },
		"the empty key": func() error { _, err := a.TokenSource("").TokenContext(ctx); return err },
	} {
		if err := call(); !errors.Is(err, dropboxsign.ErrShutdown) {
			t.Errorf("%s after Shutdown: %v, want ErrShutdown", name, err)
		}
	}
}

// Idle accounts cost memory only: no goroutine stays behind for any of
// them, refreshed or not. (For timers, which Go cannot count, see
// TestNoTimerOutlivesACall.)
func TestIdleAccountsKeepNoGoroutine(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	for i := range 200 {
		tok := srv.IssueToken()
		if i%4 == 0 {
			tok = expired(tok)
		}
		fs.Save(ctx, fmt.Sprint("acct-", i), nil, tok)
	}
	base := runtime.NumGoroutine()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), fs)
	for i := range 200 {
		if status, err := getStatus(a.Client(fmt.Sprint("acct-", i)), srv.AccountURL()); status != 200 {
			t.Fatal(status, err)
		}
	}
	srv.Client().CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+2 {
		t.Errorf("%d goroutines for 200 idle accounts, %d before", n, base)
	}
	if a.Stats().Held != 200 {
		t.Errorf("held %d", a.Stats().Held)
	}
}

// A nil store is a clear error at the first call, never a panic.
func TestAccountsWithoutAStoreSayWhatIsMissing(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	a := dropboxsign.NewAccounts(ctx, srv.Config(), nil)
	_, err1 := a.Client("x").Get(srv.AccountURL())
	_, err2 := a.Login(ctx, "x", "code", "state")
	for _, err := range []error{err1, err2} {
		if err == nil || dropboxsign.Classify(err) != dropboxsign.Misconfigured {
			t.Errorf("err = %v; want one classed Misconfigured", err)
		}
	}
	for _, err := range a.Refused(ctx) {
		if err == nil {
			t.Error("Refused without a store: no error")
		}
	}
}

// The empty key is no account: an empty user ID (a session that lost it)
// must not reach a token that every such request would share, even one
// stored under "". Nor may a key some store cannot hold (NUL, invalid
// UTF-8, too long) fail only at the store, after the code is spent.
// Nothing is read, written or spent for any of them.
func TestAccountsRefuseKeysNoAccountMayHave(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	inner := dropboxsigntest.NewStore()
	inner.Save(ctx, "", nil, srv.IssueToken())
	store := &storetest.Counting{Store: inner}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store)
	code := authorize(t, srv, srv.Config(), "state-1")
	for key, says := range map[string]string{
		"":       "empty account key",
		"a\x00b": "not valid UTF-8 without NUL",
		"\xff":   "not valid UTF-8 without NUL",
		strings.Repeat("k", dropboxsign.MaxAccountKeyLen+1): "account key of 1025 bytes: at most 1024",
	} {
		_, errLogin := a.Login(ctx, key, code, "state-1")
		_, errClient := a.Client(key).Get(srv.AccountURL())
		_, errToken := a.TokenSource(key).TokenContext(ctx)
		for name, err := range map[string]error{"Login": errLogin, "Client": errClient, "TokenContext": errToken} {
			if err == nil || dropboxsign.Classify(err) != dropboxsign.Misconfigured || !strings.Contains(err.Error(), says) {
				t.Errorf("%s(%.20q): %v; want %q, classed Misconfigured", name, key, err, says)
			}
		}
	}
	if n := store.Calls(); n != 0 {
		t.Errorf("%d store calls for keys no account may have", n)
	}
	if st := srv.Stats(); st.TokenRequests != 0 || st.APICalls != 0 {
		t.Errorf("such keys reached Dropbox Sign: %+v", st)
	}
	if held := a.Stats().Held; held != 0 {
		t.Errorf("%d sources held for them", held)
	}
	// The code was not spent: the login under the longest key works.
	longest := strings.Repeat("k", dropboxsign.MaxAccountKeyLen)
	if _, err := a.Login(ctx, longest, code, "state-1"); err != nil {
		t.Errorf("Login with the unspent code: %v", err)
	}
	if _, err := a.TokenSource(longest).TokenContext(ctx); err != nil {
		t.Errorf("the longest key: %v", err)
	}
}

// A TokenSource the app holds gets NewClient's behaviour through Transport:
// the 401 replay.
func TestTransportGivesAnyTokenSourceTheReplay(t *testing.T) {
	srv := newServer(t)
	src := dropboxsign.NewTokenSource(testContext(t), srv.Config(), srv.IssueToken())
	client := &http.Client{Transport: &dropboxsign.Transport{Source: src}}
	srv.RevokeAccessTokens()
	if status, err := getStatus(client, srv.AccountURL()); status != 200 {
		t.Fatalf("%d %v; want 200 after one refresh and a replay", status, err)
	}
	if _, err := (&http.Client{Transport: &dropboxsign.Transport{}}).Get(srv.AccountURL()); err == nil {
		t.Error("a Transport without a Source sent a request")
	}
}

// What was the Quick start's pitfall, measured: a client built per request
// from the token in the app's database (NewClient, WithOnRefresh, no store).
// After an expiry, concurrent requests each need a refresh with the same
// refresh token: they share one token request (grants.go), and all succeed;
// before, Dropbox Sign's rotation refused all but one, and Classify called
// those Reauthorize. Through Accounts, the same requests share one refresh
// too.
func TestAClientPerRequestSharesOneRefreshAsAccountsDoes(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	const requests = 8
	var mu sync.Mutex
	database := expired(srv.IssueToken()) // the app's own row for the user
	save := func(_ context.Context, tok *oauth2.Token) error {
		mu.Lock()
		database = tok
		mu.Unlock()
		return nil
	}
	release := srv.HoldTokenResponses() // let every request start its refresh before any answer
	var ok, reauthorize atomic.Int64
	var wg sync.WaitGroup
	for range requests {
		mu.Lock()
		row := database
		mu.Unlock()
		wg.Go(func() {
			client := dropboxsign.NewClient(ctx, srv.Config(), row, dropboxsign.WithOnRefresh(save))
			status, err := getStatus(client, srv.AccountURL())
			switch {
			case status == 200:
				ok.Add(1)
			case dropboxsign.Classify(err) == dropboxsign.Reauthorize:
				reauthorize.Add(1)
			}
		})
	}
	srv.WaitTokenRequests(ctx, 1)
	release()
	wg.Wait()
	t.Logf("a client per request: %d of %d succeeded, %d refused (Reauthorize), %d refreshes", ok.Load(), requests, reauthorize.Load(), srv.Stats().Refreshes)
	if ok.Load() != requests || reauthorize.Load() != 0 || srv.Stats().Refreshes != 1 || srv.Stats().StaleRefreshTokens != 0 {
		t.Errorf("%d succeeded, %d Reauthorize, %d refreshes, %d stale; want %d, 0, 1, 0",
			ok.Load(), reauthorize.Load(), srv.Stats().Refreshes, srv.Stats().StaleRefreshTokens, requests)
	}

	store := dropboxsigntest.NewStore()
	store.Save(ctx, "user", nil, expired(srv.IssueToken()))
	accounts := dropboxsign.NewAccounts(ctx, srv.Config(), store)
	before := srv.Stats().Refreshes
	var failed atomic.Int64
	for range requests {
		wg.Go(func() {
			if status, _ := getStatus(accounts.Client("user"), srv.AccountURL()); status != 200 {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 || srv.Stats().Refreshes-before != 1 {
		t.Errorf("through Accounts: %d failed, %d refreshes; want 0 and 1", failed.Load(), srv.Stats().Refreshes-before)
	}
}

// No timer outlives a call, so none can be kept per idle account: Go offers
// no count of live timers, so this reads the package's source instead. The
// time functions that make a timer which fires later, on its own
// (AfterFunc, NewTicker, Tick), are not used at all; a timer that a call
// waits on (time.After, NewTimer) ends with the call.
func TestNoTimerOutlivesACall(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	scanned := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		scanned++
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "time" {
				switch sel.Sel.Name {
				case "AfterFunc", "NewTicker", "Tick":
					t.Errorf("%s: time.%s makes a timer that outlives the call", fset.Position(sel.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
	}
	if scanned < 10 {
		t.Fatalf("scanned %d files: not the package's directory?", scanned)
	}
}
