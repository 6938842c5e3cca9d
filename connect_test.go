package dropboxsign_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// connectApp is an app with the connect handlers, its user in a "user"
// cookie, and a browser-like client that stops at every redirect to the
// app, so that a test can replay or tamper with the callback.
type connectApp struct {
	t        *testing.T
	fake     *dropboxsigntest.Server
	store    *dropboxsign.FileStore
	accounts *dropboxsign.Accounts
	connect  *dropboxsign.Connect
	app      *httptest.Server
	jar      http.CookieJar
	client   *http.Client
}

func newConnectApp(t *testing.T, key []byte) *connectApp {
	t.Helper()
	ca := &connectApp{t: t, fake: dropboxsigntest.NewServer()}
	t.Cleanup(ca.fake.Close)
	store, err := dropboxsign.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca.store = store
	ctx := context.Background()
	ca.accounts = dropboxsign.NewAccounts(ctx, ca.fake.Config(), store)
	t.Cleanup(func() { ca.accounts.Shutdown(ctx) })
	mux := http.NewServeMux()
	ca.app = httptest.NewServer(mux)
	t.Cleanup(ca.app.Close)
	conf := ca.fake.Config()
	conf.RedirectURL = ca.app.URL + "/callback"
	ca.fake.SetCallbackURL(conf.RedirectURL)
	ca.connect = &dropboxsign.Connect{
		Accounts: ca.accounts,
		Config:   conf,
		User:     userFromCookie,
		Keys:     [][]byte{key},
	}
	mux.Handle("GET /connect", ca.connect.Begin())
	mux.Handle("GET /callback", ca.connect.Callback())
	ca.jar, _ = cookiejar.New(nil)
	appURL, _ := url.Parse(ca.app.URL)
	ca.client = &http.Client{Jar: ca.jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host == appURL.Host {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	ca.signIn("alice")
	return ca
}

func userFromCookie(r *http.Request) (string, bool) {
	c, err := r.Cookie("user")
	if err != nil || c.Value == "" {
		return "", false
	}
	return c.Value, true
}

func (ca *connectApp) signIn(user string) {
	u, _ := url.Parse(ca.app.URL + "/")
	ca.jar.SetCookies(u, []*http.Cookie{{Name: "user", Value: user, Path: "/"}})
}

// begin starts the flow and returns the callback URL the fake sent the
// browser to.
func (ca *connectApp) begin(ret string) string {
	ca.t.Helper()
	target := ca.app.URL + "/connect"
	if ret != "" {
		target += "?return=" + url.QueryEscape(ret)
	}
	resp, err := ca.client.Get(target)
	if err != nil {
		ca.t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, ca.app.URL+"/callback?") {
		ca.t.Fatalf("begin: %s to %q, want the fake's redirect to the callback", resp.Status, loc)
	}
	return loc
}

// get fetches target without following redirects to the app, and returns
// the status, the Location and the body.
func (ca *connectApp) get(target string) (int, string, string) {
	ca.t.Helper()
	resp, err := ca.client.Get(target)
	if err != nil {
		ca.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), b.String()
}

func (ca *connectApp) stateCookie() *http.Cookie {
	u, _ := url.Parse(ca.app.URL + "/callback")
	for _, c := range ca.jar.Cookies(u) {
		if c.Name == dropboxsign.ConnectCookieName {
			return c
		}
	}
	return nil
}

func (ca *connectApp) setStateCookie(value string) {
	u, _ := url.Parse(ca.app.URL + "/callback")
	ca.jar.SetCookies(u, []*http.Cookie{{Name: dropboxsign.ConnectCookieName, Value: value, Path: "/callback"}})
}

func (ca *connectApp) tokenRequests() int { return ca.fake.Stats().TokenRequests }

// refused checks that target gets 400 and makes no token request.
func (ca *connectApp) refused(target, why string) {
	ca.t.Helper()
	before := ca.tokenRequests()
	status, _, body := ca.get(target)
	if status != http.StatusBadRequest {
		ca.t.Errorf("%s: %d %q, want 400", why, status, body)
	}
	if n := ca.tokenRequests(); n != before {
		ca.t.Errorf("%s: %d token requests, want none", why, n-before)
	}
}

func connectKey(t *testing.T) []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func TestConnectHappyPath(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	cb := ca.begin("/settings?tab=apps")
	c := ca.stateCookie()
	if c == nil {
		t.Fatal("Begin set no state cookie for the callback's path")
	}
	status, loc, _ := ca.get(cb)
	if status != http.StatusSeeOther || loc != "/settings?connected=1&tab=apps" {
		t.Fatalf("callback: %d to %q, want 303 to /settings?connected=1&tab=apps", status, loc)
	}
	if ca.stateCookie() != nil {
		t.Error("the state cookie is still there after the callback")
	}
	if st := ca.accounts.Connection(context.Background(), "alice"); st.Status != dropboxsign.StatusConnected {
		t.Errorf("alice: %v, want connected", st.Status)
	}
	if s := ca.fake.Stats(); s.Exchanges != 1 {
		t.Errorf("%d exchanges, want 1", s.Exchanges)
	}
}

func TestConnectCookieAttributes(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "https://app.example/connect", nil)
	r.AddCookie(&http.Cookie{Name: "user", Value: "alice"})
	ca.connect.Begin().ServeHTTP(rec, r)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("begin: %d, want 303", rec.Code)
	}
	sc := rec.Result().Cookies()
	if len(sc) != 1 {
		t.Fatalf("%d cookies, want 1", len(sc))
	}
	c := sc[0]
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/callback" || c.MaxAge != 600 {
		t.Errorf("cookie %+v: want HttpOnly, Secure (TLS), SameSite=Lax, Path=/callback, Max-Age=600", c)
	}
	loc, _ := url.Parse(rec.Header().Get("Location"))
	if st := loc.Query().Get("state"); len(st) < 43 || strings.Contains(c.Value, st) {
		t.Errorf("state %q: want 32 random bytes, not readable in the cookie", st)
	}
	// Without TLS, and with a forwarded proto nobody can vouch for: not Secure.
	rec = httptest.NewRecorder()
	r = httptest.NewRequest("GET", "http://app.example/connect", nil)
	r.Header.Set("X-Forwarded-Proto", "https")
	r.AddCookie(&http.Cookie{Name: "user", Value: "alice"})
	ca.connect.Begin().ServeHTTP(rec, r)
	if c := rec.Result().Cookies()[0]; c.Secure {
		t.Error("cookie Secure on plain HTTP")
	}
	// Behind a proxy that ends TLS: the https callback URL makes it Secure.
	behind := *ca.connect
	conf := *ca.connect.Config
	conf.RedirectURL = "https://app.example/callback"
	behind.Config = &conf
	rec = httptest.NewRecorder()
	r = httptest.NewRequest("GET", "http://app.example/connect", nil)
	r.AddCookie(&http.Cookie{Name: "user", Value: "alice"})
	behind.Begin().ServeHTTP(rec, r)
	if c := rec.Result().Cookies()[0]; !c.Secure {
		t.Error("cookie not Secure for an https callback URL behind a proxy")
	}
	// Nobody signed in: 401, no redirect, no cookie.
	rec = httptest.NewRecorder()
	ca.connect.Begin().ServeHTTP(rec, httptest.NewRequest("GET", "http://app.example/connect", nil))
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("Location") != "" || len(rec.Result().Cookies()) != 0 {
		t.Errorf("no user: %d, want 401 without redirect or cookie", rec.Code)
	}
}

