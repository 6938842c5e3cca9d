package oteldropboxsign_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/oteldropboxsign"
)

// Data point keys, as collect writes them.
const (
	refreshOK    = "dropboxsign.token.requests{dropboxsign.outcome=success,dropboxsign.token.operation=refresh}"
	refreshOKs   = "dropboxsign.token.request.duration{dropboxsign.outcome=success,dropboxsign.token.operation=refresh}"
	connected    = "dropboxsign.account.count{dropboxsign.account.state=connected}"
	refused      = "dropboxsign.account.count{dropboxsign.account.state=refused}"
	disconnected = "dropboxsign.account.count{dropboxsign.account.state=disconnected}"
	dropped      = "dropboxsign.event.dropped{}"
	refreshSpan  = "dropboxsign.token.refresh"
)

// withRate adds the rate-limit attributes of the event's answer to a span's
// wanted attributes: the fake sends them with every answer.
func withRate(t *testing.T, attrs map[string]string, e dropboxsign.Event) map[string]string {
	t.Helper()
	if e.RateLimit.Limit != 100 || e.RateLimit.Remaining < 0 || e.RateLimit.Reset.IsZero() {
		t.Errorf("the answer's rate limit: %+v", e.RateLimit)
	}
	out := maps.Clone(attrs)
	out["dropboxsign.rate_limit.limit"] = "100"
	out["dropboxsign.rate_limit.remaining"] = strconv.Itoa(e.RateLimit.Remaining)
	out["dropboxsign.rate_limit.reset"] = e.RateLimit.Reset.UTC().Format(time.RFC3339)
	return out
}

// retryDelay is the dropboxsign.retry.delay a failure's span carries: the
// backoff the event announced.
func retryDelay(e dropboxsign.Event) string {
	return strconv.FormatFloat(e.RetryAt.Sub(e.Time).Round(time.Millisecond).Seconds(), 'g', -1, 64)
}

// A refresh that succeeds, for a caller that waited: one request counted and
// timed, one span under the caller's with the HTTP span under it, and the
// account held.
func TestARefresh(t *testing.T) {
	h := newHarness(t)
	store := dropboxsigntest.NewStore()
	store.Save(context.Background(), "alice", nil, expired(h.srv.IssueToken()))
	a := h.accounts(store)
	ctx, caller := h.caller("GET /contracts")
	if _, err := a.TokenSource("alice").TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	caller.End()
	e := h.rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]
	c := h.wantMetrics(map[string]float64{refreshOK: 1, refreshOKs: 1, connected: 1, refused: 0, disconnected: 0, dropped: 0})
	checkSpan(t, h.tokenSpans(1)[0], spanWant{name: refreshSpan, parent: caller.SpanContext(), event: e,
		attrs: withRate(t, map[string]string{
			"dropboxsign.token.operation": "refresh", "dropboxsign.account": "alice",
			"dropboxsign.outcome": "success", "http.response.status_code": "200"}, e)})
	h.noSecrets(c)
}

// A 503, then, after the backoff the event announced, a refresh that
// succeeds: one request of each outcome, the failure's span in error.
func TestA503ThenSuccess(t *testing.T) {
	h := newHarness(t)
	store := dropboxsigntest.NewStore()
	store.Save(context.Background(), "bob", nil, expired(h.srv.IssueToken()))
	a := h.accounts(store)
	h.srv.InjectFault(dropboxsigntest.Fault{Status: 503, Body: "upstream down", Count: 1})
	ctx, caller := h.caller("GET /contracts")
	if _, err := a.TokenSource("bob").TokenContext(ctx); dropboxsign.Classify(err) != dropboxsign.Temporary {
		t.Fatalf("the 503: %v", err)
	}
	failure := h.rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]
	<-time.After(time.Until(failure.RetryAt)) // the source's own backoff: the next call refreshes
	if _, err := a.TokenSource("bob").TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	caller.End()
	success := h.rec.waitFor(t, dropboxsign.EventTokenRequest, 2)[1]
	c := h.wantMetrics(map[string]float64{
		refreshOK: 1, refreshOKs: 1,
		"dropboxsign.token.requests{dropboxsign.outcome=temporary,dropboxsign.token.operation=refresh,error.type=503}":         1,
		"dropboxsign.token.request.duration{dropboxsign.outcome=temporary,dropboxsign.token.operation=refresh,error.type=503}": 1,
		connected: 1, refused: 0, disconnected: 0, dropped: 0,
	})
	spans := h.tokenSpans(2)
	checkSpan(t, spans[0], spanWant{name: refreshSpan, parent: caller.SpanContext(), event: failure, failed: true,
		attrs: map[string]string{
			"dropboxsign.token.operation": "refresh", "dropboxsign.account": "bob",
			"dropboxsign.outcome": "temporary", "error.type": "503", "http.response.status_code": "503",
			"dropboxsign.failures": "1", "dropboxsign.retry.delay": retryDelay(failure)}})
	checkSpan(t, spans[1], spanWant{name: refreshSpan, parent: caller.SpanContext(), event: success,
		attrs: withRate(t, map[string]string{
			"dropboxsign.token.operation": "refresh", "dropboxsign.account": "bob",
			"dropboxsign.outcome": "success", "http.response.status_code": "200"}, success)})
	h.noSecrets(c)
}

