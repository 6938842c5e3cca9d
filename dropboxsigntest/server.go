// Package dropboxsigntest provides a fake Dropbox Sign server for tests, in
// the manner of net/http/httptest.
//
// A [Server] listens on a loopback address and speaks Dropbox Sign's OAuth
// 2.0 protocol exactly as package dropboxsign expects the real one to: the
// authorize page (for a browser, a consent page with Approve and Deny
// buttons; for any other client, an immediate redirect), the JSON code
// exchange at /oauth/token, the JSON refresh at /oauth/token?refresh, both
// error shapes and the rate-limit headers. The
// API routes an app calls first, /v3/account, /v3/signature_request/send
// and /v3/signature_request/list, accept only live bearer tokens and answer
// in Dropbox Sign's documented shapes; each account sees only the
// signature requests sent with its own grant's tokens. By default
// every refresh rotates the refresh token and the server rejects rotated
// ones, the strictest behaviour the real service may have.
//
// The server counts what it sees ([Server.Stats]), records every token
// request ([Server.TokenRequests]), every access token it issued
// ([Server.IssuedTokens]) and the API requests that presented each
// ([Server.APIUses]), and can be told to misbehave: slow token
// responses, injected error answers ([Server.InjectFault],
// [Server.InjectAPIFault]), short token lifetimes, revoked access tokens. All methods are safe for concurrent use.
package dropboxsigntest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Routes of the fake, relative to [Server.URL].
const (
	AuthorizePath = "/oauth/authorize"
	TokenPath     = "/oauth/token"
	CallbackPath  = "/callback" // the default callback; it answers with the code as JSON
	AccountPath   = "/v3/account"
)

// DefaultLifetime is the lifetime of access tokens until [Server.SetLifetime]
// changes it: an hour, as Dropbox Sign's documentation says is typical.
const DefaultLifetime = time.Hour

// Server is a fake Dropbox Sign. Create one with [NewServer] and Close it
// when done. Besides the OAuth routes it serves [AccountPath],
// [SignatureRequestSendPath] and [SignatureRequestListPath] to live bearer
// tokens: a request sent with one grant's token is listed for that grant's
// account only.
type Server struct {
	// URL is the base URL, http://127.0.0.1:port, with no trailing slash.
	URL string
	// ClientID and ClientSecret are the credentials the server accepts; the
	// Config method puts them in the configuration it hands out.
	ClientID     string
	ClientSecret string
	// AppName is the API app's name that the consent page shows a browser
	// ("Test App" unless set); set it before the first request.
	AppName string

	srv *httptest.Server

	mu          sync.Mutex
	lifetime    time.Duration
	latency     time.Duration
	rotate      bool
	omitRefresh bool
	denyConsent bool
	standard    bool // also accept x/oauth2's form-encoded refresh at the plain token URL
	callbackURL string
	faults      []Fault
	apiFaults   []Fault
	codes       map[string]codeGrant
	access      map[string]accessGrant
	refresh     map[string]refreshGrant
	nextAccount int
	secrets     []string // every credential issued, for Secrets
	stats       Stats
	requests    []TokenRequest
	apiUses     map[string]APIUse // bearer token → its API requests
	window      rateWindow
	hold        chan struct{} // while non-nil, token answers wait for it to close
	arrived     chan struct{} // closed and replaced at each token request

	// signatureRequests holds each account's sent signature requests,
	// oldest first (api.go).
	signatureRequests map[string][]signatureRequest
	// consentPages are the consent pages shown and not yet answered, by
	// their form token (consent.go).
	consentPages map[string]consentPage
}

type codeGrant struct {
	state   string
	account string
	expires time.Time
}

type accessGrant struct {
	account   string
	requested time.Time // when the token request that obtained it arrived
	issued    time.Time
	expires   time.Time
	refresh   bool // issued by a refresh
}

