package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/internal/pgtest"
)

// testApp runs the app as main does: the fake, a FileStore in a temporary
// directory, the app on an httptest server.
type testApp struct {
	app      *App
	fake     *dropboxsigntest.Server
	accounts *dropboxsign.Accounts
	url      string
	dir      string // the FileStore's
}

func newTestApp(t *testing.T) *testApp {
	t.Helper()
	dir := t.TempDir()
	store, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	ta := newTestAppOn(t, store)
	ta.dir = dir
	return ta
}

// newTestAppOn is newTestApp with the tokens in store.
func newTestAppOn(t *testing.T, store dropboxsign.Store) *testApp {
	t.Helper()
	fake := dropboxsigntest.NewServer()
	t.Cleanup(fake.Close)
	conf := fake.Config()
	accounts := dropboxsign.NewAccounts(context.Background(), conf, store)
	t.Cleanup(func() { accounts.Shutdown(context.Background()) })
	key := func(b byte) []byte { k := make([]byte, 32); k[0] = b; return k }
	app, err := NewApp(Config{Accounts: accounts, OAuth: conf, APIURL: fake.URL, SessionKey: key(1), ConnectKey: key(2),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	conf.RedirectURL = srv.URL + pathCallback
	fake.SetCallbackURL(conf.RedirectURL)
	return &testApp{app: app, fake: fake, accounts: accounts, url: srv.URL}
}

// browser is a user's http.Client with a cookie jar. It follows
// redirects, and sends no text/html Accept header: the fake's authorize
// route consents at once, as scripted, and redirects with a code.
type browser struct {
	t    *testing.T
	c    *http.Client
	base string
}

func newBrowser(t *testing.T, base string) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, c: &http.Client{Jar: jar}, base: base}
}

// page is an answer: status, final path and body.
type page struct {
	status int
	path   string
	query  url.Values
	body   string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return page{status: resp.StatusCode, path: resp.Request.URL.Path, query: resp.Request.URL.Query(), body: string(body)}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the page's forms.
func (p page) csrf(t *testing.T) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no csrf field in %s:\n%s", p.path, p.body)
	}
	return m[1]
}

var statusAttr = regexp.MustCompile(`id="status" data-status="([^"]+)"`)

// status returns the Dropbox Sign status the settings page shows.
func (p page) dsStatus(t *testing.T) string {
	t.Helper()
	m := statusAttr.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no status on %s (%d):\n%s", p.path, p.status, p.body)
	}
	return m[1]
}

func signIn(t *testing.T, b *browser, user string) page {
	t.Helper()
	p := b.post(pathSignIn, url.Values{"user": {user}})
	if p.status != http.StatusOK || p.path != pathSettings {
		t.Fatalf("sign-in: %d at %s, want 200 at %s", p.status, p.path, pathSettings)
	}
	return p
}