// A 429 exceeded_rate with a reset: rate limited, and the span says when the
// window resets and how long the source waits.
func TestARateLimit(t *testing.T) {
	h := newHarness(t)
	store := dropboxsigntest.NewStore()
	store.Save(context.Background(), "carol", nil, expired(h.srv.IssueToken()))
	a := h.accounts(store)
	reset := time.Now().Add(90 * time.Second).Truncate(time.Second)
	h.srv.InjectFault(dropboxsigntest.RateLimited(reset))
	ctx, caller := h.caller("GET /contracts")
	if _, err := a.TokenSource("carol").TokenContext(ctx); dropboxsign.Classify(err) != dropboxsign.RateLimited {
		t.Fatalf("the 429: %v", err)
	}
	caller.End()
	e := h.rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]
	if e.RetryAt.Before(reset) {
		t.Errorf("the source retries at %v, before the reset %v", e.RetryAt, reset)
	}
	c := h.wantMetrics(map[string]float64{
		"dropboxsign.token.requests{dropboxsign.outcome=rate_limited,dropboxsign.token.operation=refresh,error.type=exceeded_rate}":         1,
		"dropboxsign.token.request.duration{dropboxsign.outcome=rate_limited,dropboxsign.token.operation=refresh,error.type=exceeded_rate}": 1,
		connected: 1, refused: 0, disconnected: 0, dropped: 0,
	})
	checkSpan(t, h.tokenSpans(1)[0], spanWant{name: refreshSpan, parent: caller.SpanContext(), event: e, failed: true,
		attrs: map[string]string{
			"dropboxsign.token.operation": "refresh", "dropboxsign.account": "carol",
			"dropboxsign.outcome": "rate_limited", "error.type": "exceeded_rate", "http.response.status_code": "429",
			"dropboxsign.error.name": "exceeded_rate", "dropboxsign.rate_limit.limit": "100",
			"dropboxsign.rate_limit.remaining": "0", "dropboxsign.rate_limit.reset": reset.UTC().Format(time.RFC3339),
			"dropboxsign.failures": "1", "dropboxsign.retry.delay": retryDelay(e)}})
	h.noSecrets(c)
}

// invalid_grant with a store: the refused refresh, one refusal, and the
// account counted as awaiting a new authorization; then the user logs in
// again: an exchange under the callback's span, a login, and the account
// connected again.
func TestARefusalAndALogin(t *testing.T) {
	h := newHarness(t)
	store := dropboxsigntest.NewStore()
	tok := h.srv.IssueToken()
	store.Save(context.Background(), "dave", nil, expired(tok))
	h.srv.Revoke(tok)
	a := h.accounts(store)
	ctx, caller := h.caller("GET /contracts")
	var re *dropboxsign.RefusedError
	if _, err := a.TokenSource("dave").TokenContext(ctx); !errors.As(err, &re) {
		t.Fatalf("the refusal: %v", err)
	}
	caller.End()
	h.rec.waitFor(t, dropboxsign.EventRefused, 1)
	e := h.rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]
	h.wantMetrics(map[string]float64{
		"dropboxsign.token.requests{dropboxsign.outcome=reauthorize,dropboxsign.token.operation=refresh,error.type=invalid_grant}":         1,
		"dropboxsign.token.request.duration{dropboxsign.outcome=reauthorize,dropboxsign.token.operation=refresh,error.type=invalid_grant}": 1,
		"dropboxsign.account.refusals{}": 1,
		connected:                        0, refused: 1, disconnected: 0, dropped: 0,
	})
	checkSpan(t, h.tokenSpans(1)[0], spanWant{name: refreshSpan, parent: caller.SpanContext(), event: e, failed: true,
		attrs: map[string]string{
			"dropboxsign.token.operation": "refresh", "dropboxsign.account": "dave",
			"dropboxsign.outcome": "reauthorize", "error.type": "invalid_grant", "http.response.status_code": "400",
			"dropboxsign.error.name": "invalid_grant",
			"dropboxsign.failures":   "1", "dropboxsign.retry.delay": retryDelay(e)}})

	code := h.authorize("st4te")
	ctx, callback := h.caller("GET /oauth/callback")
	if _, err := a.Login(ctx, "dave", code, "st4te"); err != nil {
		t.Fatal(err)
	}
	callback.End()
	h.rec.waitFor(t, dropboxsign.EventLogin, 1)
	x := h.rec.waitFor(t, dropboxsign.EventTokenRequest, 2)[1]
	c := h.wantMetrics(map[string]float64{
		"dropboxsign.token.requests{dropboxsign.outcome=reauthorize,dropboxsign.token.operation=refresh,error.type=invalid_grant}":         1,
		"dropboxsign.token.request.duration{dropboxsign.outcome=reauthorize,dropboxsign.token.operation=refresh,error.type=invalid_grant}": 1,
		"dropboxsign.token.requests{dropboxsign.outcome=success,dropboxsign.token.operation=exchange}":                                     1,
		"dropboxsign.token.request.duration{dropboxsign.outcome=success,dropboxsign.token.operation=exchange}":                             1,
		"dropboxsign.account.refusals{}": 1, "dropboxsign.account.logins{}": 1,
		connected: 1, refused: 0, disconnected: 0, dropped: 0,
	})
	checkSpan(t, h.tokenSpans(2)[1], spanWant{name: "dropboxsign.token.exchange", parent: callback.SpanContext(), event: x,
		attrs: withRate(t, map[string]string{
			"dropboxsign.token.operation": "exchange", "dropboxsign.account": "dave",
			"dropboxsign.outcome": "success", "http.response.status_code": "200"}, x)})
	h.noSecrets(c)
}