type refreshGrant struct {
	account string
	stale   bool // rotated away: presenting it again is an error
}

// Stats counts what the server has seen since it started.
type Stats struct {
	Authorizations     int // consents given at the authorize route
	TokenRequests      int // every request to the token route, faults included
	Exchanges          int // successful code exchanges
	Refreshes          int // successful refreshes
	Faults             int // token requests answered by an injected fault
	APIFaults          int // API requests answered by an injected fault
	StaleRefreshTokens int // refresh requests presenting a rotated-away refresh token
	APICalls           int // requests to the API routes
	APIRejected        int // API requests refused for a missing, unknown or expired token
}

// TokenRequest is one request to the token route, as received.
type TokenRequest struct {
	Time        time.Time // when it arrived
	Method      string
	Path        string
	RawQuery    string
	ContentType string
	Header      http.Header
	Body        []byte // at most 1 MiB
}

// maxRecorded bounds the request log, so that long soak tests stay small.
const maxRecorded = 10000

// NewServer starts a fake Dropbox Sign on a free loopback port.
func NewServer() *Server {
	return start(nil)
}

// NewServerOn starts a fake Dropbox Sign serving on ln, for a fake at an
// address of the caller's choosing (a fixed port, say, that a command line
// tool announces); [Server.Close] closes ln. Its URL is http:// and ln's
// address. Keep ln on a loopback address: the fake hands out its client
// secret and tokens to anyone who asks.
func NewServerOn(ln net.Listener) *Server {
	return start(ln)
}

// start starts a fake on ln, or on a free loopback port if ln is nil.
func start(ln net.Listener) *Server {
	s := &Server{
		ClientID:     "test-client-" + randomHex(6),
		ClientSecret: "test-secret-" + randomHex(12),
		AppName:      "Test App",
		lifetime:     DefaultLifetime,
		rotate:       true,
		codes:        map[string]codeGrant{},
		access:       map[string]accessGrant{},
		refresh:      map[string]refreshGrant{},
		apiUses:      map[string]APIUse{},
		arrived:      make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc(AuthorizePath, s.handleAuthorize)
	mux.HandleFunc(TokenPath, s.handleToken)
	mux.HandleFunc(CallbackPath, handleCallback)
	mux.HandleFunc("/v3/", s.handleAPI)
	if ln == nil {
		s.srv = httptest.NewServer(mux)
	} else {
		s.srv = httptest.NewUnstartedServer(mux)
		s.srv.Listener.Close() // the one it opened itself
		s.srv.Listener = ln
		s.srv.Start()
	}
	s.URL = s.srv.URL
	return s
}

// Close shuts the server down and blocks until all requests have finished;
// it first releases any held token responses.
func (s *Server) Close() {
	s.mu.Lock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
	s.mu.Unlock()
	s.srv.Close()
}

// Client returns an HTTP client for the server (no proxy, loopback only).
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Config returns an oauth2.Config for the server: its client credentials and
// an Endpoint whose URLs point at it, shaped like dropboxsign.Endpoint.
func (s *Server) Config() *oauth2.Config {
	return &oauth2.Config{
		ClientID:     s.ClientID,
		ClientSecret: s.ClientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   s.URL + AuthorizePath,
			TokenURL:  s.URL + TokenPath,
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
}

// AccountURL is the URL of the sample API route.
func (s *Server) AccountURL() string { return s.URL + AccountPath }

// SetLifetime sets the lifetime of access tokens issued from now on. It is
// reported in whole seconds as expires_in, as Dropbox Sign does, and enforced
// by the API route; it must be at least one second.
func (s *Server) SetLifetime(d time.Duration) {
	d = max(d.Truncate(time.Second), time.Second)
	s.mu.Lock()
	s.lifetime = d
	s.mu.Unlock()
}

// SetLatency delays every answer of the token route by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// SetRotation chooses whether a refresh issues a new refresh token and
// rejects the old one (true, the default) or returns the same one.
func (s *Server) SetRotation(on bool) {
	s.mu.Lock()
	s.rotate = on
	s.mu.Unlock()
}

// SetOmitRefreshToken makes refresh responses leave out refresh_token (the
// client must keep its own). It implies no rotation while set.
func (s *Server) SetOmitRefreshToken(on bool) {
	s.mu.Lock()
	s.omitRefresh = on
	s.mu.Unlock()
}

// SetAcceptStandardOAuth makes the token route also accept a standard OAuth
// 2.0 refresh, as golang.org/x/oauth2 sends it: form-encoded, at the token
// URL without "?refresh", client credentials in the body or a Basic header.
// It exists to compare x/oauth2 with package dropboxsign on one server; the
// real Dropbox Sign is documented to want JSON.
func (s *Server) SetAcceptStandardOAuth(on bool) {
	s.mu.Lock()
	s.standard = on
	s.mu.Unlock()
}

// SetCallbackURL sets the API app's callback URL, where the authorize route
// redirects. By default it is the server's own CallbackPath, which answers
// with the code and state as JSON.
func (s *Server) SetCallbackURL(u string) {
	s.mu.Lock()
	s.callbackURL = u
	s.mu.Unlock()
}

// SetDenyConsent makes the simulated user refuse consent: the authorize
// route redirects with error=access_denied instead of a code. It governs
// scripted clients only; a browser gets the consent page, where the person
// chooses Approve or Deny.
func (s *Server) SetDenyConsent(deny bool) {
	s.mu.Lock()
	s.denyConsent = deny
	s.mu.Unlock()
}

// HoldTokenResponses makes the token route keep every answer, including
// injected faults, until release is called: tests use it to act while a
// refresh is in flight, without sleeping. Calling release again does nothing.
func (s *Server) HoldTokenResponses() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	if s.hold != nil {
		close(s.hold)
	}
	s.hold = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.hold == ch { // else Close or a later hold already closed it
				s.hold = nil
				close(ch)
			}
		})
	}
}

