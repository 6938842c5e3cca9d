package dropboxsign_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

func TestRateLimitedRefreshWaitsForTheReset(t *testing.T) {
	srv := newServer(t)
	clk := newClock()
	old := srv.IssueToken()
	clk.Set(old.Expiry.Add(time.Second))
	reset := clk.Now().Add(30 * time.Second)
	srv.InjectFault(dropboxsigntest.RateLimited(reset))
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now))

	_, err := ts.TokenContext(testContext(t))
	if dropboxsign.Classify(err) != dropboxsign.RateLimited {
		t.Fatalf("err = %v (%v), want rate limited", err, dropboxsign.Classify(err))
	}
	clk.Advance(20 * time.Second) // far past any plain backoff, before the reset
	_, err = ts.TokenContext(testContext(t))
	rl, ok := dropboxsign.ErrorRateLimit(err)
	if !ok || rl.Remaining != 0 || srv.Stats().TokenRequests != 1 {
		t.Fatalf("before the reset: err = %v, rate limit %+v %v, %d requests; want the 429 again and no request",
			err, rl, ok, srv.Stats().TokenRequests)
	}
	srv.ClearFaults()
	clk.Set(reset.Add(time.Second))
	if _, err := ts.TokenContext(testContext(t)); err != nil {
		t.Fatalf("after the reset: %v", err)
	}
	if n := srv.Stats().TokenRequests; n != 2 {
		t.Errorf("token requests = %d, want 2", n)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	srv := newServer(t)
	clk := newClock()
	old := srv.IssueToken()
	f := dropboxsigntest.EnvelopeError(429, "exceeded_rate", "Too many requests.")
	f.Header.Set("Retry-After", "10")
	f.Count = 1
	srv.InjectFault(f)
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now))
	clk.Set(old.Expiry.Add(time.Second))
	ts.TokenContext(testContext(t))
	clk.Advance(9 * time.Second)
	ts.TokenContext(testContext(t))
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Fatalf("retried %d times before Retry-After", n-1)
	}
	clk.Advance(2 * time.Second)
	if _, err := ts.TokenContext(testContext(t)); err != nil {
		t.Fatal(err)
	}
}

func TestTerminalErrorsAreNotRetriedInALoop(t *testing.T) {
	for _, tc := range []struct {
		fault dropboxsigntest.Fault
		class dropboxsign.Class
	}{
		{dropboxsigntest.OAuthError(400, "invalid_grant", "The refresh token is invalid."), dropboxsign.Reauthorize},
		{dropboxsigntest.EnvelopeError(401, "unauthorized", "Unauthorized."), dropboxsign.Reauthorize},
		{dropboxsigntest.OAuthError(401, "invalid_client", "Bad client."), dropboxsign.Misconfigured},
		{dropboxsigntest.EnvelopeError(402, "payment_required", "Pay."), dropboxsign.Misconfigured},
		{dropboxsigntest.EnvelopeError(404, "not_found", "No."), dropboxsign.Misconfigured},
	} {
		srv := newServer(t)
		clk := newClock()
		old := srv.IssueToken()
		srv.InjectFault(tc.fault)
		ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now))
		clk.Set(old.Expiry.Add(time.Second))
		for i := range 50 {
			_, err := ts.TokenContext(testContext(t))
			var re *oauth2.RetrieveError
			if c := dropboxsign.Classify(err); c != tc.class || !c.Terminal() || !errors.As(err, &re) {
				t.Fatalf("%s, call %d: err = %v, class %v; want %v", tc.fault.Body, i, err, c, tc.class)
			}
			clk.Advance(5 * time.Second)
		}
		if n := srv.Stats().TokenRequests; n != 1 {
			t.Errorf("%s: %d token requests in 250 s, want 1", tc.fault.Body, n)
		}
		clk.Advance(time.Minute) // past the 5 min ceiling: one more try, not a loop
		ts.TokenContext(testContext(t))
		if n := srv.Stats().TokenRequests; n != 2 {
			t.Errorf("%s: %d token requests after 5 min, want 2", tc.fault.Body, n)
		}
	}
}

