package dropboxsign_test

// Review of issue 20's connect flow: attacks and mistakes, each a test.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// Cookie tossing, or a stale cookie of the same name on a parent path or
// domain: the browser then sends two dropboxsign_connect cookies, and the
// one it sends first (a sibling subdomain's, set with Domain= before the
// flow; or the longer path's) is not the flow's. The genuine cookie is in
// the request, yet the callback is refused: an attacker on a sibling
// subdomain (or a leftover cookie) can keep a user from ever connecting.
// FAILS today: Callback reads only r.Cookie (the first).
func TestReview20DuplicateCookieNameGenuineSecond(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	// mallory's own sealed cookie (what a sibling subdomain would toss).
	ca.signIn("mallory")
	ca.begin("")
	tossed := ca.stateCookie().Value
	ca.signIn("alice")
	cb := ca.begin("")
	genuine := ca.stateCookie().Value
	for name, first := range map[string]string{"mallory's sealed cookie": tossed, "a garbage cookie": "x"} {
		r := httptest.NewRequest("GET", cb, nil)
		r.AddCookie(&http.Cookie{Name: "user", Value: "alice"})
		r.AddCookie(&http.Cookie{Name: dropboxsign.ConnectCookieName, Value: first})
		r.AddCookie(&http.Cookie{Name: dropboxsign.ConnectCookieName, Value: genuine})
		rec := httptest.NewRecorder()
		ca.connect.Callback().ServeHTTP(rec, r)
		if rec.Code != http.StatusSeeOther {
			t.Errorf("%s sent before alice's genuine cookie: %d %q, want alice's flow to complete",
				name, rec.Code, strings.TrimSpace(rec.Body.String()))
		}
	}
}

// The default Done appends connected=1 or connect_error= to the return
// path's query without removing those it already has: a return path of
// /settings?connected=1 (a link, or a crafted Begin) makes a declined flow
// land on /settings?connect_error=reauthorize&connected=1, which an app
// that reads "connected" takes for success (and connect_error=… for a
// failure after success). FAILS today.
func TestReview20DefaultDoneOverridesReturnQuery(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	ca.fake.SetDenyConsent(true)
	cb := ca.begin("/settings?connected=1")
	_, loc, _ := ca.get(cb)
	u, _ := url.Parse(loc)
	if q := u.Query(); q.Has("connected") || q.Get("connect_error") != "reauthorize" {
		t.Errorf("declined with return=/settings?connected=1: Location %q, want connect_error=reauthorize and no connected", loc)
	}
	ca.fake.SetDenyConsent(false)
	cb = ca.begin("/settings?connect_error=misconfigured")
	_, loc, _ = ca.get(cb)
	u, _ = url.Parse(loc)
	if q := u.Query(); q.Has("connect_error") || q.Get("connected") != "1" {
		t.Errorf("connected with return=/settings?connect_error=misconfigured: Location %q, want connected=1 and no connect_error", loc)
	}
}