// WaitTokenRequests blocks until the token route has received at least n
// requests in all (held ones included), or ctx ends.
func (s *Server) WaitTokenRequests(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		got, arrived := s.stats.TokenRequests, s.arrived
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// TokenRequests returns the requests the token route has received, oldest
// first (the first 10000 at most).
func (s *Server) TokenRequests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TokenRequest(nil), s.requests...)
}

// Secrets returns every credential the server knows: its client secret and
// each code, access token and refresh token it has issued (the first
// 100000), for tests that check that none of them shows in an error text, a
// log record or a program's output.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{s.ClientSecret}, s.secrets...)
}

// remember records a credential for Secrets; the caller holds s.mu.
func (s *Server) remember(secret string) {
	if len(s.secrets) < maxSecrets {
		s.secrets = append(s.secrets, secret)
	}
}

const maxSecrets = 100000

// IssueToken returns a fresh token for a new account, as if the user had
// just authorized the app, without going through the authorize route.
func (s *Server) IssueToken() *oauth2.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	account := s.newAccount()
	resp := s.issue(account, "", false, time.Now())
	return &oauth2.Token{
		AccessToken:  resp.AccessToken,
		TokenType:    resp.TokenType,
		RefreshToken: resp.RefreshToken,
		ExpiresIn:    resp.ExpiresIn,
		Expiry:       time.Now().Add(time.Duration(resp.ExpiresIn) * time.Second),
	}
}

// IssuedToken describes an access token the server issued.
type IssuedToken struct {
	// Account is the account it acts for, "account-1" and on, numbered as
	// issued. Each IssueToken and each consent at the authorize route makes
	// a new account, and refreshes keep it: an account is one grant.
	Account string
	// Requested is when the token request that obtained it arrived (for
	// IssueToken, when it was called): a refresh that was in flight at a
	// moment has Requested before it and Issued after it.
	Requested time.Time
	Issued    time.Time // when the server issued it
	Expires   time.Time // when the API starts refusing it: Issued plus the lifetime then set
	Refresh   bool      // issued by a refresh (not by IssueToken or a code exchange)
}

