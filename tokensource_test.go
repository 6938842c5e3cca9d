package dropboxsign_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

func TestValidTokenIsServedFromMemory(t *testing.T) {
	srv := newServer(t)
	tok := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), tok)
	for range 100 {
		got, err := ts.TokenContext(context.Background())
		if err != nil || got.AccessToken != tok.AccessToken {
			t.Fatalf("TokenContext = %v, %v", got, err)
		}
	}
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("%d token requests for a valid token", n)
	}
}

func TestTokenContextDoesNotAllocate(t *testing.T) {
	srv := newServer(t)
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), srv.IssueToken())
	ctx := context.Background()
	if allocs := testing.AllocsPerRun(1000, func() { ts.TokenContext(ctx) }); allocs != 0 {
		t.Errorf("TokenContext allocates %v times per call on a valid token", allocs)
	}
}

func TestSourceCopiesTheTokenItIsGiven(t *testing.T) {
	srv := newServer(t)
	tok := srv.IssueToken()
	original := tok.AccessToken
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), tok)
	tok.AccessToken = "changed by the caller"
	got, _ := ts.TokenContext(context.Background())
	if got.AccessToken != original {
		t.Errorf("source follows the caller's changes: %q", got.AccessToken)
	}
}

// Many callers with an expired token: exactly one token request.
func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	srv := newServer(t)
	release := srv.HoldTokenResponses()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()))

	const callers = 64
	var wg sync.WaitGroup
	tokens := make([]*oauth2.Token, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { tokens[i], errs[i] = ts.TokenContext(testContext(t)) })
	}
	// Let the first request reach the server, then let it answer while the
	// other callers are (or are about to be) waiting on it.
	if err := srv.WaitTokenRequests(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	release()
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || tokens[i] != tokens[0] {
			t.Fatalf("caller %d: %v, %v; want the shared token", i, tokens[i], errs[i])
		}
	}
	if st := srv.Stats(); st.TokenRequests != 1 || st.Refreshes != 1 {
		t.Errorf("token requests = %d, refreshes = %d; want 1 and 1", st.TokenRequests, st.Refreshes)
	}
}

func TestWaiterCancellationLeavesTheRefreshToOthers(t *testing.T) {
	srv := newServer(t)
	release := srv.HoldTokenResponses()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()))

	patient := make(chan error, 1)
	go func() {
		_, err := ts.TokenContext(testContext(t))
		patient <- err
	}()
	if err := srv.WaitTokenRequests(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	impatient, cancel := context.WithCancel(context.Background())
	cancel()
	if tok, err := ts.TokenContext(impatient); !errors.Is(err, context.Canceled) || tok != nil {
		t.Fatalf("cancelled caller got %v, %v; want context.Canceled", tok, err)
	}
	release()
	if err := <-patient; err != nil {
		t.Fatalf("patient caller: %v", err)
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("token requests = %d, want 1", n)
	}
}

func TestCancellingTheConstructionContextDoesNotBreakRefreshes(t *testing.T) {
	srv := newServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), expired(srv.IssueToken()))
	cancel()
	if _, err := ts.TokenContext(testContext(t)); err != nil {
		t.Fatalf("refresh after the construction context ended: %v", err)
	}
}

func TestRefreshAheadServesTheCurrentTokenWhileOneBackgroundRefreshRuns(t *testing.T) {
	srv := newServer(t)
	clk, done, kicked := newClock(), newRuns(), &kicks{}
	old := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now), done.option(), kicked.option())

	clk.Set(old.Expiry.Add(-5*time.Minute - time.Second))
	if got, _ := ts.TokenContext(context.Background()); got.AccessToken != old.AccessToken || kicked.n.Load() != 0 {
		t.Fatal("refreshed before the expiry window")
	}

	release := srv.HoldTokenResponses()
	clk.Set(old.Expiry.Add(-4 * time.Minute)) // inside the 5 min window
	for range 50 {
		got, err := ts.TokenContext(context.Background())
		if err != nil || got.AccessToken != old.AccessToken {
			t.Fatalf("inside the window: %v, %v; want the current token at once", got, err)
		}
	}
	if err := srv.WaitTokenRequests(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	release()
	done.wait(t)
	got, err := ts.TokenContext(context.Background())
	if err != nil || got.AccessToken == old.AccessToken {
		t.Fatalf("after the background refresh: %v, %v; want the new token", got, err)
	}
	if n := srv.Stats().TokenRequests; n != 1 || kicked.n.Load() != 1 {
		t.Errorf("token requests = %d, background runs = %d; want 1 and 1", n, kicked.n.Load())
	}
}

