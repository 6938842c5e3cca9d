package dropboxsigntest_test

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// noRedirects is the fake's client, stopping at the first redirect.
func noRedirects(srv *dropboxsigntest.Server) *http.Client {
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// consentPage GETs the authorize URL as a browser does and returns the
// status, the page and its form's fields.
func consentPage(t *testing.T, srv *dropboxsigntest.Server, authURL string) (int, string, url.Values) {
	t.Helper()
	req, _ := http.NewRequest("GET", authURL, nil)
	req.Header.Set("Accept", browserAccept)
	resp, err := noRedirects(srv).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	page := string(b)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q, want text/html", ct)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("the consent page may be framed or cached: %v", resp.Header)
	}
	fields := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`).FindAllStringSubmatch(page, -1) {
		fields.Set(m[1], html.UnescapeString(m[2]))
	}
	return resp.StatusCode, page, fields
}

// answer posts the consent form with decision and returns the status and
// the redirect's target.
func answer(t *testing.T, srv *dropboxsigntest.Server, fields url.Values, decision string) (int, *url.URL) {
	t.Helper()
	form := url.Values{}
	for k, v := range fields {
		form[k] = v
	}
	form.Set("decision", decision)
	resp, err := noRedirects(srv).PostForm(srv.URL+dropboxsigntest.AuthorizePath, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return resp.StatusCode, loc
}

func TestConsentPageShowsTheAppAndScopesEscaped(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	srv.AppName = `Acme <script>alert(1)</script> & Co`
	authURL := srv.Config().AuthCodeURL(`st"ate<x>`) + "&scope=" + url.QueryEscape("request_signature basic_account_info,<b>x</b>")
	status, page, fields := consentPage(t, srv, authURL)
	if status != 200 {
		t.Fatalf("consent page: %d\n%s", status, page)
	}
	for _, want := range []string{
		"Acme &lt;script&gt;alert(1)&lt;/script&gt; &amp; Co",
		"<li>request_signature</li>", "<li>basic_account_info</li>", "<li>&lt;b&gt;x&lt;/b&gt;</li>",
		`id="approve"`, `id="deny"`, `method="post"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, "<b>") {
		t.Errorf("the page carries unescaped input:\n%s", page)
	}
	if fields.Get("client_id") != srv.ClientID || fields.Get("state") != `st"ate<x>` ||
		fields.Get("redirect") != srv.URL+dropboxsigntest.CallbackPath || fields.Get("csrf_token") == "" {
		t.Errorf("form fields = %v", fields)
	}
	if st := srv.Stats(); st.Authorizations != 0 {
		t.Errorf("showing the page authorized: %+v", st)
	}

	// The default name, and no scopes asked for.
	srv2 := dropboxsigntest.NewServer()
	defer srv2.Close()
	if _, page, _ := consentPage(t, srv2, srv2.Config().AuthCodeURL("s")); !strings.Contains(page, "<strong>Test App</strong>") || strings.Contains(page, "<li>") {
		t.Errorf("default page:\n%s", page)
	}
}

func TestConsentApproveGivesACodeThatExchanges(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	srv.SetCallbackURL("http://127.0.0.1:1/cb?app=1")
	_, _, fields := consentPage(t, srv, srv.Config().AuthCodeURL("s1"))
	status, loc := answer(t, srv, fields, "approve")
	code := loc.Query().Get("code")
	if status != http.StatusSeeOther || loc.Host != "127.0.0.1:1" || loc.Path != "/cb" || loc.Query().Get("state") != "s1" || code == "" {
		t.Fatalf("approve: %d to %v", status, loc)
	}
	status, tok := post(t, srv, "", map[string]string{
		"grant_type": "authorization_code", "code": code, "state": "s1",
		"client_id": srv.ClientID, "client_secret": srv.ClientSecret,
	})
	if status != 200 || tok["access_token"] == nil {
		t.Errorf("exchange of the approved code: %d %v", status, tok)
	}
	if st := srv.Stats(); st.Authorizations != 1 || st.Exchanges != 1 {
		t.Errorf("stats = %+v", st)
	}

	// The same answer again (a double click, the back button): the same
	// redirect, no second code; another answer: refused.
	if status, again := answer(t, srv, fields, "approve"); status != http.StatusSeeOther || again.String() != loc.String() {
		t.Errorf("approved twice: %d to %v, want %d to %v", status, again, http.StatusSeeOther, loc)
	}
	if status, other := answer(t, srv, fields, "deny"); status != http.StatusForbidden || other.String() != "" {
		t.Errorf("denied after approving: %d to %v, want 403", status, other)
	}
	if st := srv.Stats(); st.Authorizations != 1 {
		t.Errorf("a replayed form authorized again: %+v", st)
	}
}

func TestConsentDenyRedirectsWithAccessDenied(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	_, _, fields := consentPage(t, srv, srv.Config().AuthCodeURL("s2"))
	status, loc := answer(t, srv, fields, "deny")
	if status != http.StatusSeeOther || loc.Path != dropboxsigntest.CallbackPath ||
		loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "s2" || loc.Query().Has("code") {
		t.Errorf("deny: %d to %v", status, loc)
	}
	if st := srv.Stats(); st.Authorizations != 0 {
		t.Errorf("deny authorized: %+v", st)
	}
}

func TestConsentFormIsChecked(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	for _, tc := range []struct {
		name   string
		change func(url.Values)
		want   int
	}{
		{"no token", func(f url.Values) { f.Del("csrf_token") }, http.StatusForbidden},
		{"unknown token", func(f url.Values) { f.Set("csrf_token", "0123456789abcdef0123456789abcdef") }, http.StatusForbidden},
		{"other state", func(f url.Values) { f.Set("state", "forged") }, http.StatusForbidden},
		{"other client", func(f url.Values) { f.Set("client_id", "someone-else") }, http.StatusForbidden},
		{"other redirect", func(f url.Values) { f.Set("redirect", "https://evil.example/cb") }, http.StatusForbidden},
		{"no decision", func(f url.Values) { f.Set("decision", "") }, http.StatusBadRequest},
		{"odd decision", func(f url.Values) { f.Set("decision", "maybe") }, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, fields := consentPage(t, srv, srv.Config().AuthCodeURL("s"))
			form := url.Values{"decision": {"approve"}}
			for k, v := range fields {
				form[k] = v
			}
			tc.change(form)
			resp, err := noRedirects(srv).PostForm(srv.URL+dropboxsigntest.AuthorizePath, form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want || resp.Header.Get("Location") != "" {
				t.Errorf("got %d to %q, want %d and no redirect", resp.StatusCode, resp.Header.Get("Location"), tc.want)
			}
		})
	}
	if st := srv.Stats(); st.Authorizations != 0 {
		t.Errorf("a bad form authorized: %+v", st)
	}
	// A bad authorize request gets an HTML error page, not a form.
	status, page, fields := consentPage(t, srv, srv.URL+dropboxsigntest.AuthorizePath+"?response_type=code&client_id=someone-else&state=s")
	if status != 400 || len(fields) != 0 || !strings.Contains(page, "Unknown client_id") {
		t.Errorf("unknown client: %d %v\n%s", status, fields, page)
	}
}

func TestScriptedAuthorizeIsUnchangedBesideTheConsentPage(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	conf := srv.Config()
	get := func(accept string) *http.Response {
		req, _ := http.NewRequest("GET", conf.AuthCodeURL("s"), nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := noRedirects(srv).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, accept := range []string{"", "application/json", "*/*"} {
		resp := get(accept)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
			t.Errorf("Accept %q: %d to %v, want the immediate redirect with a code", accept, resp.StatusCode, loc)
		}
	}
	srv.SetDenyConsent(true)
	resp := get("")
	if loc, _ := url.Parse(resp.Header.Get("Location")); loc.Query().Get("error") != "access_denied" {
		t.Errorf("SetDenyConsent: redirected to %v", loc)
	}
	// A browser still gets the page: the person decides.
	if resp := get(browserAccept); resp.StatusCode != 200 || resp.Header.Get("Location") != "" {
		t.Errorf("browser under SetDenyConsent: %d", resp.StatusCode)
	}
	// A scripted POST is refused as before.
	resp, err := srv.Client().Post(srv.URL+dropboxsigntest.AuthorizePath, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("JSON POST: %d, want 405", resp.StatusCode)
	}
}