// IssuedTokens returns every access token the server has issued and not
// revoked, keyed by the token, with its account and times: for tests that
// check per account when it was refreshed, or which token a client that
// presented it held, and until when.
func (s *Server) IssuedTokens() map[string]IssuedToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]IssuedToken, len(s.access))
	for at, g := range s.access {
		out[at] = IssuedToken{Account: g.account, Requested: g.requested, Issued: g.issued, Expires: g.expires, Refresh: g.refresh}
	}
	return out
}

// APIUse is what the API routes saw of one bearer token.
type APIUse struct {
	Count       int       // requests that presented it, accepted or not
	First, Last time.Time // when the first and the last of them arrived
}

// maxAPIUses bounds the tokens APIUses keeps: a token first presented
// after that many others is not recorded.
const maxAPIUses = 100000

// APIUses returns, for every bearer token presented to the API routes
// (issued by the server or not, live or not, the first 100000), how many
// requests presented it and when the first and the last of them arrived:
// for tests that check when a client last acted with a grant (with
// [Server.IssuedTokens], which says whose each token is).
func (s *Server) APIUses() map[string]APIUse {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]APIUse, len(s.apiUses))
	for tok, u := range s.apiUses {
		out[tok] = u
	}
	return out
}

// RevokeAccessTokens makes the API route reject every access token issued
// so far, as if the user had revoked them; refresh tokens stay valid.
func (s *Server) RevokeAccessTokens() {
	s.mu.Lock()
	clear(s.access)
	s.mu.Unlock()
}

// Revoke ends the grant behind tok, as when its user disconnects the app in
// their Dropbox Sign settings: every refresh token and access token of its
// account is refused from then on (invalid_grant at the token route, 401 at
// the API). A new authorization of the account works again.
func (s *Server) Revoke(tok *oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	account := s.refresh[tok.RefreshToken].account
	if account == "" {
		account = s.access[tok.AccessToken].account
	}
	if account == "" {
		return
	}
	for rt, g := range s.refresh {
		if g.account == account {
			delete(s.refresh, rt)
		}
	}
	for at, g := range s.access {
		if g.account == account {
			delete(s.access, at)
		}
	}
}

func (s *Server) newAccount() string {
	s.nextAccount++
	return fmt.Sprintf("account-%d", s.nextAccount)
}

// tokenResponse is Dropbox Sign's OAuthTokenResponse.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresIn    int64  `json:"expires_in"`
	State        string `json:"state,omitempty"`
}