func TestConnectForeignUser(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	cb := ca.begin("")
	ca.signIn("mallory")
	ca.refused(cb, "a callback in another user's session")
	ca.signIn("alice")
	if status, loc, _ := ca.get(cb); status != http.StatusSeeOther || loc != "/?connected=1" {
		t.Errorf("alice's own callback after the refusal: %d %q", status, loc)
	}
	if st := ca.accounts.Connection(context.Background(), "mallory"); st.Status == dropboxsign.StatusConnected {
		t.Error("mallory connected with alice's grant")
	}
}

func TestConnectForgedState(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	cb := ca.begin("")
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Set("state", "forged-"+q.Get("state")[7:])
	u.RawQuery = q.Encode()
	ca.refused(u.String(), "a forged state")
	// An attacker's own callback (their code and state) in alice's browser,
	// without a cookie: refused.
	u, _ = url.Parse(ca.app.URL + "/callback")
	ca.jar.SetCookies(u, []*http.Cookie{{Name: dropboxsign.ConnectCookieName, Path: "/callback", MaxAge: -1}}) // deleted
	if ca.stateCookie() != nil {
		t.Fatal("the state cookie is still in the jar")
	}
	ca.refused(cb, "no cookie")
}

func TestConnectTamperedCookie(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	cb := ca.begin("")
	v := []byte(ca.stateCookie().Value)
	orig := string(v)
	for _, i := range []int{0, len(v) / 2, len(v) - 1} {
		w := append([]byte(nil), v...)
		if w[i] == 'A' {
			w[i] = 'B'
		} else {
			w[i] = 'A'
		}
		ca.setStateCookie(string(w))
		ca.refused(cb, "a cookie with byte "+string(rune('0'+i%10))+" changed")
	}
	ca.setStateCookie(orig[:len(orig)/2])
	ca.refused(cb, "a truncated cookie")
	ca.setStateCookie("!!not-base64!!")
	ca.refused(cb, "a cookie not in base64")

	// Sealed under a key no longer configured: refused; under the second
	// of two keys (rotation): accepted.
	serve := func(keys ...[]byte) *httptest.ResponseRecorder {
		c := *ca.connect
		c.Keys = keys
		r := httptest.NewRequest("GET", cb, nil)
		r.AddCookie(&http.Cookie{Name: "user", Value: "alice"})
		r.AddCookie(&http.Cookie{Name: dropboxsign.ConnectCookieName, Value: orig})
		rec := httptest.NewRecorder()
		c.Callback().ServeHTTP(rec, r)
		return rec
	}
	before := ca.tokenRequests()
	if rec := serve(connectKey(t)); rec.Code != http.StatusBadRequest || ca.tokenRequests() != before {
		t.Errorf("a cookie sealed under a key rotated out: %d, want 400 and no token request", rec.Code)
	}
	if rec := serve(connectKey(t), ca.connect.Keys[0]); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/?connected=1" {
		t.Errorf("a cookie sealed under the second key: %d %q, want connected", rec.Code, rec.Header().Get("Location"))
	}
}