// listed returns the titles the fake lists for the user's grant.
func (ta *testApp) listed(t *testing.T, user string) []string {
	t.Helper()
	resp, err := ta.accounts.Client(user).Get(ta.fake.URL + dropboxsigntest.SignatureRequestListPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		List []struct {
			Title      string `json:"title"`
			Signatures []struct {
				Email string `json:"signer_email_address"`
			} `json:"signatures"`
		} `json:"signature_requests"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	var titles []string
	for _, sr := range out.List {
		titles = append(titles, sr.Title)
	}
	return titles
}

func TestWebappEndToEnd(t *testing.T) {
	endToEnd(t, newTestApp(t))
}

// The same with -postgres: a real PostgreSQL, its tables made by openStore.
func TestWebappEndToEndOnPostgreSQL(t *testing.T) {
	db := pgtest.Start(t)
	store, where, err := openStore(context.Background(), "", db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if strings.Contains(where, "password") || !strings.Contains(where, "PostgreSQL") {
		t.Errorf("the start-up line's store: %q", where)
	}
	endToEnd(t, newTestAppOn(t, store.Store))
}

// endToEnd walks a user through the app: sign in, connect, send,
// disconnect, delete.
func endToEnd(t *testing.T, ta *testApp) {
	alice := newBrowser(t, ta.url)

	// Sign in: not connected.
	p := signIn(t, alice, "alice")
	if got := p.dsStatus(t); got != dropboxsign.StatusNeverConnected.String() {
		t.Fatalf("status after sign-in = %q, want never connected", got)
	}
	if !strings.Contains(p.body, "Connect Dropbox Sign") {
		t.Fatalf("settings offers no Connect button:\n%s", p.body)
	}

	// Connect: Begin → the fake's authorize route (scripted consent) →
	// the callback → back at the settings page, connected.
	p = alice.post(pathConnect+"?return="+pathSettings, url.Values{"csrf": {p.csrf(t)}})
	if p.status != http.StatusOK || p.path != pathSettings || p.query.Get("connect") != "connected" {
		t.Fatalf("connect ended with %d at %s?%s, want 200 at %s?connect=connected:\n%s", p.status, p.path, p.query.Encode(), pathSettings, p.body)
	}
	if got := p.dsStatus(t); got != dropboxsign.StatusConnected.String() {
		t.Fatalf("status after connect = %q, want connected", got)
	}
	if st := ta.fake.Stats(); st.Authorizations != 1 || st.Exchanges != 1 {
		t.Fatalf("fake saw %d consents and %d code exchanges, want 1 and 1", st.Authorizations, st.Exchanges)
	}
	if c := ta.accounts.Connection(context.Background(), "alice"); c.Status != dropboxsign.StatusConnected {
		t.Fatalf("store: alice is %v, want connected", c.Status)
	}

	// Send a signature request: the fake lists it for alice's grant.
	p = alice.get(pathSend)
	p = alice.post(pathSend, url.Values{"csrf": {p.csrf(t)}, "title": {"NDA for Bob"}, "signer_name": {"Bob"}, "signer_email": {"bob@example.com"}})
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="sent"`) {
		t.Fatalf("send: %d:\n%s", p.status, p.body)
	}
	if titles := ta.listed(t, "alice"); len(titles) != 1 || titles[0] != "NDA for Bob" {
		t.Fatalf("the fake lists %q for alice, want [NDA for Bob]", titles)
	}
	if !strings.Contains(p.body, "NDA for Bob · Bob &lt;bob@example.com&gt;") {
		t.Fatalf("the send page does not list the request:\n%s", p.body)
	}

	// A bad request from the form: Dropbox Sign's message, 400.
	p = alice.post(pathSend, url.Values{"csrf": {p.csrf(t)}, "title": {"x"}, "signer_name": {"Bob"}, "signer_email": {"not-an-email"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "not a valid email address") {
		t.Fatalf("send with a bad email: %d:\n%s", p.status, p.body)
	}

	// Disconnect: the page says so, and sending fails with what to do.
	p = alice.get(pathSettings)
	p = alice.post(pathDisconnect, url.Values{"csrf": {p.csrf(t)}})
	if p.path != pathSettings {
		t.Fatalf("disconnect ended at %s (%d):\n%s", p.path, p.status, p.body)
	}
	if got := p.dsStatus(t); got != dropboxsign.StatusDisconnected.String() {
		t.Fatalf("status after disconnect = %q, want disconnected", got)
	}
	calls := ta.fake.Stats().APICalls
	p = alice.get(pathSend)
	p = alice.post(pathSend, url.Values{"csrf": {p.csrf(t)}, "title": {"Another"}, "signer_name": {"Bob"}, "signer_email": {"bob@example.com"}})
	if p.status != http.StatusConflict || !strings.Contains(p.body, "You disconnected Dropbox Sign: connect it again") {
		t.Fatalf("send after disconnect: %d:\n%s", p.status, p.body)
	}
	if got := ta.fake.Stats().APICalls; got != calls {
		t.Fatalf("the fake saw %d API calls after the disconnection, want none", got-calls)
	}

	// Reconnect, then delete the account: disconnected in the store, the
	// session gone.
	p = alice.get(pathSettings)
	p = alice.post(pathConnect+"?return="+pathSettings, url.Values{"csrf": {p.csrf(t)}})
	if got := p.dsStatus(t); got != dropboxsign.StatusConnected.String() {
		t.Fatalf("status after reconnect = %q, want connected", got)
	}
	p = alice.post(pathDelete, url.Values{"csrf": {p.csrf(t)}})
	if p.status != http.StatusOK || !strings.Contains(p.body, "Account deleted") {
		t.Fatalf("delete: %d:\n%s", p.status, p.body)
	}
	if c := ta.accounts.Connection(context.Background(), "alice"); c.Status != dropboxsign.StatusDisconnected {
		t.Fatalf("store after delete: alice is %v, want disconnected (Forget comes after ForgetAfter)", c.Status)
	}
	if p = alice.get(pathSettings); p.path != "/" || strings.Contains(p.body, `id="user"`) {
		t.Fatalf("after delete, settings answered at %s:\n%s", p.path, p.body)
	}
}

// A POST without the session's CSRF token changes nothing: no token from
// another session, none at all, and none without a session.
func TestWebappCSRF(t *testing.T) {
	ta := newTestApp(t)
	alice := newBrowser(t, ta.url)
	signIn(t, alice, "alice")
	mallory := newBrowser(t, ta.url)
	foreign := signIn(t, mallory, "mallory").csrf(t)

	for _, path := range []string{pathConnect + "?return=" + pathSettings, pathDisconnect, pathSend, pathDelete, pathSignOut} {
		for _, token := range []string{"", foreign} {
			p := alice.post(path, url.Values{"csrf": {token}, "title": {"x"}, "signer_name": {"Bob"}, "signer_email": {"bob@example.com"}})
			if p.status != http.StatusForbidden {
				t.Errorf("POST %s with csrf %q: %d, want 403", path, token, p.status)
			}
		}
		anon := newBrowser(t, ta.url)
		if p := anon.post(path, url.Values{"csrf": {foreign}}); p.status != http.StatusUnauthorized {
			t.Errorf("POST %s without a session: %d, want 401", path, p.status)
		}
	}
	if st := ta.fake.Stats(); st.Authorizations != 0 || st.TokenRequests != 0 || st.APICalls != 0 {
		t.Fatalf("refused posts reached Dropbox Sign: %+v", st)
	}
	if p := alice.get(pathSettings); p.path != pathSettings {
		t.Fatalf("alice was signed out or deleted by a refused post: at %s", p.path)
	}
	// A forged session cookie is no session.
	u, _ := url.Parse(ta.url)
	forged := newBrowser(t, ta.url)
	forged.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: "alice.AAAA.AAAA"}})
	if p := forged.get(pathSettings); p.path != "/" {
		t.Fatalf("a forged session reached %s", p.path)
	}
}

// The readiness route reads the store: 200 while it answers, 503 when it
// fails (its directory removed from under it).
func TestWebappReadyz(t *testing.T) {
	ta := newTestApp(t)
	b := newBrowser(t, ta.url)
	if p := b.get(pathReady); p.status != http.StatusOK {
		t.Fatalf("readyz: %d, want 200", p.status)
	}
	if err := os.RemoveAll(ta.dir); err != nil {
		t.Fatal(err)
	}
	if p := b.get(pathReady); p.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz with the store's directory removed: %d, want 503", p.status)
	}
	if st := ta.fake.Stats(); st.TokenRequests != 0 {
		t.Fatalf("readyz made %d token requests, want 0", st.TokenRequests)
	}
}
