package oteldropboxsign_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// error.type is one of a short, documented list whatever the answer: an
// unknown error name from a server counts as its status, never as itself.
func TestErrorTypeIsBounded(t *testing.T) {
	failed := func(status int, name string, class dropboxsign.Class, err error) dropboxsign.Event {
		return dropboxsign.Event{Kind: dropboxsign.EventTokenRequest, Op: "refresh", Time: time.Now(),
			Status: status, ErrorName: name, Class: class, Err: err, RateLimit: dropboxsign.RateLimit{Limit: -1, Remaining: -1}}
	}
	boom := errors.New("boom")
	for _, c := range []struct {
		e    dropboxsign.Event
		want string
	}{
		{failed(400, "invalid_grant", dropboxsign.Reauthorize, boom), "invalid_grant"},
		{failed(401, "invalid_client", dropboxsign.Misconfigured, boom), "invalid_client"},
		{failed(400, "a name no one knows, perhaps long", dropboxsign.Misconfigured, boom), "400"},
		{failed(502, "", dropboxsign.Temporary, boom), "502"},
		{failed(200, "", dropboxsign.Temporary, boom), "invalid_response"},
		{failed(0, "", dropboxsign.Temporary, &url.Error{Op: "Post", URL: "https://x", Err: timeoutError{}}), "timeout"},
		{failed(0, "", dropboxsign.Temporary, context.DeadlineExceeded), "timeout"},
		{failed(0, "", dropboxsign.Temporary, &url.Error{Op: "Post", URL: "https://x", Err: boom}), "network"},
		{failed(0, "", dropboxsign.Misconfigured, boom), "configuration"},
		{failed(0, "", dropboxsign.Reauthorize, boom), "_OTHER"},
	} {
		h := newHarness(t)
		h.obs.Observe(context.Background(), c.e)
		key := "dropboxsign.token.requests{dropboxsign.outcome=" + map[dropboxsign.Class]string{
			dropboxsign.Temporary: "temporary", dropboxsign.Reauthorize: "reauthorize", dropboxsign.Misconfigured: "misconfigured"}[c.e.Class] +
			",dropboxsign.token.operation=refresh,error.type=" + c.want + "}"
		if got := h.collect().points; got[key] != 1 || len(got) != 2 {
			t.Errorf("%d %q %v: %v; want %s", c.e.Status, c.e.ErrorName, c.e.Err, got, key)
		}
	}
}

// A token endpoint that does not answer: a network error, for real.
func TestANetworkError(t *testing.T) {
	h := newHarness(t)
	conf := h.srv.Config()
	tok := expired(h.srv.IssueToken())
	h.srv.Close() // nothing listens there any more
	ts := dropboxsign.NewTokenSource(h.ctx, conf, tok, h.options()...)
	ctx, caller := h.caller("GET /contracts")
	if _, err := ts.TokenContext(ctx); dropboxsign.Classify(err) != dropboxsign.Temporary {
		t.Fatalf("no answer: %v", err)
	}
	caller.End()
	e := h.rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]
	c := h.wantMetrics(map[string]float64{
		"dropboxsign.token.requests{dropboxsign.outcome=temporary,dropboxsign.token.operation=refresh,error.type=network}":         1,
		"dropboxsign.token.request.duration{dropboxsign.outcome=temporary,dropboxsign.token.operation=refresh,error.type=network}": 1,
	})
	checkSpan(t, h.tokenSpans(1)[0], spanWant{name: refreshSpan, parent: caller.SpanContext(), event: e, failed: true,
		attrs: map[string]string{"dropboxsign.token.operation": "refresh", "dropboxsign.outcome": "temporary",
			"error.type": "network", "dropboxsign.failures": "1", "dropboxsign.retry.delay": retryDelay(e)}})
	h.noSecrets(c)
}