// In the window, while a slow refresh runs, callers still cost no lock and
// no allocation: they do not queue on the refresh.
func TestCallsInTheWindowDoNotQueueOnARunningRefresh(t *testing.T) {
	srv := newServer(t)
	clk, kicked := newClock(), &kicks{}
	old := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now), kicked.option())
	release := srv.HoldTokenResponses()
	defer release()
	clk.Set(old.Expiry.Add(-time.Minute))
	ts.TokenContext(context.Background())
	if err := srv.WaitTokenRequests(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if allocs := testing.AllocsPerRun(1000, func() { ts.TokenContext(ctx) }); allocs != 0 {
		t.Errorf("%v allocations per call while a refresh runs", allocs)
	}
	if n := kicked.n.Load(); n != 1 {
		t.Errorf("%d background runs started, want 1", n)
	}
}

func TestUnusableTokenMakesCallersWait(t *testing.T) {
	srv := newServer(t)
	clk := newClock()
	old := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now))
	clk.Set(old.Expiry.Add(-9 * time.Second)) // within min(10 s, 360 s) of expiry
	got, err := ts.TokenContext(testContext(t))
	if err != nil || got.AccessToken == old.AccessToken {
		t.Fatalf("got %v, %v; want a new token", got, err)
	}
}

func TestExpiryWindowIsAtMostHalfTheLifetime(t *testing.T) {
	srv := newServer(t)
	srv.SetLifetime(60 * time.Second)
	clk, kicked := newClock(), &kicks{}
	old := srv.IssueToken() // ExpiresIn 60: window 30 s, unusable in the last 6 s
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now),
		dropboxsign.WithExpiryWindow(time.Hour), kicked.option())

	clk.Set(old.Expiry.Add(-31 * time.Second))
	ts.TokenContext(context.Background())
	if kicked.n.Load() != 0 {
		t.Fatalf("refresh %v before expiry of a 60 s token", 31*time.Second)
	}
	clk.Set(old.Expiry.Add(-7 * time.Second))
	release := srv.HoldTokenResponses()
	defer release()
	if got, err := ts.TokenContext(context.Background()); err != nil || got.AccessToken != old.AccessToken {
		t.Fatalf("7 s before expiry: %v, %v; want the current token at once", got, err)
	}
	if err := srv.WaitTokenRequests(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	clk.Set(old.Expiry.Add(-5 * time.Second))
	short, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ts.TokenContext(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("5 s before expiry of a 60 s token: err = %v, want the caller to wait", err)
	}
}

func TestZeroExpiryWindowRefreshesOnlyWhenUnusable(t *testing.T) {
	srv := newServer(t)
	clk, kicked := newClock(), &kicks{}
	old := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now),
		dropboxsign.WithExpiryWindow(0), kicked.option())
	clk.Set(old.Expiry.Add(-11 * time.Second))
	ts.TokenContext(context.Background())
	if n := kicked.n.Load(); n != 0 {
		t.Fatalf("window 0: %d refreshes started 11 s before expiry", n)
	}
	clk.Set(old.Expiry.Add(-9 * time.Second))
	if got, err := ts.TokenContext(testContext(t)); err != nil || got.AccessToken == old.AccessToken || kicked.n.Load() != 0 {
		t.Fatalf("window 0, 9 s before expiry: %v, %v; want to wait for a new token", got, err)
	}
}

// Each refresh presents the refresh token of the previous response, and the
// OnRefresh function has every token before any caller does.
func TestRotationPersistsEveryTokenBeforeHandingItOut(t *testing.T) {
	srv := newServer(t)
	clk := newClock()
	var mu sync.Mutex
	var saved []*oauth2.Token
	first := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), first, dropboxsign.WithClock(clk.Now),
		dropboxsign.WithOnRefresh(func(ctx context.Context, tok *oauth2.Token) error {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("OnRefresh context has no deadline")
			}
			mu.Lock()
			saved = append(saved, tok)
			mu.Unlock()
			return nil
		}))

	prev := first
	for i := range 5 {
		clk.Set(prev.Expiry.Add(time.Second))
		got, err := ts.TokenContext(testContext(t))
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		mu.Lock()
		last := saved[len(saved)-1]
		n := len(saved)
		mu.Unlock()
		if n != i+1 || last != got {
			t.Fatalf("refresh %d: %d saved, last saved %p, handed out %p", i, n, last, got)
		}
		if got.RefreshToken == prev.RefreshToken {
			t.Fatalf("refresh %d did not rotate", i)
		}
		prev = got
	}
	reqs := srv.TokenRequests()
	presented := first.RefreshToken
	for i, r := range reqs {
		if !strings.Contains(string(r.Body), `"refresh_token":"`+presented+`"`) {
			t.Errorf("request %d presented %s, want %s", i, r.Body, presented)
		}
		presented = saved[i].RefreshToken
	}
	if st := srv.Stats(); st.StaleRefreshTokens != 0 || st.Refreshes != 5 {
		t.Errorf("stats = %+v, want 5 refreshes and no stale refresh token", st)
	}
}

