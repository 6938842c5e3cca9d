package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// Routes of the app.
const (
	pathSignIn     = "/signin"
	pathSignOut    = "/signout"
	pathSettings   = "/settings"
	pathConnect    = "/dropbox-sign/connect"
	pathCallback   = "/dropbox-sign/callback" // the callback URL set in the API app's settings
	pathDisconnect = "/dropbox-sign/disconnect"
	pathSend       = "/send"
	pathDelete     = "/account/delete"
	pathReady      = "/readyz"
)

// sessionCookie holds the signed-in user: name, a random nonce, and an
// HMAC of both under the app's session key.
const sessionCookie = "session"

// Config is what the app needs.
type Config struct {
	Accounts *dropboxsign.Accounts
	// OAuth is the config Accounts was made with; its RedirectURL is the
	// app's URL + pathCallback.
	OAuth *oauth2.Config
	// APIURL is Dropbox Sign's API base: https://api.hellosign.com, or
	// the fake's URL.
	APIURL string
	// SessionKey signs the session cookie; ConnectKey seals Connect's
	// state cookie. 32 bytes each, from a secret manager in production,
	// the same on every replica.
	SessionKey, ConnectKey []byte
	// FileURL is the document every signature request of this demo sends.
	FileURL string
	Log     *slog.Logger
}

// App is a small multi-user app that connects its users' Dropbox Sign
// accounts and sends signature requests on their behalf.
type App struct {
	cfg     Config
	connect *dropboxsign.Connect
	mux     *http.ServeMux
	handler http.Handler // mux, behind the cross-origin check

	mu    sync.Mutex
	users map[string]time.Time // the app's own user table: name → created
}

// NewApp returns the app; serve it with its ServeHTTP.
func NewApp(cfg Config) (*App, error) {
	if cfg.Accounts == nil || cfg.OAuth == nil || cfg.APIURL == "" {
		return nil, errors.New("webapp: Accounts, OAuth and APIURL are required")
	}
	if len(cfg.SessionKey) != 32 || len(cfg.ConnectKey) != 32 {
		return nil, errors.New("webapp: SessionKey and ConnectKey must be 32 bytes each")
	}
	if cfg.FileURL == "" {
		cfg.FileURL = "https://www.example.com/contract.pdf"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	a := &App{cfg: cfg, mux: http.NewServeMux(), users: map[string]time.Time{}}
	a.connect = &dropboxsign.Connect{
		Accounts: cfg.Accounts,
		Config:   cfg.OAuth,
		Keys:     [][]byte{cfg.ConnectKey},
		User: func(r *http.Request) (string, bool) {
			return a.user(r)
		},
		Done:   a.connectDone,
		Refuse: a.connectRefused,
	}
	m := a.mux
	m.HandleFunc("GET /{$}", a.home)
	m.HandleFunc("POST "+pathSignIn, a.signIn)
	m.HandleFunc("POST "+pathSignOut, a.csrf(a.signOut))
	m.HandleFunc("GET "+pathSettings, a.signedIn(a.settings))
	// Begin is mounted behind the CSRF check, as a POST: another site
	// cannot start a connect flow for the user. It reads "return" from
	// the query, so the form posts to pathConnect?return=/settings.
	m.Handle("POST "+pathConnect, a.csrf(a.connect.Begin().ServeHTTP))
	// The callback is a GET from Dropbox Sign's redirect: its state, bound
	// to this browser and this user by Connect, is its CSRF protection.
	m.Handle("GET "+pathCallback, a.connect.Callback())
	m.HandleFunc("POST "+pathDisconnect, a.csrf(a.disconnect))
	m.HandleFunc("GET "+pathSend, a.signedIn(a.sendPage))
	m.HandleFunc("POST "+pathSend, a.csrf(a.send))
	m.HandleFunc("POST "+pathDelete, a.csrf(a.deleteAccount))
	m.HandleFunc("GET "+pathReady, a.ready)
	a.handler = http.NewCrossOriginProtection().Handler(m)
	return a, nil
}

// ServeHTTP serves the app's pages, framed by nobody, and refuses a POST
// from another site (http.CrossOriginProtection) before any handler: the
// sign-in has no session to bind a CSRF token to, and a sign-in forced
// from another site (login CSRF) would have the victim connect their
// Dropbox Sign account to the attacker's account here.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' "+a.cfg.OAuth.Endpoint.AuthURL+"; frame-ancestors 'none'")
	// same-origin, not no-referrer: with no-referrer a browser sends
	// "Origin: null" on the app's own form POSTs, which the cross-origin
	// check then refuses; other sites still get no referrer.
	h.Set("Referrer-Policy", "same-origin")
	a.handler.ServeHTTP(w, r)
}

