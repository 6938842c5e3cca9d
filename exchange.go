package dropboxsign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// DefaultTimeout bounds every token request whose context has no deadline of
// its own, so that a hung token endpoint cannot hang its callers forever.
const DefaultTimeout = 30 * time.Second

// Exchange converts an authorization code into a token, as
// [oauth2.Config.Exchange] does for standard providers. state must be the
// value given to [oauth2.Config.AuthCodeURL] and returned to the callback:
// Dropbox Sign requires it in the request.
//
// It sends a JSON POST to c.Endpoint.TokenURL with client_id, client_secret,
// code, state and grant_type "authorization_code". The HTTP client comes from
// ctx (the [oauth2.HTTPClient] key), else [http.DefaultClient]; without a
// deadline in ctx the request is bounded by [DefaultTimeout].
//
// A code is exchanged once per process: calls with the same code and state
// at the same time (a callback submitted twice: a double click, a
// browser's retry) share one request, and a call for a code exchanged less
// than a minute ago gets that exchange's token, without a request (each
// caller gets a copy of its own). A failure is shared by the calls that
// waited for it, and not remembered. Each caller's ctx bounds its own wait;
// the request goes on for the others ([Accounts.Login] exchanges the same
// way). So within that minute a replayed callback is not refused by
// Dropbox Sign's single use of codes: check the state against the one you
// bound to the user's browser session before calling Exchange, as always;
// a callback replayed from another session then never reaches it.
//
// An error answer from the endpoint is returned as an [*oauth2.RetrieveError]
// itself, as [oauth2.Config.Exchange] returns it, with ErrorCode and
// ErrorDescription filled from either of Dropbox Sign's error shapes
// ([Classify] reads a refused code, 400 invalid_request, as Misconfigured;
// [Accounts.Login] wraps it so that it reads Reauthorize). A 2xx
// answer that is not a usable token (malformed JSON, a field of the wrong
// type, an access token that could not be sent in a header, a state that is
// not the one sent, a token that is the client secret or the code: an echo
// of the request) is an error that wraps one (use [errors.As]); [Classify]
// says Temporary. No credential of the request is ever returned as a token,
// nor kept among the token's extras (fields of the answer that repeat one
// are dropped).
//
// No error text, nor the RetrieveError's Body, ErrorDescription or Response
// status and headers, contains the client secret, the code or a token, even
// when the endpoint or a proxy echoes them back; texts hold no control
// characters (but for the line break x/oauth2's RetrieveError puts before a
// body) and are bounded in length, and Body keeps at most 4 KiB (and an
// ellipsis where it was cut).
func Exchange(ctx context.Context, c *oauth2.Config, code, state string) (*oauth2.Token, error) {
	tc, err := newTokenClient(c, DefaultTimeout, time.Now)
	if err != nil {
		return nil, err
	}
	tok, _, err := tc.exchangeOnce(ctx, code, state)
	return tok, err
}

// Refresh obtains a new token with a refresh token. It is the raw protocol
// call, made each time it is called: most programs use [NewTokenSource],
// which calls it when needed, shares one request among all the sources of
// the process that present the same refresh token (and, for a minute, gives
// a source presenting one the process has spent the token that brought),
// and keeps the newest refresh token.
//
// It sends a JSON POST to c.Endpoint.TokenURL with "refresh" added to the
// URL's query, carrying grant_type "refresh_token", refresh_token, client_id
// and client_secret. If the response omits refresh_token, the returned token
// keeps refreshToken; an answer that gives refreshToken back as the access
// token, or the client secret as either token, is an echo of the request,
// refused as for [Exchange]. Contexts and errors are as for [Exchange].
func Refresh(ctx context.Context, c *oauth2.Config, refreshToken string) (*oauth2.Token, error) {
	tc, err := newTokenClient(c, DefaultTimeout, time.Now)
	if err != nil {
		return nil, err
	}
	return tc.refresh(ctx, refreshToken)
}

// errNoClientSecret is the error of a token request that would go without
// a client secret: Dropbox Sign refuses every one (invalid_client), and
// the operator should be told why, without a request.
var errNoClientSecret = &configError{"dropboxsign: oauth2.Config has an empty ClientSecret (or only spaces): Dropbox Sign needs the API app's client secret for every token request (an unset environment variable or secret?)"}

// tokenClient holds what token requests need from an oauth2.Config, copied so
// that later changes to the Config cannot race with requests.
type tokenClient struct {
	clientID     string
	clientSecret string
	exchangeURL  string
	refreshURL   string
	timeout      time.Duration
	now          func() time.Time
	http         *http.Client // nil: the one in each call's context (oauth2.HTTPClient)
	grants       *grantTable  // the process's, unless a test gives its own
}

func newTokenClient(c *oauth2.Config, timeout time.Duration, now func() time.Time) (*tokenClient, error) {
	if c == nil {
		return nil, configErrorf("nil *oauth2.Config")
	}
	if c.ClientID == "" {
		return nil, configErrorf("oauth2.Config has no ClientID")
	}
	exchange, refresh, err := tokenURLs(c.Endpoint.TokenURL)
	if err != nil {
		return nil, err
	}
	return &tokenClient{
		clientID:     c.ClientID,
		clientSecret: c.ClientSecret,
		exchangeURL:  exchange,
		refreshURL:   refresh,
		timeout:      timeout,
		now:          now,
		grants:       grants,
	}, nil
}

// The request bodies, field for field and in the order of Dropbox Sign's
// OAuthTokenGenerateRequest and OAuthTokenRefreshRequest.
type exchangeRequest struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Code         string `json:"code"`
	State        string `json:"state"`
	GrantType    string `json:"grant_type"`
}