// The browser goes away while the code is being exchanged (the tab
// closed, the first of two clicks on Approve cancelled by the second, a
// proxy's timeout): the request's context is cancelled. The exchange runs
// on (it is detached), Dropbox Sign issues the grant, the code is spent,
// but Login has already returned the context's error and nothing stores
// the token: the user is not connected although Dropbox Sign lists the
// app as authorized, and the webapp logs an Error for it. FAILS today.
func TestReview20CallbackCancelledMidExchangeKeepsTheGrant(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	cb := ca.begin("")
	cookie := ca.stateCookie()

	// A proxy in front of the fake's token route that holds the request.
	target, _ := url.Parse(ca.fake.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	arrived, release, finished := make(chan struct{}), make(chan struct{}), make(chan struct{})
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == dropboxsigntest.TokenPath {
			close(arrived)
			<-release
			defer close(finished)
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	conf := ca.fake.Config()
	conf.Endpoint.TokenURL = proxy.URL + dropboxsigntest.TokenPath
	ctx := context.Background()
	accounts := dropboxsign.NewAccounts(ctx, conf, ca.store, dropboxsign.AsAnotherProcess())
	defer accounts.Shutdown(ctx)
	c := *ca.connect
	c.Accounts = accounts
	var got error
	c.Done = func(w http.ResponseWriter, r *http.Request, account string, err error) { got = err }

	rctx, cancel := context.WithCancel(ctx)
	r := httptest.NewRequest("GET", cb, nil).WithContext(rctx)
	r.AddCookie(&http.Cookie{Name: "user", Value: "alice"})
	r.AddCookie(cookie)
	served := make(chan struct{})
	go func() { defer close(served); c.Callback().ServeHTTP(httptest.NewRecorder(), r) }()
	select {
	case <-arrived:
	case <-time.After(time.Minute):
		t.Fatal("no token request")
	}
	cancel() // the browser is gone
	close(release)
	<-served
	<-finished // the fake has answered: the grant exists
	if n := ca.fake.Stats().Exchanges; n != 1 {
		t.Fatalf("%d exchanges, want 1", n)
	}
	if got != nil {
		t.Errorf("Done got %v (%v), want nil: the exchange succeeded", got, dropboxsign.Classify(got))
	}
	if st := accounts.Connection(ctx, "alice"); st.Status != dropboxsign.StatusConnected {
		t.Errorf("alice: %v after Dropbox Sign granted access, want connected (the code is spent; the token dropped)", st.Status)
	}
}

// MaxAge beyond what the cookie's Max-Age (int seconds from a Duration)
// and the sealed expiry (Unix nanoseconds) can hold: Begin sets a cookie
// the browser deletes at once (Max-Age < 0) or an expiry in the past, and
// every callback is refused, with no error anywhere. FAILS today.
func TestReview20HugeMaxAge(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	ca.connect.MaxAge = time.Duration(1<<63 - 1)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "http://app.example/connect", nil)
	r.AddCookie(&http.Cookie{Name: "user", Value: "alice"})
	ca.connect.Begin().ServeHTTP(rec, r)
	if cs := rec.Result().Cookies(); rec.Code == http.StatusSeeOther && (len(cs) != 1 || cs[0].MaxAge <= 0) {
		t.Errorf("MaxAge %v: Begin redirected with cookie %v: a cookie the browser deletes at once (want a clear error, or a clamped MaxAge)", ca.connect.MaxAge, cs)
	}
}

// The Callback's doc: "No error holds the code, the state, a token or a
// key." A token endpoint (or a proxy before it) that echoes the request
// in its error: the code and the client secret are redacted from Done's
// error, the state is not. Low stakes (a state is spent once its callback
// is served), but the sentence promises it. FAILS today.
func TestReview20EchoedStateNotInDonesError(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	cb := ca.begin("")
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body [4096]byte
		n, _ := r.Body.Read(body[:])
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":"invalid_request","error_description":%q}`, "cannot use "+string(body[:n]))
	}))
	defer echo.Close()
	conf := ca.fake.Config()
	conf.Endpoint.TokenURL = echo.URL + dropboxsigntest.TokenPath
	ctx := context.Background()
	accounts := dropboxsign.NewAccounts(ctx, conf, ca.store, dropboxsign.AsAnotherProcess())
	defer accounts.Shutdown(ctx)
	c := *ca.connect
	c.Accounts = accounts
	var got error
	c.Done = func(w http.ResponseWriter, r *http.Request, account string, err error) { got = err }
	r := httptest.NewRequest("GET", cb, nil)
	r.AddCookie(&http.Cookie{Name: "user", Value: "alice"})
	r.AddCookie(ca.stateCookie())
	c.Callback().ServeHTTP(httptest.NewRecorder(), r)
	if got == nil {
		t.Fatal("Done got no error")
	}
	u, _ := url.Parse(cb)
	for name, secret := range map[string]string{"code": u.Query().Get("code"), "state": u.Query().Get("state"), "client secret": conf.ClientSecret} {
		if strings.Contains(got.Error(), secret) {
			t.Errorf("Done's error holds the %s: %q", name, got)
		}
	}
}