func TestClassify(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	cases := map[string]struct {
		err  error
		want dropboxsign.Class
	}{}
	refresh := func(f dropboxsigntest.Fault) error {
		f.Count = 1
		srv.InjectFault(f)
		_, err := dropboxsign.Refresh(ctx, srv.Config(), "rt")
		return err
	}
	cases["nil"] = struct {
		err  error
		want dropboxsign.Class
	}{nil, dropboxsign.NotAnError}
	add := func(name string, err error, want dropboxsign.Class) {
		cases[name] = struct {
			err  error
			want dropboxsign.Class
		}{err, want}
	}
	add("503", refresh(dropboxsigntest.Fault{Status: 503}), dropboxsign.Temporary)
	add("html 502", refresh(dropboxsigntest.BadGateway()), dropboxsign.Temporary)
	add("408", refresh(dropboxsigntest.Fault{Status: 408}), dropboxsign.Temporary)
	add("broken 200", refresh(dropboxsigntest.Fault{Status: 200, Body: "{"}), dropboxsign.Temporary)
	add("429", refresh(dropboxsigntest.RateLimited(time.Now())), dropboxsign.RateLimited)
	add("bare 429", refresh(dropboxsigntest.Fault{Status: 429}), dropboxsign.RateLimited)
	add("invalid_grant", refresh(dropboxsigntest.OAuthError(400, "invalid_grant", "")), dropboxsign.Reauthorize)
	add("invalid_client", refresh(dropboxsigntest.OAuthError(401, "invalid_client", "")), dropboxsign.Misconfigured)
	add("forbidden", refresh(dropboxsigntest.EnvelopeError(403, "forbidden", "")), dropboxsign.Misconfigured)
	add("bare 400", refresh(dropboxsigntest.Fault{Status: 400}), dropboxsign.Misconfigured)
	_, err := dropboxsign.Refresh(ctx, &oauth2.Config{ClientID: "x", Endpoint: oauth2.Endpoint{TokenURL: "http://example.com/"}}, "rt")
	add("insecure", err, dropboxsign.Misconfigured)
	_, err = dropboxsign.Refresh(ctx, nil, "rt")
	add("nil config", err, dropboxsign.Misconfigured)
	_, err = dropboxsign.Refresh(ctx, srv.Config(), "")
	add("no refresh token", err, dropboxsign.Reauthorize)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = dropboxsign.Refresh(cancelled, srv.Config(), "rt")
	add("cancelled", err, dropboxsign.Temporary)
	for name, tc := range cases {
		if got := dropboxsign.Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %v, want %v", name, tc.err, got, tc.want)
		}
	}
}

// A 401 to a token the source thought valid: that token is marked bad, one
// refresh happens, and the request is sent once more with the new token.
func TestRejectedTokenIsReplacedAndTheRequestReplayed(t *testing.T) {
	srv := newServer(t)
	client := dropboxsign.NewClient(testContext(t), srv.Config(), srv.IssueToken())
	if get(t, client, srv.AccountURL()) != 200 {
		t.Fatal("first call failed")
	}
	srv.RevokeAccessTokens()

	const callers = 16
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range callers {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", srv.AccountURL(), strings.NewReader(`{"x":1}`)) // GetBody set
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
			}
			if resp != nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d calls failed", n)
	}
	st := srv.Stats()
	if st.Refreshes != 1 {
		t.Errorf("refreshes = %d for one revoked token, want 1", st.Refreshes)
	}
	if st.APIRejected < 1 || st.APIRejected > callers || st.APICalls != 1+callers+st.APIRejected {
		t.Errorf("API calls %d, rejected %d: want each rejected call replayed exactly once", st.APICalls, st.APIRejected)
	}
}

func TestRejectionIsNotReplayedWithoutAReplayableBody(t *testing.T) {
	srv := newServer(t)
	client := dropboxsign.NewClient(testContext(t), srv.Config(), srv.IssueToken())

	// A body that cannot be replayed: the token is still marked bad, the
	// request is not sent again, the caller gets the 401.
	srv.InjectAPIFault(dropboxsigntest.Fault{Status: 401, Body: `{"error":{"error_name":"unauthorized"}}`, Count: 1})
	req, _ := http.NewRequest("POST", srv.AccountURL(), io.NopCloser(strings.NewReader("once")))
	req.GetBody = nil
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("unreplayable: %v, %v", resp, err)
	}
	resp.Body.Close()
	if st := srv.Stats(); st.APICalls != 1 || st.TokenRequests != 0 {
		t.Errorf("API calls %d, token requests %d; want 1 and 0: no replay", st.APICalls, st.TokenRequests)
	}
	if get(t, client, srv.AccountURL()) != 200 || srv.Stats().Refreshes != 1 {
		t.Errorf("after an unreplayed 401 the next call should refresh once: %+v", srv.Stats())
	}
}

