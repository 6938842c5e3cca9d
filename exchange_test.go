package dropboxsign_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// authorize walks the consent page of the fake and returns the code that
// reached the callback.
func authorize(t *testing.T, srv *dropboxsigntest.Server, conf *oauth2.Config, state string) string {
	t.Helper()
	resp, err := srv.Client().Get(conf.AuthCodeURL(state))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cb struct{ Code, State, Error string }
	if err := json.NewDecoder(resp.Body).Decode(&cb); err != nil {
		t.Fatal(err)
	}
	if cb.State != state || cb.Code == "" {
		t.Fatalf("callback got code %q state %q error %q", cb.Code, cb.State, cb.Error)
	}
	return cb.Code
}

func TestExchangeWireFormat(t *testing.T) {
	srv := newServer(t)
	conf := srv.Config()
	code := authorize(t, srv, conf, "900e06e2")

	before := time.Now()
	tok, err := dropboxsign.Exchange(testContext(t), conf, code, "900e06e2")
	if err != nil {
		t.Fatal(err)
	}
	reqs := srv.TokenRequests()
	if len(reqs) != 1 {
		t.Fatalf("token requests = %d, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/oauth/token" || r.RawQuery != "" || r.ContentType != "application/json" {
		t.Errorf("request = %s %s?%s (%s), want POST /oauth/token with no query, application/json", r.Method, r.Path, r.RawQuery, r.ContentType)
	}
	want := fmt.Sprintf(`{"client_id":%q,"client_secret":%q,"code":%q,"state":"900e06e2","grant_type":"authorization_code"}`,
		conf.ClientID, conf.ClientSecret, code)
	if string(r.Body) != want {
		t.Errorf("body\n got %s\nwant %s", r.Body, want)
	}
	if r.Header.Get("Authorization") != "" {
		t.Error("exchange sent an Authorization header; the secret belongs in the body")
	}

	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" {
		t.Errorf("token = %+v", tok)
	}
	if tok.ExpiresIn != 3600 {
		t.Errorf("ExpiresIn = %d, want 3600", tok.ExpiresIn)
	}
	if lo, hi := before.Add(time.Hour), time.Now().Add(time.Hour); tok.Expiry.Before(lo) || tok.Expiry.After(hi) {
		t.Errorf("Expiry = %v, want within [%v, %v]", tok.Expiry, lo, hi)
	}
	if got := tok.Extra("state"); got != "900e06e2" {
		t.Errorf(`Extra("state") = %v`, got)
	}
	rl, ok := dropboxsign.TokenRateLimit(tok)
	if !ok || rl.Limit != 100 || rl.Remaining < 0 || rl.Reset.IsZero() {
		t.Errorf("TokenRateLimit = %+v, %v", rl, ok)
	}
}

func TestRefreshWireFormat(t *testing.T) {
	srv := newServer(t)
	conf := srv.Config()
	old := srv.IssueToken()

	tok, err := dropboxsign.Refresh(testContext(t), conf, old.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	r := srv.TokenRequests()[0]
	if r.Method != "POST" || r.Path != "/oauth/token" || r.RawQuery != "refresh" || r.ContentType != "application/json" {
		t.Errorf("request = %s %s?%s (%s), want POST /oauth/token?refresh, application/json", r.Method, r.Path, r.RawQuery, r.ContentType)
	}
	want := fmt.Sprintf(`{"grant_type":"refresh_token","refresh_token":%q,"client_id":%q,"client_secret":%q}`,
		old.RefreshToken, conf.ClientID, conf.ClientSecret)
	if string(r.Body) != want {
		t.Errorf("body\n got %s\nwant %s", r.Body, want)
	}
	if tok.AccessToken == old.AccessToken || tok.RefreshToken == old.RefreshToken || tok.RefreshToken == "" {
		t.Errorf("refresh did not rotate: old %+v new %+v", old, tok)
	}
}

func TestRefreshKeepsTheTokenURLQuery(t *testing.T) {
	for _, tc := range []struct{ query, refresh, exchange string }{
		{"?tenant=eu", "tenant=eu&refresh", "tenant=eu"},
		{"?refresh", "refresh", ""},
		{"?refresh&x=1", "x=1&refresh", "x=1"},
	} {
		srv := newServer(t)
		conf := srv.Config()
		conf.Endpoint.TokenURL += tc.query
		if _, err := dropboxsign.Refresh(testContext(t), conf, srv.IssueToken().RefreshToken); err != nil {
			t.Fatal(err)
		}
		code := authorize(t, srv, conf, "s")
		if _, err := dropboxsign.Exchange(testContext(t), conf, code, "s"); err != nil {
			t.Fatal(err)
		}
		reqs := srv.TokenRequests()
		if reqs[0].RawQuery != tc.refresh || reqs[1].RawQuery != tc.exchange {
			t.Errorf("TokenURL query %q: refresh query %q, exchange query %q; want %q and %q",
				tc.query, reqs[0].RawQuery, reqs[1].RawQuery, tc.refresh, tc.exchange)
		}
	}
}

func TestRefreshKeepsRefreshTokenWhenResponseOmitsIt(t *testing.T) {
	srv := newServer(t)
	srv.SetOmitRefreshToken(true)
	old := srv.IssueToken()
	tok, err := dropboxsign.Refresh(testContext(t), srv.Config(), old.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != old.RefreshToken {
		t.Errorf("RefreshToken = %q, want the old %q", tok.RefreshToken, old.RefreshToken)
	}
}

func TestResponseParsing(t *testing.T) {
	const secs = 7200
	for _, tc := range []struct {
		name, body string
		want       time.Duration
		extraKey   string
		extraValue any
	}{
		{"number", `{"access_token":"a","expires_in":7200}`, secs * time.Second, "", nil},
		{"numeric string", `{"access_token":"a","expires_in":" 7200 "}`, secs * time.Second, "", nil},
		{"fractional, rounded up", `{"access_token":"a","expires_in":7199.1}`, secs * time.Second, "", nil},
		{"epoch", fmt.Sprintf(`{"access_token":"a","expires_in":%d}`, time.Now().Unix()+secs), secs * time.Second, "", nil},
		{"no expiry", `{"access_token":"a"}`, 0, "", nil},
		{"null expiry", `{"access_token":"a","expires_in":null}`, 0, "", nil},
		{"lowercase type, extras", `{"access_token":"a","token_type":"bearer","expires_in":7200,"scope":"basic_account_info","n":1e400}`, secs * time.Second, "scope", "basic_account_info"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			srv.InjectFault(dropboxsigntest.Fault{Status: 200, Body: tc.body, Count: 1})
			sent := time.Now()
			tok, err := dropboxsign.Refresh(testContext(t), srv.Config(), "rt")
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == 0 && (!tok.Expiry.IsZero() || tok.ExpiresIn != 0) {
				t.Errorf("Expiry = %v, ExpiresIn = %d, want none", tok.Expiry, tok.ExpiresIn)
			}
			if tc.want > 0 && (tok.ExpiresIn < secs-1 || tok.ExpiresIn > secs || tok.Expiry.Sub(sent) < tc.want-time.Second || tok.Expiry.Sub(sent) > tc.want+time.Minute) {
				t.Errorf("Expiry in %v, ExpiresIn = %d, want %v", tok.Expiry.Sub(sent), tok.ExpiresIn, tc.want)
			}
			if tok.Type() != "Bearer" {
				t.Errorf("Type() = %q", tok.Type())
			}
			if tok.RefreshToken != "rt" {
				t.Errorf("RefreshToken = %q, want the one presented", tok.RefreshToken)
			}
			if tc.extraKey != "" && tok.Extra(tc.extraKey) != tc.extraValue {
				t.Errorf("Extra(%q) = %v", tc.extraKey, tok.Extra(tc.extraKey))
			}
		})
	}
}

func TestErrorResponses(t *testing.T) {
	reset := time.Now().Add(42 * time.Second).Truncate(time.Second)
	huge := `{"access_token":"` + strings.Repeat("a", 1<<20) + `"}`
	for _, tc := range []struct {
		name        string
		fault       dropboxsigntest.Fault
		status      int
		code, desc  string
		textHas     string
		rateLimited bool
	}{
		{"envelope", dropboxsigntest.EnvelopeError(403, "forbidden", "Not allowed."), 403, "forbidden", "Not allowed.", `oauth2: "forbidden" "Not allowed."`, false},
		{"oauth", dropboxsigntest.OAuthError(400, "invalid_grant", "The refresh token is invalid."), 400, "invalid_grant", "The refresh token is invalid.", "invalid_grant", false},
		{"rate limited", dropboxsigntest.RateLimited(reset), 429, "exceeded_rate", "Too many requests.", `oauth2: "exceeded_rate"`, true},
		{"html 502", dropboxsigntest.BadGateway(), 502, "", "", "oauth2: cannot fetch token: 502 Bad Gateway\nResponse: <html><head><title>502 Bad Gateway", false},
		{"error in a 200", dropboxsigntest.Fault{Status: 200, Body: `{"error":"invalid_request","error_description":"Bad code."}`}, 200, "invalid_request", "Bad code.", `oauth2: "invalid_request" "Bad code."`, false},
		{"envelope without name", dropboxsigntest.Fault{Status: 200, Body: `{"error":{}}`}, 200, "", "", "200 OK\nResponse: {\"error\":{}}", false},
		{"empty 500", dropboxsigntest.Fault{Status: 500}, 500, "", "", "oauth2: cannot fetch token: 500 Internal Server Error", false},
		{"not json 200", dropboxsigntest.Fault{Status: 200, Body: "OK"}, 200, "", "", "response is not a JSON object", false},
		{"json array", dropboxsigntest.Fault{Status: 200, Body: `["access_token"]`}, 200, "", "", "response is not a JSON object", false},
		{"truncated json", dropboxsigntest.Fault{Status: 200, Body: `{"access_token":"a","expi`}, 200, "", "", "response is not a JSON object", false},
		{"no access token", dropboxsigntest.Fault{Status: 200, Body: `{"token_type":"Bearer"}`}, 200, "", "", "malformed token response: access_token is missing or empty", false},
		{"empty access token", dropboxsigntest.Fault{Status: 200, Body: `{"access_token":""}`}, 200, "", "", "access_token is missing or empty", false},
		{"access token number", dropboxsigntest.Fault{Status: 200, Body: `{"access_token":12}`}, 200, "", "", "access_token is not a string", false},
		{"refresh token object", dropboxsigntest.Fault{Status: 200, Body: `{"access_token":"a","refresh_token":{}}`}, 200, "", "", "refresh_token is not a string", false},
		{"negative expiry", dropboxsigntest.Fault{Status: 200, Body: `{"access_token":"a","expires_in":-5}`}, 200, "", "", "expires_in is negative", false},
		{"absurd expiry", dropboxsigntest.Fault{Status: 200, Body: `{"access_token":"a","expires_in":1e300}`}, 200, "", "", "expires_in is larger than", false},
		{"word expiry", dropboxsigntest.Fault{Status: 200, Body: `{"access_token":"a","expires_in":"soon"}`}, 200, "", "", "expires_in is not a number", false},
		{"past epoch", dropboxsigntest.Fault{Status: 200, Body: fmt.Sprintf(`{"access_token":"a","expires_in":%d}`, time.Now().Unix()-60)}, 200, "", "", "expires_in is a time in the past", false},
		{"huge body", dropboxsigntest.Fault{Status: 200, Body: huge}, 200, "", "", "response body exceeds 1048576 bytes", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			tc.fault.Count = 1
			srv.InjectFault(tc.fault)
			tok, err := dropboxsign.Refresh(testContext(t), srv.Config(), "rt-secret-value")
			if err == nil {
				t.Fatalf("got token %+v, want an error", tok)
			}
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T) does not wrap *oauth2.RetrieveError", err, err)
			}
			// An answer that reports an error is the RetrieveError itself,
			// as x/oauth2 returns it: code that type-asserts keeps working.
			if _, direct := err.(*oauth2.RetrieveError); direct != (tc.status >= 300 || tc.code != "" || strings.Contains(tc.textHas, "Response:")) {
				t.Errorf("%T returned; want *oauth2.RetrieveError itself exactly for answers that report an error", err)
			}
			if re.Response == nil || re.Response.StatusCode != tc.status {
				t.Errorf("Response = %v, want status %d", re.Response, tc.status)
			}
			if re.ErrorCode != tc.code || re.ErrorDescription != tc.desc {
				t.Errorf("ErrorCode, ErrorDescription = %q, %q; want %q, %q", re.ErrorCode, re.ErrorDescription, tc.code, tc.desc)
			}
			if len(re.Body) > 1<<20 {
				t.Errorf("Body holds %d bytes, more than 1 MiB", len(re.Body))
			}
			if !strings.Contains(err.Error(), tc.textHas) {
				t.Errorf("error text %q lacks %q", err, tc.textHas)
			}
			if strings.Contains(err.Error(), "rt-secret-value") || strings.Contains(err.Error(), srv.ClientSecret) {
				t.Errorf("error text %q carries a secret", err)
			}
			rl, ok := dropboxsign.ErrorRateLimit(err)
			if ok != tc.rateLimited {
				t.Fatalf("ErrorRateLimit ok = %v, want %v", ok, tc.rateLimited)
			}
			if ok && (rl.Remaining != 0 || rl.Limit != 100 || !rl.Reset.Equal(reset)) {
				t.Errorf("ErrorRateLimit = %+v, want 0 of 100 left until %v", rl, reset)
			}
		})
	}
}