func TestConnectExpired(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	var mu sync.Mutex
	now := time.Now()
	dropboxsign.SetConnectClock(ca.connect, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	cb := ca.begin("")
	mu.Lock()
	now = now.Add(10 * time.Minute)
	mu.Unlock()
	ca.refused(cb, "an expired flow")
	mu.Lock()
	now = now.Add(-time.Nanosecond)
	mu.Unlock()
	if status, loc, _ := ca.get(cb); status != http.StatusSeeOther || loc != "/?connected=1" {
		t.Errorf("just in time: %d %q, want connected", status, loc)
	}
}

func TestConnectReplayedCallback(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	cb := ca.begin("")
	kept := ca.stateCookie().Value
	if status, loc, _ := ca.get(cb); status != http.StatusSeeOther || loc != "/?connected=1" {
		t.Fatalf("first callback: %d %q", status, loc)
	}
	ca.refused(cb, "the callback replayed (the cookie is gone)")

	// The cookie kept by hand, in this process: the code's exchange is
	// shared, the user connected once.
	ca.setStateCookie(kept)
	before := ca.tokenRequests()
	if status, loc, _ := ca.get(cb); status != http.StatusSeeOther || loc != "/?connected=1" {
		t.Errorf("double submit with its cookie: %d %q, want connected", status, loc)
	}
	if n := ca.tokenRequests() - before; n != 0 {
		t.Errorf("double submit: %d token requests, want 0", n)
	}

	// On another replica (another process): Dropbox Sign refuses the used
	// code; the user is told to start again, never Misconfigured.
	ctx := context.Background()
	other := dropboxsign.NewAccounts(ctx, ca.fake.Config(), ca.store, dropboxsign.AsAnotherProcess())
	defer other.Shutdown(ctx)
	var got error
	replica := *ca.connect
	replica.Accounts = other
	replica.Done = func(w http.ResponseWriter, r *http.Request, account string, err error) { got = err }
	r := httptest.NewRequest("GET", cb, nil)
	r.AddCookie(&http.Cookie{Name: "user", Value: "alice"})
	r.AddCookie(&http.Cookie{Name: dropboxsign.ConnectCookieName, Value: kept})
	replica.Callback().ServeHTTP(httptest.NewRecorder(), r)
	if n := ca.tokenRequests() - before; n != 1 {
		t.Fatalf("replay on another replica: %d token requests, want 1", n)
	}
	var re *oauth2.RetrieveError
	if c := dropboxsign.Classify(got); c != dropboxsign.Reauthorize || !errors.As(got, &re) {
		t.Errorf("a used code: %v (%v), want Reauthorize with the RetrieveError reachable", got, c)
	}
	u, _ := url.Parse(cb)
	for _, secret := range []string{u.Query().Get("code"), u.Query().Get("state"), kept} {
		if strings.Contains(got.Error(), secret) {
			t.Errorf("the error %q holds a secret", got)
		}
	}
	if st := ca.accounts.Connection(ctx, "alice"); st.Status != dropboxsign.StatusConnected {
		t.Errorf("alice: %v, want still connected", st.Status)
	}
}

func TestConnectDeclined(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	ca.fake.SetDenyConsent(true)
	before := ca.tokenRequests()
	cb := ca.begin("/settings")
	status, loc, _ := ca.get(cb)
	if status != http.StatusSeeOther || loc != "/settings?connect_error=reauthorize" {
		t.Errorf("declined: %d %q, want 303 to /settings?connect_error=reauthorize", status, loc)
	}
	if n := ca.tokenRequests() - before; n != 0 {
		t.Errorf("declined: %d token requests, want 0", n)
	}
	if ca.stateCookie() != nil {
		t.Error("the state cookie is still there after the callback")
	}
}

func TestConnectOpenRedirect(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	for _, ret := range []string{"//evil.example", "/\\evil.example", "https://evil.example", "javascript:alert(1)",
		"/\t/evil.example", "evil.example", "/" + strings.Repeat("a", 1024)} {
		cb := ca.begin(ret)
		if status, loc, _ := ca.get(cb); status != http.StatusSeeOther || loc != "/?connected=1" {
			t.Errorf("return=%q: %d to %q, want 303 to /?connected=1", ret, status, loc)
		}
	}
}

func TestConnectOversizedParams(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	cb := ca.begin("")
	u, _ := url.Parse(cb)
	q := u.Query()
	with := func(k, v string) string {
		q2 := url.Values{}
		for kk, vv := range q {
			q2[kk] = vv
		}
		q2.Set(k, v)
		return ca.app.URL + "/callback?" + q2.Encode()
	}
	long := strings.Repeat("x", 513)
	ca.refused(with("state", long), "a state over 512 bytes")
	ca.refused(with("code", long), "a code over 512 bytes")
	ca.refused(with("pad", strings.Repeat("p", 4096)), "a query over 4 KiB")
	ca.refused(with("code", ""), "no code")
	ca.refused(with("state", ""), "no state")
	ca.refused(cb+"&state=again", "two states")
	ca.refused(ca.app.URL+"/callback?state=%zz", "a malformed query")
	if status, loc, _ := ca.get(cb); status != http.StatusSeeOther || loc != "/?connected=1" {
		t.Errorf("the genuine callback after all that: %d %q", status, loc)
	}
}

func TestConnectMisconfigured(t *testing.T) {
	for _, c := range []*dropboxsign.Connect{
		{},
		{Accounts: &dropboxsign.Accounts{}, Config: &oauth2.Config{}, User: userFromCookie},
		{Accounts: &dropboxsign.Accounts{}, Config: &oauth2.Config{}, User: userFromCookie, Keys: [][]byte{[]byte("short")}},
	} {
		for _, h := range []http.Handler{c.Begin(), c.Callback()} {
			rec := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "/callback?state=s&code=c", nil)
			r.AddCookie(&http.Cookie{Name: "user", Value: "alice"})
			h.ServeHTTP(rec, r)
			if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "short") {
				t.Errorf("%+v: %d %q, want 500 naming what is missing", c, rec.Code, rec.Body.String())
			}
		}
	}
}