func TestCallersDoNotSeeATokenBeforeOnRefreshReturns(t *testing.T) {
	srv := newServer(t)
	clk, done := newClock(), newRuns()
	entered, proceed := make(chan *oauth2.Token, 1), make(chan struct{})
	old := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now), done.option(),
		dropboxsign.WithOnRefresh(func(_ context.Context, tok *oauth2.Token) error {
			entered <- tok
			<-proceed
			return nil
		}))
	clk.Set(old.Expiry.Add(-time.Minute)) // in the window: a background refresh
	ts.TokenContext(context.Background())
	fresh := <-entered
	for range 20 {
		if got, _ := ts.TokenContext(context.Background()); got.AccessToken == fresh.AccessToken {
			t.Fatal("a caller got the new token while it was being saved")
		}
	}
	close(proceed)
	done.wait(t)
	if got, _ := ts.TokenContext(context.Background()); got != fresh {
		t.Errorf("after the save: got %v, want the saved token", got)
	}
}

func TestFailedSaveKeepsTheTokenReportsAndRetries(t *testing.T) {
	srv := newServer(t)
	clk, done := newClock(), newRuns()
	var mu sync.Mutex
	saves, failing := 0, true
	var lastSaved *oauth2.Token
	errDisk := errors.New("disk full")
	old := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now), done.option(),
		dropboxsign.WithOnRefresh(func(_ context.Context, tok *oauth2.Token) error {
			mu.Lock()
			defer mu.Unlock()
			saves++
			if failing {
				return errDisk
			}
			lastSaved = tok
			return nil
		}))

	clk.Set(old.Expiry.Add(time.Second))
	fresh, err := ts.TokenContext(testContext(t))
	var saveErr *dropboxsign.SaveError
	if !errors.As(err, &saveErr) || !errors.Is(err, errDisk) {
		t.Fatalf("err = %v, want a *SaveError wrapping the save's error", err)
	}
	if fresh == nil || fresh.AccessToken == old.AccessToken {
		t.Fatalf("token = %v, want the new token along with the error", fresh)
	}
	done.wait(t) // the refresh's own run
	// Before the retry is due: the error again, at once, and no new save.
	for range 10 {
		if got, err := ts.TokenContext(context.Background()); got != fresh || !errors.As(err, &saveErr) {
			t.Fatalf("got %v, %v; want the unsaved token and its SaveError", got, err)
		}
	}
	mu.Lock()
	if saves != 1 {
		t.Errorf("saves = %d before the retry was due, want 1", saves)
	}
	failing = false
	mu.Unlock()

	clk.Advance(1500 * time.Millisecond) // the first retry is due within 1 to 1.5 s
	ts.TokenContext(context.Background())
	done.wait(t)
	got, err := ts.TokenContext(context.Background())
	if err != nil || got != fresh {
		t.Fatalf("after a successful retry: %v, %v", got, err)
	}
	mu.Lock()
	if saves != 2 || lastSaved != fresh {
		t.Errorf("saves = %d, last saved %v; want 2 and the new token", saves, lastSaved)
	}
	mu.Unlock()
	// The kept token's refresh token is the one used next: no stale token.
	clk.Set(fresh.Expiry.Add(time.Second))
	if _, err := ts.TokenContext(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if n := srv.Stats().StaleRefreshTokens; n != 0 {
		t.Errorf("%d stale refresh tokens presented", n)
	}
}

func TestFailedRefreshBacksOffAndRecovers(t *testing.T) {
	srv := newServer(t)
	clk := newClock()
	old := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now))
	srv.InjectFault(dropboxsigntest.EnvelopeError(503, "service_unavailable", "Down."))
	clk.Set(old.Expiry.Add(time.Second))

	_, err := ts.TokenContext(testContext(t))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != 503 {
		t.Fatalf("err = %v, want the 503", err)
	}
	for range 20 {
		_, err := ts.TokenContext(testContext(t))
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "next refresh attempt in") {
			t.Fatalf("while backing off: err = %v", err)
		}
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Fatalf("token requests while backing off = %d, want 1", n)
	}
	clk.Advance(1500 * time.Millisecond)
	ts.TokenContext(testContext(t))
	if n := srv.Stats().TokenRequests; n != 2 {
		t.Fatalf("token requests after the first backoff = %d, want 2", n)
	}
	srv.ClearFaults()
	clk.Advance(999 * time.Millisecond) // second backoff is 2 to 3 s
	if _, err := ts.TokenContext(testContext(t)); err == nil || srv.Stats().TokenRequests != 2 {
		t.Fatal("retried before the second backoff")
	}
	clk.Advance(2001 * time.Millisecond)
	if got, err := ts.TokenContext(testContext(t)); err != nil || got.AccessToken == old.AccessToken {
		t.Fatalf("after recovery: %v, %v", got, err)
	}
}