// When the API refuses every token (a proxy that drops the header, an app
// whose access is gone), one refused token costs one refresh; the
// replacement refused too, the source backs off like after any failure, and
// callers get an error Classify calls Misconfigured, not a refresh each.
func TestAPIRefusingEveryTokenCostsOneRefreshThenBacksOff(t *testing.T) {
	srv := newServer(t)
	clk := newClock()
	client := dropboxsign.NewClient(testContext(t), srv.Config(), srv.IssueToken(), dropboxsign.WithClock(clk.Now))
	srv.InjectAPIFault(dropboxsigntest.EnvelopeError(401, "unauthorized", "Unauthorized api key."))

	if status := get(t, client, srv.AccountURL()); status != 401 {
		t.Fatalf("status = %d, want the API's 401 after one replay", status)
	}
	if st := srv.Stats(); st.APICalls != 2 || st.TokenRequests != 1 {
		t.Fatalf("API calls %d, token requests %d; want 2 and 1", st.APICalls, st.TokenRequests)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 150)
	for i := range 150 {
		call := func() { _, err := client.Get(srv.AccountURL()); errs <- err }
		if i < 100 {
			call() // one after another
		} else {
			wg.Go(call) // and at once
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if c := dropboxsign.Classify(err); err == nil || c != dropboxsign.Misconfigured {
			t.Fatalf("a call while backing off: %v, classed %v; want an error classed Misconfigured", err, c)
		}
	}
	if st := srv.Stats(); st.TokenRequests != 1 || st.APICalls != 2 {
		t.Fatalf("150 calls made %d token requests and %d API calls; want none while backing off", st.TokenRequests, st.APICalls-2)
	}

	clk.Advance(2 * time.Second) // the first backoff, 1–1.5 s, is over
	if status := get(t, client, srv.AccountURL()); status != 401 || srv.Stats().TokenRequests != 2 {
		t.Fatalf("after the backoff: status %d, %d token requests; want one more refresh and the API's 401", status, srv.Stats().TokenRequests)
	}
	if _, err := client.Get(srv.AccountURL()); dropboxsign.Classify(err) != dropboxsign.Misconfigured {
		t.Fatalf("refused again: %v; want the next, longer backoff", err)
	}

	srv.ClearFaults() // the proxy is fixed
	clk.Advance(4 * time.Second)
	for range 10 {
		if status := get(t, client, srv.AccountURL()); status != 200 {
			t.Fatalf("status %d after the fix", status)
		}
	}
	if n := srv.Stats().TokenRequests; n != 3 {
		t.Errorf("%d token requests in all, want 3", n)
	}

	// A refusal long after the last one is news, not a streak: at once,
	// one refresh and a replay.
	clk.Advance(2 * time.Minute)
	srv.InjectAPIFault(dropboxsigntest.Fault{Status: 401, Count: 1})
	if status := get(t, client, srv.AccountURL()); status != 200 || srv.Stats().TokenRequests != 4 {
		t.Errorf("a fresh refusal: status %d, %d token requests; want 200 after one refresh", status, srv.Stats().TokenRequests)
	}
}

func TestInvalidatingAnOldTokenKeepsTheNewerOne(t *testing.T) {
	srv := newServer(t)
	old := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old)
	first, _ := ts.TokenContext(testContext(t))
	ts.Invalidate(first)
	second, err := ts.TokenContext(testContext(t))
	if err != nil || second.AccessToken == first.AccessToken {
		t.Fatalf("after Invalidate: %v, %v", second, err)
	}
	ts.Invalidate(first) // late report about the old token
	ts.Invalidate(&oauth2.Token{AccessToken: "someone else's"})
	ts.Invalidate(nil)
	third, _ := ts.TokenContext(testContext(t))
	if third != second || srv.Stats().Refreshes != 1 {
		t.Errorf("a stale Invalidate discarded the newer token (refreshes %d)", srv.Stats().Refreshes)
	}
}

func TestHungTokenEndpointIsBoundedByTheTimeout(t *testing.T) {
	srv := newServer(t)
	release := srv.HoldTokenResponses() // the endpoint never answers
	defer release()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()),
		dropboxsign.WithTimeout(50*time.Millisecond))
	_, err := ts.TokenContext(context.Background()) // no deadline of the caller's own
	if !errors.Is(err, context.DeadlineExceeded) || dropboxsign.Classify(err) != dropboxsign.Temporary {
		t.Errorf("err = %v, want a deadline error", err)
	}
}

func TestGzipBombIsBounded(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(`{"access_token":"`))
	zw.Write(make([]byte, 8<<20)) // 8 MiB of zeros, about 8 KiB compressed
	zw.Close()
	srv := newServer(t)
	srv.InjectFault(dropboxsigntest.Fault{Status: 200, Body: buf.String(), Count: 1,
		Header: http.Header{"Content-Encoding": {"gzip"}, "Content-Type": {"application/json"}}})
	_, err := dropboxsign.Refresh(testContext(t), srv.Config(), "rt")
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "exceeds 1048576 bytes") || len(re.Body) > 1<<20 {
		t.Errorf("err = %v, want the body cut at 1 MiB", err)
	}
}