func TestErrorTextRedactsEchoedSecrets(t *testing.T) {
	srv := newServer(t)
	const refreshToken = "rt-0123456789abcdef"
	srv.InjectFault(dropboxsigntest.OAuthError(400, "invalid_grant",
		"Refresh token "+refreshToken+" with secret "+srv.ClientSecret+" rejected.\n\x1b[31mforged log line"))
	_, err := dropboxsign.Refresh(testContext(t), srv.Config(), refreshToken)
	if err == nil {
		t.Fatal("want an error")
	}
	text := err.Error()
	if strings.Contains(text, refreshToken) || strings.Contains(text, srv.ClientSecret) {
		t.Errorf("error text carries a secret: %q", text)
	}
	if !strings.Contains(text, "[redacted]") || strings.ContainsAny(text, "\n\x1b") {
		t.Errorf("error text not sanitized: %q", text)
	}

	srv.ClearFaults()
	srv.InjectFault(dropboxsigntest.OAuthError(400, "invalid_request", "code code-xyz is wrong"))
	_, err = dropboxsign.Exchange(testContext(t), srv.Config(), "code-xyz", "state")
	if err == nil || strings.Contains(err.Error(), "code-xyz") {
		t.Errorf("exchange error %q carries the code", err)
	}
}

func TestInsecureTokenURLIsRefusedWithoutConnecting(t *testing.T) {
	counter := &countingTransport{}
	ctx := context.WithValue(testContext(t), oauth2.HTTPClient, &http.Client{Transport: counter})
	for _, u := range []string{"http://app.hellosign.example/oauth/token", "http://10.0.0.1/oauth/token"} {
		conf := &oauth2.Config{ClientID: "id", ClientSecret: "secret", Endpoint: oauth2.Endpoint{TokenURL: u}}
		_, err := dropboxsign.Refresh(ctx, conf, "rt")
		if !errors.Is(err, dropboxsign.ErrInsecureEndpoint) {
			t.Errorf("%s: err = %v, want ErrInsecureEndpoint", u, err)
		}
		_, err = dropboxsign.Exchange(ctx, conf, "code", "state")
		if !errors.Is(err, dropboxsign.ErrInsecureEndpoint) {
			t.Errorf("%s: exchange err = %v, want ErrInsecureEndpoint", u, err)
		}
	}
	if n := counter.n.Load(); n != 0 {
		t.Errorf("%d requests were sent", n)
	}
}

