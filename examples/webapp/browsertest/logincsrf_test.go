package browsertest

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"
)

// Another site's page posts a sign-in form to the app (login CSRF: the
// victim, signed in as the attacker, would connect their Dropbox Sign to
// the attacker's account in the app). The browser sends the POST with
// the other site's Origin, and the app refuses it: the victim is not
// signed in as anyone.
func TestBrowserSignInFromAnotherSiteIsRefused(t *testing.T) {
	app := startApp(t)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/signin"><input name="user" value="mallory"></form><script>document.getElementById("f").submit()</script>`,
			html.EscapeString(app.URL))
	}))
	t.Cleanup(evil.Close)

	b := newBrowser(t, app)
	after := b.documentCount()
	b.do("opening the other site", chromedp.Navigate(evil.URL))
	if d := b.waitDocument("/signin", after); d.Status != http.StatusForbidden {
		t.Fatalf("the cross-site sign-in answered %d, want 403", d.Status)
	}
	// Not signed in: the settings page sends the browser home.
	b.do("opening the settings", chromedp.Navigate(app.URL+"/settings"), chromedp.WaitVisible(chromedp.CSS(`input[name="user"]`)))
	if n := len(b.requested("/settings")); n == 0 {
		t.Fatal("the settings page was never requested")
	}

	// The app's own sign-in form still works in the same browser.
	b.signIn("erin", "")
}