// --- the stub sign-in -------------------------------------------------------

// validUser accepts 1 to 64 letters, digits, '-', '_' and '.': the user's
// name is their account key.
func validUser(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (a *App) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, a.cfg.SessionKey)
	for _, p := range parts {
		fmt.Fprintf(m, "%d:%s;", len(p), p) // unambiguous
	}
	return m.Sum(nil)
}

// session returns the signed-in user and their session's nonce.
func (a *App) session(r *http.Request) (user, nonce string, ok bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || len(c.Value) > 512 {
		return "", "", false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return "", "", false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, a.mac("session", parts[0], parts[1])) {
		return "", "", false
	}
	if !validUser(parts[0]) {
		return "", "", false
	}
	a.mu.Lock()
	_, exists := a.users[parts[0]]
	a.mu.Unlock()
	if !exists { // deleted since
		return "", "", false
	}
	return parts[0], parts[1], true
}

func (a *App) user(r *http.Request) (string, bool) {
	u, _, ok := a.session(r)
	return u, ok
}

// csrfToken is bound to the session: a new sign-in gets a new one.
func (a *App) csrfToken(r *http.Request) string {
	u, nonce, ok := a.session(r)
	if !ok {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(a.mac("csrf", u, nonce))
}

// csrf wraps a POST handler: signed in, and the form's csrf field is the
// session's token; else 403 (401 without a session).
func (a *App) csrf(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		want := a.csrfToken(r)
		if want == "" {
			http.Error(w, "Sign in first.", http.StatusUnauthorized)
			return
		}
		if !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(want)) {
			http.Error(w, "This form has expired or did not come from this site: reload the page and try again.", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

func (a *App) signedIn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := a.user(r); !ok {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		h(w, r)
	}
}

func (a *App) setSession(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		// Secure on HTTPS, including behind a proxy that ends TLS (the
		// app's public URL, in the callback URL, says so).
		HttpOnly: true, Secure: r.TLS != nil || strings.HasPrefix(a.cfg.OAuth.RedirectURL, "https://"), SameSite: http.SameSiteLaxMode})
}

// POST /signin: no password (a stub); the user is created if new.
func (a *App) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	name := strings.TrimSpace(r.PostFormValue("user"))
	if !validUser(name) {
		a.render(w, r, "home", map[string]any{"HTTPStatus": http.StatusBadRequest, "Error": "A user name is 1 to 64 letters, digits, '-', '_' or '.'."})
		return
	}
	a.mu.Lock()
	if _, ok := a.users[name]; !ok {
		a.users[name] = time.Now()
	}
	a.mu.Unlock()
	nonce := make([]byte, 16)
	rand.Read(nonce)
	n := base64.RawURLEncoding.EncodeToString(nonce)
	a.setSession(w, r, name+"."+n+"."+base64.RawURLEncoding.EncodeToString(a.mac("session", name, n)), 0)
	http.Redirect(w, r, pathSettings, http.StatusSeeOther)
}