type refreshRequest struct {
	GrantType    string `json:"grant_type"`
	RefreshToken string `json:"refresh_token"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// exchangeOnce is exchange, once per process for one code and state: a
// callback submitted twice (a double click, a browser's retry) exchanges
// the code once, and both get the token (see grants.go).
// requested reports whether this call's own request brought the outcome
// (false: it shared another call's, or made none).
func (tc *tokenClient) exchangeOnce(ctx context.Context, code, state string) (tok *oauth2.Token, requested bool, err error) {
	if code == "" || state == "" {
		tok, err = tc.exchange(ctx, code, state) // its error, without a request
		return tok, false, err
	}
	k := newGrantKey("exchange", tc.exchangeURL, tc.clientID, code, state)
	return tc.grants.spend(ctx, k, tc.timeout, func(ctx context.Context) (*oauth2.Token, error) {
		return tc.exchange(ctx, code, state)
	})
}

// refreshOnce is refresh, once per process for one refresh token (see
// grants.go): a refresh token this process spent less than a minute ago
// brings, without a request, the token its request brought, or the newest
// this process has derived from it. requested reports whether this call's
// own request brought the token.
func (tc *tokenClient) refreshOnce(ctx context.Context, refreshToken string, held ...string) (tok *oauth2.Token, requested bool, err error) {
	if refreshToken == "" || credentialProblem(refreshToken) != "" {
		tok, err = tc.refresh(ctx, refreshToken, held...) // its error, without a request
		return tok, err == nil, err
	}
	k := newGrantKey("refresh", tc.refreshURL, tc.clientID, refreshToken)
	tok, requested, err = tc.grants.spend(ctx, k, tc.timeout, func(ctx context.Context) (*oauth2.Token, error) {
		return tc.refresh(ctx, refreshToken, held...)
	})
	if err != nil {
		return nil, requested, err
	}
	// Its refresh token may have been spent since, in this process too:
	// follow the chain to the newest token (a bounded walk).
	for range 8 {
		next := tc.grants.recall(newGrantKey("refresh", tc.refreshURL, tc.clientID, tok.RefreshToken), grantClock())
		if next == nil || next.RefreshToken == tok.RefreshToken {
			break
		}
		tok, requested = copyToken(next), false
	}
	return tok, requested, nil
}

func (tc *tokenClient) exchange(ctx context.Context, code, state string) (*oauth2.Token, error) {
	if code == "" {
		return nil, errors.New("dropboxsign: exchange: empty authorization code")
	}
	if state == "" {
		return nil, errors.New("dropboxsign: exchange: empty state (pass the state given to AuthCodeURL)")
	}
	if strings.TrimSpace(tc.clientSecret) == "" {
		return nil, errNoClientSecret
	}
	body := exchangeRequest{tc.clientID, tc.clientSecret, code, state, "authorization_code"}
	q := requestSecrets{clientSecret: tc.clientSecret, code: code}
	return tc.post(ctx, "exchange", tc.exchangeURL, body, state, newRedactor(tc.clientSecret, code, state), q)
}

// refresh presents refreshToken. held are other credentials the caller holds
// (the access token being replaced): an echo of them is redacted too.
func (tc *tokenClient) refresh(ctx context.Context, refreshToken string, held ...string) (*oauth2.Token, error) {
	if refreshToken == "" {
		return nil, errNoRefreshToken
	}
	if problem := credentialProblem(refreshToken); problem != "" {
		return nil, fmt.Errorf("%w: it %s", errUnsendableRefreshToken, problem)
	}
	if strings.TrimSpace(tc.clientSecret) == "" {
		return nil, errNoClientSecret
	}
	body := refreshRequest{"refresh_token", refreshToken, tc.clientID, tc.clientSecret}
	q := requestSecrets{clientSecret: tc.clientSecret, refreshToken: refreshToken}
	tok, err := tc.post(ctx, "refresh", tc.refreshURL, body, "", newRedactor(append(held, tc.clientSecret, refreshToken)...), q)
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken
	}
	return tok, nil
}

var (
	errNoRefreshToken         = errors.New("dropboxsign: refresh: the token has no refresh token")
	errUnsendableRefreshToken = errors.New("dropboxsign: refresh: the refresh token cannot be sent (corrupt?)")
)

// post sends one token request and decodes its answer. r knows the secrets
// the request carries: no error text may show them, even if the server or a
// proxy echoes them back; q names them, so that none comes back as a token.
func (tc *tokenClient) post(ctx context.Context, op, target string, body any, wantState string, r *redactor, q requestSecrets) (*oauth2.Token, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, tc.timeout)
		defer cancel()
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: %s: encoding the request: %s", op, r.text(err.Error()))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: %s: %s", op, r.text(err.Error()))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	sent := tc.now()
	resp, err := tc.httpClient(ctx).Do(req)
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: %s: %w", op, r.requestError(err, http.MethodPost, target))
	}
	defer resp.Body.Close()
	return decodeAnswer(op, resp, sent, wantState, r, q)
}

// httpClient returns the HTTP client for token requests: the source's, else
// the context's, as x/oauth2 does; with redirects turned off: a token
// endpoint has no reason to redirect, and following one would re-send the
// secrets in the body to another URL.
func (tc *tokenClient) httpClient(ctx context.Context) *http.Client {
	base := tc.http
	if base == nil {
		base = contextClient(ctx)
	}
	hc := *base
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

func contextClient(ctx context.Context) *http.Client {
	if ctx != nil {
		if hc, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && hc != nil {
			return hc
		}
	}
	return http.DefaultClient
}
