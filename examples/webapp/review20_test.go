package main

// Review of issue 20's example app: attacks and mistakes, each a test.

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
)

// Login CSRF on the app's own sign-in: another site's form posts
// user=mallory to /signin in the victim's browser, and the app signs the
// victim in as mallory (a SameSite=Lax cookie is set by a cross-site
// top-level POST's answer). The victim then clicks "Connect Dropbox Sign"
// and approves with their own Dropbox Sign account: mallory's app account
// now holds the victim's grant, and mallory sends signature requests as
// the victim. Connect's state binds the flow to the signed-in user, which
// is mallory here: only the app's sign-in can stop this. An app copying
// the example copies the hole (with a real password check, the attacker
// signs in with their own password). FAILS today: /signin has no CSRF
// check (not even Origin / Sec-Fetch-Site, which http.CrossOriginProtection
// checks).
func TestReview20SignInLoginCSRF(t *testing.T) {
	ta := newTestApp(t)
	victim := newBrowser(t, ta.url)
	req, err := http.NewRequest(http.MethodPost, ta.url+pathSignIn, strings.NewReader(url.Values{"user": {"mallory"}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	p := victim.do(req)
	if p.status != http.StatusForbidden {
		t.Errorf("a cross-site POST to /signin: %d at %s, want 403", p.status, p.path)
	}
	// What follows if it is accepted: the victim connects "their" account.
	if p.path == pathSettings {
		p = victim.post(pathConnect+"?return="+pathSettings, url.Values{"csrf": {p.csrf(t)}})
		if c := ta.accounts.Connection(context.Background(), "mallory"); c.Status == dropboxsign.StatusConnected {
			t.Errorf("the victim's Dropbox Sign grant is now mallory's (settings: %s)", p.dsStatus(t))
		}
	}
}

// A callback submitted twice (two clicks on Approve, the second request
// sent after the first's answer deleted the state cookie): the first
// connects, the second is refused (documented: 400), and the app's
// refusal page tells the user "Nothing was changed … connect from there"
// while the account IS connected. FAILS today: the page should say what
// is true (the status), or the library should answer a replay of the
// state it just completed as completed (e.g. a sealed tombstone cookie
// instead of a deleted one).
func TestReview20DoubleSubmittedCallbackPageTellsTheTruth(t *testing.T) {
	ta := newTestApp(t)
	b := newBrowser(t, ta.url)
	p := signIn(t, b, "alice")
	// Stop at the callback, as a second click would have it to send again.
	var callback string
	b.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == pathCallback {
			callback = req.URL.String()
			return http.ErrUseLastResponse
		}
		return nil
	}
	b.post(pathConnect+"?return="+pathSettings, url.Values{"csrf": {p.csrf(t)}})
	b.c.CheckRedirect = nil
	if callback == "" {
		t.Fatal("no redirect to the callback")
	}
	if p = b.get(strings.TrimPrefix(callback, ta.url)); p.path != pathSettings || p.dsStatus(t) != "connected" {
		t.Fatalf("first callback: %d at %s", p.status, p.path)
	}
	p = b.get(strings.TrimPrefix(callback, ta.url))
	if p.status != http.StatusBadRequest {
		t.Fatalf("the second submission: %d, want 400 (documented)", p.status)
	}
	if c := ta.accounts.Connection(context.Background(), "alice"); c.Status == dropboxsign.StatusConnected &&
		strings.Contains(p.body, "Nothing was changed") {
		t.Errorf("alice is connected, and the page for her second submission says %q", between(p.body, `id="refused">`, "</p>\n<p>")+" Nothing was changed.")
	}
	if n := ta.fake.Stats().TokenRequests; n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
}

func between(s, from, to string) string {
	_, s, _ = strings.Cut(s, from)
	s, _, _ = strings.Cut(s, to)
	return s
}