// issue mints an access token, and a refresh token unless keep is given;
// refresh says a refresh asked for it, requested when its request arrived.
// The caller holds s.mu.
func (s *Server) issue(account, keep string, refresh bool, requested time.Time) tokenResponse {
	at := "at_" + randomHex(16)
	now := time.Now()
	s.access[at] = accessGrant{account: account, requested: requested, issued: now, expires: now.Add(s.lifetime), refresh: refresh}
	s.remember(at)
	rt := keep
	if rt == "" {
		rt = "rt_" + randomHex(16)
		s.refresh[rt] = refreshGrant{account: account}
		s.remember(rt)
	}
	return tokenResponse{AccessToken: at, TokenType: "Bearer", RefreshToken: rt, ExpiresIn: int64(s.lifetime / time.Second)}
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if isConsentRequest(r) { // a browser: the consent page (consent.go)
		s.handleConsent(w, r)
		return
	}
	q := r.URL.Query()
	switch {
	case r.Method != http.MethodGet:
		writeEnvelope(w, http.StatusMethodNotAllowed, "method_not_allowed", "Use GET.")
		return
	case q.Get("response_type") != "code":
		writeEnvelope(w, http.StatusBadRequest, "bad_request", "response_type must be code.")
		return
	case q.Get("client_id") != s.ClientID:
		writeEnvelope(w, http.StatusBadRequest, "bad_request", "Unknown client_id.")
		return
	case q.Get("state") == "":
		writeEnvelope(w, http.StatusBadRequest, "bad_request", "state is required.")
		return
	}
	state := q.Get("state")
	s.mu.Lock()
	callback := s.callbackURL
	if callback == "" {
		callback = s.URL + CallbackPath
	}
	answer := url.Values{"state": {state}}
	if s.denyConsent {
		answer.Set("error", "access_denied")
	} else {
		code := "code_" + randomHex(8)
		s.codes[code] = codeGrant{state: state, account: s.newAccount(), expires: time.Now().Add(10 * time.Minute)}
		s.remember(code)
		s.stats.Authorizations++
		answer.Set("code", code)
	}
	s.mu.Unlock()
	target, err := url.Parse(callback)
	if err != nil {
		writeEnvelope(w, http.StatusInternalServerError, "bad_request", "The app's callback URL is invalid.")
		return
	}
	target.RawQuery = answer.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

// handleCallback stands in for an app's callback page.
func handleCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"code": q.Get("code"), "state": q.Get("state"), "error": q.Get("error")})
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	arrival := time.Now()
	s.mu.Lock()
	s.stats.TokenRequests++
	close(s.arrived)
	s.arrived = make(chan struct{})
	if len(s.requests) < maxRecorded {
		s.requests = append(s.requests, TokenRequest{
			Time: arrival, Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
			ContentType: r.Header.Get("Content-Type"), Header: r.Header.Clone(), Body: body,
		})
	}
	latency, hold := s.latency, s.hold
	fault, faulted := takeFault(&s.faults)
	if faulted {
		s.stats.Faults++
	}
	s.mu.Unlock()

	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
	}
	if faulted {
		fault.write(w)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	status, answer := s.token(r, body, arrival)
	if status == http.StatusOK {
		s.window.setHeaders(w.Header(), time.Now())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(answer)
}

// token answers a token request that arrived at arrival; the caller holds
// s.mu.
func (s *Server) token(r *http.Request, body []byte, arrival time.Time) (int, any) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, envelope("method_not_allowed", "Use POST.")
	}
	_, refresh := r.URL.Query()["refresh"]
	var req map[string]string
	switch ct := r.Header.Get("Content-Type"); {
	case ct == "application/x-www-form-urlencoded" && s.standard:
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return http.StatusBadRequest, oauthError("invalid_request", "Unreadable form body.")
		}
		req = map[string]string{}
		for k := range form {
			req[k] = form.Get(k)
		}
		if id, secret, ok := r.BasicAuth(); ok {
			req["client_id"], req["client_secret"] = id, secret
		}
		refresh = refresh || req["grant_type"] == "refresh_token"
	case ct != "application/json":
		return http.StatusBadRequest, oauthError("invalid_request", "Content-Type must be application/json, not "+strconv.Quote(ct)+".")
	default:
		if err := json.Unmarshal(body, &req); err != nil {
			return http.StatusBadRequest, oauthError("invalid_request", "The body must be a JSON object of strings.")
		}
	}
	if req["client_id"] != s.ClientID || req["client_secret"] != s.ClientSecret {
		return http.StatusUnauthorized, oauthError("invalid_client", "Unknown client_id or wrong client_secret.")
	}
	if refresh {
		return s.refreshToken(req, arrival)
	}
	return s.exchange(req, arrival)
}