// A new token the store does not take: the request succeeded (its span says
// so), and the failed save is counted. Then a store that fails to load: a
// store error, and no token request.
func TestAFailedSaveAndAStoreError(t *testing.T) {
	h := newHarness(t)
	store := &flakyStore{Store: dropboxsigntest.NewStore()}
	store.Save(context.Background(), "erin", nil, expired(h.srv.IssueToken()))
	a := h.accounts(store)
	store.set(true, false)
	ctx, caller := h.caller("GET /contracts")
	var se *dropboxsign.SaveError
	if tok, err := a.TokenSource("erin").TokenContext(ctx); tok == nil || !errors.As(err, &se) {
		t.Fatalf("the unsaved token: %v %v", tok, err)
	}
	caller.End()
	h.rec.waitFor(t, dropboxsign.EventSaveFailed, 1)
	e := h.rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]
	h.wantMetrics(map[string]float64{refreshOK: 1, refreshOKs: 1, "dropboxsign.token.save.failures{}": 1, connected: 1, refused: 0, disconnected: 0, dropped: 0})
	checkSpan(t, h.tokenSpans(1)[0], spanWant{name: refreshSpan, parent: caller.SpanContext(), event: e,
		attrs: withRate(t, map[string]string{
			"dropboxsign.token.operation": "refresh", "dropboxsign.account": "erin",
			"dropboxsign.outcome": "success", "http.response.status_code": "200"}, e)})

	store.set(false, true)
	if _, err := a.TokenSource("frank").TokenContext(ctx); err == nil {
		t.Fatal("a token without a store")
	}
	if e := h.rec.waitFor(t, dropboxsign.EventStoreFailed, 1)[0]; e.Op != "load" {
		t.Errorf("store failure %+v", e)
	}
	c := h.wantMetrics(map[string]float64{refreshOK: 1, refreshOKs: 1, "dropboxsign.token.save.failures{}": 1,
		"dropboxsign.store.errors{dropboxsign.store.operation=load}": 1, connected: 2, refused: 0, disconnected: 0, dropped: 0})
	h.tokenSpans(1)
	h.noSecrets(c)
}

// A 401 from the API for an unexpired token: the stored token, loaded, is
// adopted; then one invalidation, and the refresh it causes runs under the
// span of the request that got the 401.
func TestAnInvalidation(t *testing.T) {
	h := newHarness(t)
	store := dropboxsigntest.NewStore()
	store.Save(context.Background(), "grace", nil, h.srv.IssueToken())
	a := h.accounts(store)
	fault := dropboxsigntest.EnvelopeError(401, "unauthorized", "Unauthorized api key.")
	fault.Count = 1
	h.srv.InjectAPIFault(fault)
	ctx, caller := h.caller("GET /contracts")
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.AccountURL(), nil)
	resp, err := a.Client("grace").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	caller.End()
	if resp.StatusCode != 200 {
		t.Fatalf("the replay: %d", resp.StatusCode)
	}
	h.rec.waitFor(t, dropboxsign.EventInvalidated, 1)
	e := h.rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]
	c := h.wantMetrics(map[string]float64{
		"dropboxsign.token.adoptions{}":     1, // the stored token, loaded for the first request
		"dropboxsign.token.invalidations{}": 1, refreshOK: 1, refreshOKs: 1, connected: 1, refused: 0, disconnected: 0, dropped: 0})
	checkSpan(t, h.tokenSpans(1)[0], spanWant{name: refreshSpan, parent: caller.SpanContext(), event: e,
		attrs: withRate(t, map[string]string{
			"dropboxsign.token.operation": "refresh", "dropboxsign.account": "grace",
			"dropboxsign.outcome": "success", "http.response.status_code": "200"}, e)})
	h.noSecrets(c)
}