func TestFailedBackgroundRefreshDoesNotReachCallers(t *testing.T) {
	srv := newServer(t)
	clk, done := newClock(), newRuns()
	old := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now), done.option())
	srv.InjectFault(dropboxsigntest.BadGateway())
	clk.Set(old.Expiry.Add(-4 * time.Minute))
	for i := range 30 {
		got, err := ts.TokenContext(context.Background())
		if err != nil || got.AccessToken != old.AccessToken {
			t.Fatalf("call %d: %v, %v; want the current token", i, got, err)
		}
		if i == 0 {
			done.wait(t)
		}
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("token requests = %d, want 1 (then backoff)", n)
	}
}

func TestBrokenResponseWithANewRefreshTokenKeepsIt(t *testing.T) {
	srv := newServer(t)
	clk := newClock()
	var saved *oauth2.Token
	old := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now),
		dropboxsign.WithOnRefresh(func(_ context.Context, tok *oauth2.Token) error { saved = tok; return nil }))
	srv.InjectFault(dropboxsigntest.Fault{Status: 200, Body: `{"refresh_token":"rt-rotated","expires_in":3600}`, Count: 1})
	clk.Set(old.Expiry.Add(time.Second))
	if _, err := ts.TokenContext(testContext(t)); err == nil || !strings.Contains(err.Error(), "access_token") {
		t.Fatalf("err = %v, want the malformed response", err)
	}
	if saved == nil || saved.RefreshToken != "rt-rotated" {
		t.Fatalf("saved %v, want the salvaged refresh token persisted", saved)
	}
	clk.Advance(2 * time.Second)
	ts.TokenContext(testContext(t))
	reqs := srv.TokenRequests()
	if len(reqs) != 2 || !strings.Contains(string(reqs[1].Body), `"refresh_token":"rt-rotated"`) {
		t.Errorf("second refresh sent %s, want the salvaged refresh token", reqs[len(reqs)-1].Body)
	}
}

func TestNoRefreshTokenAndBadConfigAreErrorsNotPanics(t *testing.T) {
	srv := newServer(t)
	tok := expired(srv.IssueToken())
	tok.RefreshToken = ""
	for name, ts := range map[string]*dropboxsign.TokenSource{
		"no refresh token":          dropboxsign.NewTokenSource(context.Background(), srv.Config(), tok),
		"nil token":                 dropboxsign.NewTokenSource(context.Background(), srv.Config(), nil),
		"nil config":                dropboxsign.NewTokenSource(context.Background(), nil, expired(srv.IssueToken())),
		"insecure URL, nil context": nilContextSource(expired(srv.IssueToken())),
	} {
		if got, err := ts.TokenContext(context.Background()); err == nil || got != nil {
			t.Errorf("%s: got %v, %v; want an error", name, got, err)
		}
		if got, err := ts.Token(); err == nil || got != nil {
			t.Errorf("%s: Token() = %v, %v; want an error", name, got, err)
		}
	}
}

func nilContextSource(tok *oauth2.Token) *dropboxsign.TokenSource {
	conf := &oauth2.Config{ClientID: "x", Endpoint: oauth2.Endpoint{TokenURL: "http://example.com/t"}}
	//lint:ignore SA1012 a nil context must not panic
	return dropboxsign.NewTokenSource(nil, conf, tok)
}

func TestUnsavedTokenStillServesNewClientAndToken(t *testing.T) {
	srv := newServer(t)
	var saves atomic.Int64
	failing := dropboxsign.WithOnRefresh(func(context.Context, *oauth2.Token) error {
		saves.Add(1)
		return errors.New("database down")
	})
	client := dropboxsign.NewClient(testContext(t), srv.Config(), expired(srv.IssueToken()), failing)
	if status := get(t, client, srv.AccountURL()); status != 200 {
		t.Errorf("NewClient with an unsaved token: status %d, want 200", status)
	}
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()), failing)
	if tok, err := ts.Token(); err != nil || tok == nil {
		t.Errorf("Token() with an unsaved token: %v, %v; want the token and no error", tok, err)
	}
	var saveErr *dropboxsign.SaveError
	if tok, err := ts.TokenContext(context.Background()); tok == nil || !errors.As(err, &saveErr) {
		t.Errorf("TokenContext: %v, %v; want the token and its SaveError", tok, err)
	}
	if saves.Load() != 2 {
		t.Errorf("saves = %d, want 2", saves.Load())
	}
}