// POST /signout
func (a *App) signOut(w http.ResponseWriter, r *http.Request) {
	a.setSession(w, r, "", -1)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// GET /
func (a *App) home(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.user(r); ok {
		http.Redirect(w, r, pathSettings, http.StatusSeeOther)
		return
	}
	a.render(w, r, "home", nil)
}

// --- the settings page and the connection ---------------------------------

// connectDone ends Connect's flow: back to the settings page with what
// happened, in a word the page turns into a sentence.
func (a *App) connectDone(w http.ResponseWriter, r *http.Request, account string, err error) {
	outcome := "connected"
	var saveErr *dropboxsign.SaveError
	switch {
	case err == nil:
	case errors.As(err, &saveErr):
		// Connected: the token serves, and its save is retried.
		a.cfg.Log.WarnContext(r.Context(), "dropbox sign: connected, token not yet stored", "account", account, "error", err)
		outcome = "saving"
	case dropboxsign.Classify(err) == dropboxsign.Reauthorize:
		outcome = "again" // declined, or a used or expired code (double submit, back button)
	default:
		a.cfg.Log.ErrorContext(r.Context(), "dropbox sign: connect", "account", account, "class", dropboxsign.Classify(err), "error", err)
		outcome = "failed"
	}
	http.Redirect(w, r, pathSettings+"?connect="+outcome, http.StatusSeeOther)
}

// connectRefused renders a callback Connect refused (a replayed,
// tampered, expired or foreign one: no token was requested) as the app's
// own page, with the way back.
func (a *App) connectRefused(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if status >= 500 {
		a.cfg.Log.ErrorContext(r.Context(), "dropbox sign: connect", "status", status, "error", msg)
		msg = "a problem on our side"
	}
	user, _ := a.user(r)
	// The truth, not the link's: a callback submitted twice finds its
	// cookie used by the first, which connected the user.
	connected := user != "" && a.cfg.Accounts.Connection(r.Context(), user).Status == dropboxsign.StatusConnected
	a.cfg.Log.InfoContext(r.Context(), "dropbox sign: connect callback refused", "status", status, "reason", msg, "connected", connected)
	a.render(w, r, "refused", map[string]any{"HTTPStatus": status, "User": user, "Reason": msg, "Connected": connected})
}

var connectOutcomes = map[string]string{
	"connected": "Dropbox Sign is connected.",
	"saving":    "Dropbox Sign is connected (saving the connection took longer than usual; nothing to do).",
	"again":     "Dropbox Sign was not connected (access was declined, or the page was submitted twice): connect again.",
	"failed":    "Dropbox Sign could not be connected just now: try again in a few minutes.",
}

// GET /settings
func (a *App) settings(w http.ResponseWriter, r *http.Request) {
	user, _ := a.user(r)
	c := a.cfg.Accounts.Connection(r.Context(), user)
	data := map[string]any{"User": user, "Status": c.Status.String(), "Flash": connectOutcomes[r.URL.Query().Get("connect")]}
	switch c.Status {
	case dropboxsign.StatusConnected:
		data["Connected"] = true
		data["Text"] = "Connected to Dropbox Sign."
	case dropboxsign.StatusNeverConnected:
		data["Text"] = "Dropbox Sign is not connected."
		data["ConnectLabel"] = "Connect Dropbox Sign"
	case dropboxsign.StatusDisconnected:
		data["Text"] = "You disconnected Dropbox Sign on " + c.Since.Format(time.DateOnly) + "."
		data["ConnectLabel"] = "Connect Dropbox Sign"
	case dropboxsign.StatusRefused:
		// The user removed the app in Dropbox Sign, or the grant was lost.
		data["Text"] = "Dropbox Sign ended the connection on " + c.Since.Format(time.DateOnly) + "."
		data["ConnectLabel"] = "Reconnect Dropbox Sign"
	default: // StatusUnknown: the store could not be read
		a.cfg.Log.ErrorContext(r.Context(), "dropbox sign: status", "account", user, "error", c.Err)
		data["HTTPStatus"] = http.StatusServiceUnavailable
		data["Text"] = "The Dropbox Sign status is unavailable just now; try again later."
	}
	a.render(w, r, "settings", data)
}

// POST /dropbox-sign/disconnect
func (a *App) disconnect(w http.ResponseWriter, r *http.Request) {
	user, _ := a.user(r)
	if err := a.cfg.Accounts.Disconnect(r.Context(), user); err != nil {
		// Not known to be done: the account may still be connected.
		a.cfg.Log.ErrorContext(r.Context(), "dropbox sign: disconnect", "account", user, "error", err)
		http.Error(w, "Could not disconnect Dropbox Sign; please try again.", http.StatusServiceUnavailable)
		return
	}
	http.Redirect(w, r, pathSettings, http.StatusSeeOther)
}

// POST /account/delete
func (a *App) deleteAccount(w http.ResponseWriter, r *http.Request) {
	user, _ := a.user(r)
	// First stop acting for the user and drop their tokens, on every
	// replica: if this fails, nothing is deleted yet and the user tries
	// again. The store keeps a disconnection mark under the user's key
	// (personal data): a daily job erases it with Accounts.Forget once it
	// is dropboxsign.ForgetAfter old (Accounts.Disconnected lists the
	// marks; see docs/connections.md). Not sooner, because until then a
	// replica may still hold a token obtained before the disconnection,
	// and the mark is what keeps it from writing that token back.
	if err := a.cfg.Accounts.Disconnect(r.Context(), user); err != nil {
		a.cfg.Log.ErrorContext(r.Context(), "dropbox sign: disconnect for deletion", "account", user, "error", err)
		http.Error(w, "Your account could not be deleted just now; please try again.", http.StatusServiceUnavailable)
		return
	}
	a.mu.Lock()
	delete(a.users, user) // the app's own data
	a.mu.Unlock()
	a.setSession(w, r, "", -1)
	a.render(w, r, "deleted", nil)
}

// GET /readyz: 200 when Accounts.Check finds nothing wrong (the client
// credentials, the token store's answer, the first stored tokens open with
// the configured keys), 503 when it does. No token request.
func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.cfg.Accounts.Check(ctx); err != nil {
		a.cfg.Log.WarnContext(r.Context(), "readyz: not ready", "class", dropboxsign.Classify(err), "error", err)
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// --- sending a signature request -------------------------------------------

// sentRequest is what the page shows of a signature request.
type sentRequest struct {
	ID      string `json:"signature_request_id"`
	Title   string `json:"title"`
	Created int64  `json:"created_at"`
	Signers []struct {
		Name   string `json:"signer_name"`
		Email  string `json:"signer_email_address"`
		Status string `json:"status_code"`
	} `json:"signatures"`
}

// apiErrorBody is Dropbox Sign's error envelope.
type apiErrorBody struct {
	Error struct {
		Msg  string `json:"error_msg"`
		Name string `json:"error_name"`
	} `json:"error"`
}

// GET /send: the form, and the user's latest requests.
func (a *App) sendPage(w http.ResponseWriter, r *http.Request) {
	user, _ := a.user(r)
	data := map[string]any{"User": user}
	list, err := a.list(r.Context(), user)
	if err != nil {
		data["ListError"] = a.explain(r.Context(), user, err)
	}
	data["Requests"] = list
	a.render(w, r, "send", data)
}

// POST /send
func (a *App) send(w http.ResponseWriter, r *http.Request) {
	user, _ := a.user(r)
	form := url.Values{
		"title":                     {r.PostFormValue("title")},
		"signers[0][name]":          {r.PostFormValue("signer_name")},
		"signers[0][email_address]": {r.PostFormValue("signer_email")},
		"file_urls[0]":              {a.cfg.FileURL},
		"test_mode":                 {"1"},
	}
	data := map[string]any{"User": user, "Form": r.PostForm}
	sent, err := a.post(r.Context(), user, form)
	if err != nil {
		data["HTTPStatus"] = statusFor(err)
		data["SendError"] = a.explain(r.Context(), user, err)
	} else {
		data["Sent"] = sent
	}
	list, err := a.list(r.Context(), user)
	if err != nil {
		data["ListError"] = a.explain(r.Context(), user, err)
	}
	data["Requests"] = list
	a.render(w, r, "send", data)
}

// badRequestError is Dropbox Sign's 4xx answer to what the user typed.
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

func statusFor(err error) int {
	var bad *badRequestError
	if errors.As(err, &bad) {
		return http.StatusBadRequest
	}
	if dropboxsign.Classify(err) == dropboxsign.Reauthorize {
		return http.StatusConflict
	}
	return http.StatusBadGateway
}

// post sends the request through the user's own grant.
func (a *App) post(ctx context.Context, user string, form url.Values) (*sentRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.APIURL+"/v3/signature_request/send", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var out struct {
		SR sentRequest `json:"signature_request"`
	}
	if err := a.do(user, req, &out); err != nil {
		return nil, err
	}
	return &out.SR, nil
}

// list returns the user's latest signature requests.
func (a *App) list(ctx context.Context, user string) ([]sentRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.APIURL+"/v3/signature_request/list?page_size=10", nil)
	if err != nil {
		return nil, err
	}
	var out struct {
		List []sentRequest `json:"signature_requests"`
	}
	if err := a.do(user, req, &out); err != nil {
		return nil, err
	}
	return out.List, nil
}

// do sends req with the user's token (Accounts.Client refreshes it, and
// replays once on a 401) and decodes the JSON answer into out.
func (a *App) do(user string, req *http.Request, out any) error {
	resp, err := a.cfg.Accounts.Client(user).Do(req)
	if err != nil {
		return err // a token error: Classify says what to do
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("reading Dropbox Sign's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e apiErrorBody
		json.Unmarshal(body, &e)
		if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusTooManyRequests && e.Error.Msg != "" {
			return &badRequestError{msg: e.Error.Msg}
		}
		return fmt.Errorf("dropbox sign answered %s (%s)", resp.Status, e.Error.Name)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("dropbox sign's answer is malformed: %w", err)
	}
	return nil
}

// explain turns an error into what the user should do.
func (a *App) explain(ctx context.Context, user string, err error) string {
	var bad *badRequestError
	switch {
	case errors.As(err, &bad):
		return "Dropbox Sign refused the request: " + bad.msg
	case errors.Is(err, dropboxsign.ErrDisconnected):
		return "You disconnected Dropbox Sign: connect it again on the settings page to send signature requests."
	}
	switch dropboxsign.Classify(err) {
	case dropboxsign.Reauthorize:
		return "Dropbox Sign is not connected (or it ended the connection): connect it on the settings page."
	case dropboxsign.RateLimited:
		return "Dropbox Sign asks us to slow down: try again in a minute."
	case dropboxsign.Misconfigured:
		a.cfg.Log.ErrorContext(ctx, "dropbox sign: misconfigured", "account", user, "error", err)
		return "Sending is unavailable because of a problem on our side; we have been told. Try again later."
	default:
		a.cfg.Log.WarnContext(ctx, "dropbox sign: call failed", "account", user, "error", err)
		return "Dropbox Sign could not be reached just now: try again in a few minutes."
	}
}

// --- pages ------------------------------------------------------------------

// render writes the page name with data, and the status data["HTTPStatus"]
// (200 without it).
func (a *App) render(w http.ResponseWriter, r *http.Request, name string, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	data["CSRF"] = a.csrfToken(r)
	data["Paths"] = map[string]string{
		"SignIn": pathSignIn, "SignOut": pathSignOut, "Settings": pathSettings, "Connect": pathConnect + "?return=" + pathSettings,
		"Disconnect": pathDisconnect, "Send": pathSend, "Delete": pathDelete,
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if status, ok := data["HTTPStatus"].(int); ok { // after the headers, which it sends
		w.WriteHeader(status)
	}
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		a.cfg.Log.ErrorContext(r.Context(), "render", "page", name, "error", err)
	}
}

var pages = template.Must(template.New("").Parse(`
{{define "top"}}<!doctype html><html><head><meta charset="utf-8"><title>Example app · Dropbox Sign</title>
<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:2em auto}form{display:inline}.flash{background:#eef;padding:.5em}.error{background:#fee;padding:.5em}</style></head><body>
{{if .User}}<p>Signed in as <b id="user">{{.User}}</b> · <a href="{{.Paths.Settings}}">Settings</a> · <a href="{{.Paths.Send}}">Send a signature request</a> ·
<form method="post" action="{{.Paths.SignOut}}"><input type="hidden" name="csrf" value="{{.CSRF}}"><button>Sign out</button></form></p>{{end}}{{end}}
{{define "bottom"}}</body></html>{{end}}

{{define "home"}}{{template "top" .}}<h1>Example app</h1>
{{with .Error}}<p class="error">{{.}}</p>{{end}}
<form method="post" action="{{.Paths.SignIn}}"><label>User name <input name="user" required maxlength="64"></label> <button>Sign in</button></form>
<p>A stub sign-in: no password. Each user connects their own Dropbox Sign account.</p>
{{template "bottom" .}}{{end}}

{{define "settings"}}{{template "top" .}}<h1>Settings</h1>
{{with .Flash}}<p class="flash">{{.}}</p>{{end}}
<h2>Dropbox Sign</h2>
<p id="status" data-status="{{.Status}}">{{.Text}}</p>
{{if .Connected}}<form method="post" action="{{.Paths.Disconnect}}"><input type="hidden" name="csrf" value="{{.CSRF}}"><button>Disconnect</button></form>
<form method="post" action="{{.Paths.Connect}}"><input type="hidden" name="csrf" value="{{.CSRF}}"><button>Reconnect</button></form>
{{else if .ConnectLabel}}<form method="post" action="{{.Paths.Connect}}"><input type="hidden" name="csrf" value="{{.CSRF}}"><button>{{.ConnectLabel}}</button></form>{{end}}
<h2>Delete my account</h2>
<p>Disconnects Dropbox Sign and deletes your account here.</p>
<form method="post" action="{{.Paths.Delete}}"><input type="hidden" name="csrf" value="{{.CSRF}}"><button>Delete my account</button></form>
{{template "bottom" .}}{{end}}

{{define "send"}}{{template "top" .}}<h1>Send a signature request</h1>
{{with .SendError}}<p class="error" id="send-error">{{.}}</p>{{end}}
{{with .Sent}}<p class="flash" id="sent">Sent “{{.Title}}” ({{.ID}}).</p>{{end}}
<form method="post" action="{{.Paths.Send}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
<p><label>Title <input name="title" maxlength="255" value="{{with .Form}}{{.Get "title"}}{{end}}"></label></p>
<p><label>Signer's name <input name="signer_name" required value="{{with .Form}}{{.Get "signer_name"}}{{end}}"></label></p>
<p><label>Signer's email <input name="signer_email" type="email" required value="{{with .Form}}{{.Get "signer_email"}}{{end}}"></label></p>
<button>Send</button></form>
<h2>Your latest requests</h2>
{{with .ListError}}<p class="error">{{.}}</p>{{end}}
<ul>{{range .Requests}}<li>{{.Title}} · {{range .Signers}}{{.Name}} &lt;{{.Email}}&gt; ({{.Status}}) {{end}}</li>{{else}}<li>None yet.</li>{{end}}</ul>
{{template "bottom" .}}{{end}}

{{define "refused"}}{{template "top" .}}{{if .Connected}}<h1>Dropbox Sign is connected</h1>
<p class="flash" id="refused">This link was already used ({{.Reason}}), and Dropbox Sign is connected: nothing more to do.</p>
<p><a href="{{.Paths.Settings}}">Back to the settings page</a>.</p>
{{else}}<h1>Dropbox Sign was not connected</h1>
<p class="error" id="refused">This link cannot complete the connection: {{.Reason}}.</p>
<p>Nothing was changed. <a href="{{.Paths.Settings}}">Back to the settings page</a>, and connect from there.</p>
{{end}}{{template "bottom" .}}{{end}}

{{define "deleted"}}{{template "top" .}}<h1>Account deleted</h1><p>Your account is deleted, and Dropbox Sign is disconnected. You can also remove the app from your Dropbox Sign account's settings.</p><p><a href="/">Home</a></p>{{template "bottom" .}}{{end}}
`))