// A refresh in the background, for a token in its expiry window: the caller
// leaves at once, so its span is not the refresh's parent; the source's
// context has none, so the refresh's span is a root. A lone source has no
// account, and no Accounts to report.
func TestABackgroundRefresh(t *testing.T) {
	h := newHarness(t)
	tok := h.srv.IssueToken()
	tok.Expiry = time.Now().Add(2 * time.Minute) // in the 5-minute window
	ts := dropboxsign.NewTokenSource(h.ctx, h.srv.Config(), tok, h.options()...)
	ctx, caller := h.caller("GET /contracts")
	if got, err := ts.TokenContext(ctx); err != nil || got.AccessToken != tok.AccessToken {
		t.Fatalf("the current token at once: %v", err)
	}
	caller.End()
	e := h.rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]
	c := h.wantMetrics(map[string]float64{refreshOK: 1, refreshOKs: 1})
	s := h.tokenSpans(1)[0]
	checkSpan(t, s, spanWant{name: refreshSpan, event: e,
		attrs: withRate(t, map[string]string{
			"dropboxsign.token.operation": "refresh",
			"dropboxsign.outcome":         "success", "http.response.status_code": "200"}, e)})
	if s.SpanContext().TraceID() == caller.SpanContext().TraceID() {
		t.Error("the background refresh is in the caller's trace")
	}
	h.noSecrets(c)
}

// The options about account keys: in metrics when asked (high
// cardinality), out of spans when asked.
func TestAccountOptions(t *testing.T) {
	h := newHarness(t, oteldropboxsign.WithAccountInMetrics(), oteldropboxsign.WithoutAccountInSpans())
	store := dropboxsigntest.NewStore()
	store.Save(context.Background(), "heidi", nil, expired(h.srv.IssueToken()))
	a := h.accounts(store)
	ctx, caller := h.caller("GET /contracts")
	if _, err := a.TokenSource("heidi").TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	caller.End()
	e := h.rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]
	c := h.wantMetrics(map[string]float64{
		"dropboxsign.token.requests{dropboxsign.account=heidi,dropboxsign.outcome=success,dropboxsign.token.operation=refresh}":         1,
		"dropboxsign.token.request.duration{dropboxsign.account=heidi,dropboxsign.outcome=success,dropboxsign.token.operation=refresh}": 1,
		connected: 1, refused: 0, disconnected: 0, dropped: 0, // the gauges sum over accounts
	})
	checkSpan(t, h.tokenSpans(1)[0], spanWant{name: refreshSpan, parent: caller.SpanContext(), event: e,
		attrs: withRate(t, map[string]string{
			"dropboxsign.token.operation": "refresh",
			"dropboxsign.outcome":         "success", "http.response.status_code": "200"}, e)})
	h.noSecrets(c)
}

// Accounts registered for the gauges add up, and leave when unregistered.
func TestRegisterAccounts(t *testing.T) {
	h := newHarness(t)
	store := dropboxsigntest.NewStore()
	a, b := h.accounts(store), h.accounts(store)
	unregister := h.obs.RegisterAccounts(b) // again: counted once
	a.TokenSource("ivan")
	b.TokenSource("ivan")
	b.TokenSource("judy")
	h.wantMetrics(map[string]float64{connected: 3, refused: 0, disconnected: 0, dropped: 0})
	unregister()
	h.wantMetrics(map[string]float64{connected: 1, refused: 0, disconnected: 0, dropped: 0})
	h.obs.RegisterAccounts(nil)() // nothing to register, nothing to undo
}

// A token request's event that comes without the span the Observer started
// (the core abandoned a RequestStarted that took too long, say) is counted,
// and ends no span: the one in its context is the caller's.
func TestAnEventWithoutItsSpanEndsNoOtherSpan(t *testing.T) {
	h := newHarness(t)
	ctx, caller := h.caller("GET /contracts")
	h.obs.Observe(ctx, dropboxsign.Event{Kind: dropboxsign.EventTokenRequest, Op: "refresh", Time: time.Now(), Duration: time.Second, Status: 200})
	if !caller.IsRecording() {
		t.Error("the caller's span was ended")
	}
	caller.End()
	if got := h.collect().points[refreshOK]; got != 1 {
		t.Errorf("%v requests counted, want 1", got)
	}
	if n := len(h.spans.Ended()); n != 1 {
		t.Errorf("%d spans, want the caller's", n)
	}
}