func TestPanickingOrExitingOnRefreshLosesNothing(t *testing.T) {
	for name, hook := range map[string]func(){
		"panic":  func() { panic("boom") },
		"Goexit": runtime.Goexit,
	} {
		srv := newServer(t)
		ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()),
			dropboxsign.WithOnRefresh(func(context.Context, *oauth2.Token) error { hook(); return nil }))
		tok, err := ts.TokenContext(testContext(t))
		var saveErr *dropboxsign.SaveError
		if tok == nil || !errors.As(err, &saveErr) {
			t.Errorf("%s: %v, %v; want the token and a SaveError", name, tok, err)
			continue
		}
		// The token was published: the next refresh presents its refresh token.
		ts.Invalidate(tok)
		ts.TokenContext(testContext(t))
		if n := srv.Stats().StaleRefreshTokens; n != 0 {
			t.Errorf("%s: %d stale refresh tokens", name, n)
		}
	}
}

// A token that is already unusable when it arrives is kept, and the next
// refresh waits for a backoff instead of following at once.
func TestTokenUnusableOnArrivalBacksOff(t *testing.T) {
	srv := newServer(t)
	srv.SetLifetime(time.Second)
	clk := newClock()
	var saved atomic.Pointer[oauth2.Token]
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()), dropboxsign.WithClock(clk.Now),
		dropboxsign.WithOnRefresh(func(_ context.Context, tok *oauth2.Token) error {
			saved.Store(tok)
			clk.Advance(2 * time.Second) // the 1 s token is spent by the time it is out
			return nil
		}))
	if _, err := ts.TokenContext(testContext(t)); err == nil || !strings.Contains(err.Error(), "about to expire on arrival") {
		t.Fatalf("err = %v", err)
	}
	for range 10 {
		ts.TokenContext(testContext(t))
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("token requests = %d, want 1 and then a backoff", n)
	}
	kept := saved.Load()
	clk.Advance(1500 * time.Millisecond)
	ts.TokenContext(testContext(t))
	if reqs := srv.TokenRequests(); len(reqs) != 2 || !strings.Contains(string(reqs[1].Body), kept.RefreshToken) {
		t.Errorf("the retry did not present the kept refresh token")
	}
}

// A save retry during which the token stops being usable goes on to refresh
// in the same run, for the callers that joined it.
func TestSaveRetryRunRefreshesIfTheTokenExpiredMeanwhile(t *testing.T) {
	srv := newServer(t)
	clk, done := newClock(), newRuns()
	var calls atomic.Int64
	old := srv.IssueToken()
	var fresh atomic.Pointer[oauth2.Token]
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now), done.option(),
		dropboxsign.WithOnRefresh(func(_ context.Context, tok *oauth2.Token) error {
			switch calls.Add(1) {
			case 1:
				fresh.Store(tok)
				return errors.New("first save fails")
			case 2: // the retry: time passes beyond the token's usable life
				clk.Set(tok.Expiry)
			}
			return nil
		}))
	clk.Set(old.Expiry.Add(time.Second))
	ts.TokenContext(testContext(t)) // refresh; its save fails
	done.wait(t)
	clk.Advance(2 * time.Second)
	ts.TokenContext(context.Background()) // starts the save retry in the background
	done.wait(t)
	got, err := ts.TokenContext(context.Background())
	if err != nil || got.AccessToken == fresh.Load().AccessToken || srv.Stats().Refreshes != 2 {
		t.Errorf("after the retry run: %v, %v, %d refreshes; want a second refresh in that run", got, err, srv.Stats().Refreshes)
	}
}

func TestBackoffSchedule(t *testing.T) {
	for n, want := range map[int][2]time.Duration{
		1:  {time.Second, 1500 * time.Millisecond},
		2:  {2 * time.Second, 3 * time.Second},
		3:  {4 * time.Second, 6 * time.Second},
		20: {200 * time.Second, 5 * time.Minute},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := dropboxsign.Backoff(n)
			if d < want[0] || d > want[1] {
				t.Fatalf("Backoff(%d) = %v, want within %v", n, d, want)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Errorf("Backoff(%d): only %d distinct values in 200: no jitter", n, len(seen))
		}
	}
}