// replaceFails is a FileStore whose writes of a new login fail: the store
// down just after the exchange.
type replaceFails struct{ *dropboxsign.FileStore }

func (replaceFails) Replace(context.Context, string, *oauth2.Token) error {
	return errors.New("store down")
}

func TestConnectStoreDownAfterExchange(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	cb := ca.begin("")
	ctx := context.Background()
	down := dropboxsign.NewAccounts(ctx, ca.fake.Config(), replaceFails{ca.store})
	defer down.Shutdown(ctx)
	c := *ca.connect
	c.Accounts = down
	var got error
	c.Done = func(w http.ResponseWriter, r *http.Request, account string, err error) { got = err }
	r := httptest.NewRequest("GET", cb, nil)
	r.AddCookie(&http.Cookie{Name: "user", Value: "alice"})
	r.AddCookie(ca.stateCookie())
	rec := httptest.NewRecorder()
	c.Callback().ServeHTTP(rec, r)
	var se *dropboxsign.SaveError
	if !errors.As(got, &se) {
		t.Fatalf("store down after the exchange: Done got %v, want a *SaveError", got)
	}
	if c := rec.Result().Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
		t.Errorf("cookies %v: want the state cookie deleted", c)
	}
	// The token is kept: the account serves without another exchange.
	before := ca.fake.Stats().Exchanges
	resp, err := down.Client("alice").Get(ca.fake.AccountURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || ca.fake.Stats().Exchanges != before {
		t.Errorf("after a SaveError: %s, %d more exchanges; want 200 with the kept token", resp.Status, ca.fake.Stats().Exchanges-before)
	}
}

// The app renders refusals with its own page, given the status and why
// (here: an emptied cookie).
func TestConnectRefuseRendersTheAppsPage(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	var got []string
	ca.connect.Refuse = func(w http.ResponseWriter, r *http.Request, status int, msg string) {
		got = append(got, fmt.Sprint(status, " ", msg))
		w.WriteHeader(status)
		fmt.Fprint(w, "the app's page")
	}
	cb := ca.begin("")
	ca.setStateCookie("")
	before := ca.tokenRequests()
	status, _, body := ca.get(cb)
	if status != http.StatusBadRequest || body != "the app's page" || len(got) != 1 || !strings.HasPrefix(got[0], "400 the connect cookie is invalid") {
		t.Errorf("a callback without its cookie: %d %q, Refuse saw %q; want 400 from the app's page", status, body, got)
	}
	if n := ca.tokenRequests() - before; n != 0 {
		t.Errorf("%d token requests, want 0", n)
	}
}