// Churn: many goroutines through oauth2.NewClient, NewClient and
// TokenContext for several seconds of 1-second tokens whose refresh tokens
// rotate. Nothing fails, no stale refresh token is ever presented, and the
// refreshes stay near one per half lifetime.
func TestChurnWithOneSecondRotatingTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("several seconds")
	}
	srv := newServer(t)
	srv.SetLifetime(time.Second)
	ctx := testContext(t)
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), srv.IssueToken())
	theirs := oauth2.NewClient(ctx, ts)
	ours := dropboxsign.NewClient(ctx, srv.Config(), srv.IssueToken())

	const duration = 3 * time.Second
	// A token is handed out with at least a tenth of its lifetime left: a
	// call that ends within that margin of asking for its token must
	// succeed. A slower one (a starved machine) may meet the token's
	// expiry in flight, which no token source can prevent: counted apart.
	const margin = time.Second / 10
	deadline := time.Now().Add(duration)
	var calls, failures, slowFailures atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				began := time.Now()
				var err error
				switch i % 3 {
				case 0:
					err = call(theirs, srv.AccountURL())
				case 1:
					err = call(ours, srv.AccountURL())
				default: // a hand-made request with the token from TokenContext
					var tok *oauth2.Token
					if tok, err = ts.TokenContext(ctx); err == nil {
						req, _ := http.NewRequest("GET", srv.AccountURL(), nil)
						tok.SetAuthHeader(req)
						err = do(http.DefaultClient, req)
					}
				}
				calls.Add(1)
				switch {
				case err == nil:
				case time.Since(began) >= margin:
					slowFailures.Add(1)
				default:
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	st := srv.Stats()
	t.Logf("%d calls, %d API calls, %d refreshes; %d calls slower than %v failed (the machine's doing)",
		calls.Load(), st.APICalls, st.Refreshes, slowFailures.Load(), margin)
	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d calls failed; first: %v", n, calls.Load(), firstFailure.Load())
	}
	if st.StaleRefreshTokens != 0 {
		t.Errorf("%d stale refresh tokens presented", st.StaleRefreshTokens)
	}
	// Two sources, each refreshing at half-life: about 2 × 2 × 3 = 12.
	if max := 2 * (2*int(duration/time.Second) + 2); st.Refreshes == 0 || st.Refreshes > max {
		t.Errorf("refreshes = %d, want 1..%d", st.Refreshes, max)
	}
}

func call(c *http.Client, url string) error {
	req, _ := http.NewRequest("GET", url, nil)
	return do(c, req)
}

func do(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return errors.New(resp.Status)
	}
	return nil
}

// Background failures pile up backoff while the token still serves; when
// it stops serving, one attempt is allowed at once rather than making
// callers wait out that backoff.
func TestBackoffFromTheWindowEndsWhenTheTokenStopsServing(t *testing.T) {
	srv := newServer(t)
	clk, done := newClock(), newRuns()
	old := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, dropboxsign.WithClock(clk.Now), done.option())
	srv.InjectFault(dropboxsigntest.Fault{Status: 503})
	for _, at := range []time.Duration{-20 * time.Second, -18 * time.Second, -13 * time.Second} {
		clk.Set(old.Expiry.Add(at))
		if _, err := ts.TokenContext(context.Background()); err != nil {
			t.Fatalf("in the window: %v", err)
		}
		done.wait(t)
	}
	if n := srv.Stats().TokenRequests; n != 3 {
		t.Fatalf("token requests = %d, want 3 failed background refreshes", n)
	}
	srv.ClearFaults()
	clk.Set(old.Expiry.Add(-10 * time.Second)) // no longer usable; third backoff not over
	if tok, err := ts.TokenContext(testContext(t)); err != nil || tok.AccessToken == old.AccessToken {
		t.Errorf("when the token stopped serving: %v, %v; want an attempt at once", tok, err)
	}
}

// Background runs keep starting, run after run: a kick never finds a
// finished run still registered (it once did, when a kick joined a run that
// singleflight had not yet forgotten, and background refresh stopped).
func TestBackgroundRunsKeepStarting(t *testing.T) {
	srv := newServer(t)
	clk, done := newClock(), newRuns()
	tok := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), tok, dropboxsign.WithClock(clk.Now), done.option())
	for i := range 200 {
		clk.Set(tok.Expiry.Add(-4 * time.Minute)) // inside the current token's window
		if got, err := ts.TokenContext(context.Background()); err != nil || got.AccessToken != tok.AccessToken {
			t.Fatalf("cycle %d: %v, %v", i, got, err)
		}
		done.wait(t)
		next, err := ts.TokenContext(context.Background())
		if err != nil || next.AccessToken == tok.AccessToken {
			t.Fatalf("cycle %d: no new token after the background run: %v, %v", i, next, err)
		}
		tok = next
	}
}