func (s *Server) exchange(req map[string]string, arrival time.Time) (int, any) {
	if req["grant_type"] != "authorization_code" {
		return http.StatusBadRequest, oauthError("invalid_request", "grant_type must be authorization_code (refresh at ?refresh).")
	}
	grant, ok := s.codes[req["code"]]
	if !ok || time.Now().After(grant.expires) || req["state"] != grant.state {
		return http.StatusBadRequest, oauthError("invalid_request", "Either the combo client_id/code is wrong, the state does not match or the code has expired.")
	}
	delete(s.codes, req["code"]) // a code is good for one exchange
	s.stats.Exchanges++
	answer := s.issue(grant.account, "", false, arrival)
	answer.State = grant.state
	return http.StatusOK, answer
}

func (s *Server) refreshToken(req map[string]string, arrival time.Time) (int, any) {
	if req["grant_type"] != "refresh_token" {
		return http.StatusBadRequest, oauthError("invalid_request", "grant_type must be refresh_token.")
	}
	rt := req["refresh_token"]
	grant, ok := s.refresh[rt]
	if !ok {
		return http.StatusBadRequest, oauthError("invalid_grant", "The refresh token is invalid.")
	}
	if grant.stale {
		s.stats.StaleRefreshTokens++
		return http.StatusBadRequest, oauthError("invalid_grant", "The refresh token has already been used.")
	}
	keep := ""
	if !s.rotate || s.omitRefresh {
		keep = rt
	} else {
		s.refresh[rt] = refreshGrant{account: grant.account, stale: true}
	}
	s.stats.Refreshes++
	answer := s.issue(grant.account, keep, true, arrival)
	if s.omitRefresh {
		answer.RefreshToken = ""
	}
	return http.StatusOK, answer
}

func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	arrival := time.Now()
	s.mu.Lock()
	s.stats.APICalls++
	if tok := bearer(r); tok != "" {
		if u, ok := s.apiUses[tok]; ok || len(s.apiUses) < maxAPIUses {
			if !ok {
				u.First = arrival
			}
			u.Count++
			u.Last = arrival
			s.apiUses[tok] = u
		}
	}
	if fault, faulted := takeFault(&s.apiFaults); faulted {
		s.stats.APIFaults++
		s.mu.Unlock()
		fault.write(w)
		return
	}
	grant, ok := s.access[bearer(r)]
	if !ok || !time.Now().Before(grant.expires) {
		s.stats.APIRejected++
		s.mu.Unlock()
		writeEnvelope(w, http.StatusUnauthorized, "unauthorized", "Unauthorized api key.")
		return
	}
	s.window.setHeaders(w.Header(), time.Now())
	s.mu.Unlock()
	switch r.URL.Path {
	case AccountPath:
	case SignatureRequestSendPath:
		s.handleSignatureRequestSend(w, r, grant.account)
		return
	case SignatureRequestListPath:
		s.handleSignatureRequestList(w, r, grant.account)
		return
	default:
		writeEnvelope(w, http.StatusNotFound, "not_found", "Not found.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"account": map[string]string{
		"account_id":    grant.account,
		"email_address": grant.account + "@example.com",
	}})
}

func bearer(r *http.Request) string {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return ""
	}
	return h[len(prefix):]
}

// rateWindow produces plausible rate-limit headers: 100 requests a minute.
type rateWindow struct {
	start time.Time
	used  int
}

func (rw *rateWindow) setHeaders(h http.Header, now time.Time) {
	if now.Sub(rw.start) >= time.Minute {
		rw.start, rw.used = now.Truncate(time.Minute), 0
	}
	rw.used++
	h.Set("X-RateLimit-Limit", "100")
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(100-rw.used, 0)))
	h.Set("X-Ratelimit-Reset", strconv.FormatInt(rw.start.Add(time.Minute).Unix(), 10))
}

func envelope(name, msg string) any {
	return map[string]any{"error": map[string]string{"error_msg": msg, "error_name": name}}
}

func oauthError(code, description string) any {
	return map[string]string{"error": code, "error_description": description}
}

func writeEnvelope(w http.ResponseWriter, status int, name, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(envelope(name, msg))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