func TestBadArgumentsGiveClearErrors(t *testing.T) {
	ctx := testContext(t)
	good := &oauth2.Config{ClientID: "id", Endpoint: dropboxsign.Endpoint}
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"nil config", func() error { _, err := dropboxsign.Refresh(ctx, nil, "rt"); return err }, "nil *oauth2.Config"},
		{"no client id", func() error {
			_, err := dropboxsign.Refresh(ctx, &oauth2.Config{Endpoint: dropboxsign.Endpoint}, "rt")
			return err
		}, "no ClientID"},
		{"no token URL", func() error { _, err := dropboxsign.Refresh(ctx, &oauth2.Config{ClientID: "id"}, "rt"); return err }, "no Endpoint.TokenURL"},
		{"bad scheme", func() error {
			_, err := dropboxsign.Refresh(ctx, &oauth2.Config{ClientID: "id", Endpoint: oauth2.Endpoint{TokenURL: "ftp://x/"}}, "rt")
			return err
		}, "scheme must be https"},
		{"empty refresh token", func() error { _, err := dropboxsign.Refresh(ctx, good, ""); return err }, "no refresh token"},
		{"empty code", func() error { _, err := dropboxsign.Exchange(ctx, good, "", "s"); return err }, "empty authorization code"},
		{"empty state", func() error { _, err := dropboxsign.Exchange(ctx, good, "c", ""); return err }, "empty state"},
	} {
		if err := tc.call(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestTokenCallsUseTheContextClientAndAlwaysHaveADeadline(t *testing.T) {
	srv := newServer(t)
	counter := &countingTransport{}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: counter})
	if _, err := dropboxsign.Refresh(ctx, srv.Config(), srv.IssueToken().RefreshToken); err != nil {
		t.Fatal(err)
	}
	if counter.n.Load() != 1 {
		t.Errorf("context client saw %d requests, want 1", counter.n.Load())
	}
	if !counter.hadDeadline.Load() {
		t.Error("token request had no deadline although the caller's context had none")
	}
}

func TestTokenCallsDoNotFollowRedirects(t *testing.T) {
	srv := newServer(t)
	elsewhere := newServer(t)
	srv.InjectFault(dropboxsigntest.Fault{Status: http.StatusTemporaryRedirect,
		Header: http.Header{"Location": {elsewhere.URL + "/oauth/token?refresh"}}})
	_, err := dropboxsign.Refresh(testContext(t), srv.Config(), "rt")
	if err == nil || !strings.Contains(err.Error(), "307") {
		t.Errorf("err = %v, want a 307 error", err)
	}
	if n := elsewhere.Stats().TokenRequests; n != 0 {
		t.Errorf("the redirect was followed: %d requests elsewhere", n)
	}
}

func TestExchangeRejectsAWrongState(t *testing.T) {
	srv := newServer(t)
	conf := srv.Config()
	code := authorize(t, srv, conf, "right")
	_, err := dropboxsign.Exchange(testContext(t), conf, code, "wrong")
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_request" {
		t.Errorf("err = %v, want invalid_request", err)
	}
}
