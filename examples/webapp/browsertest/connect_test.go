package browsertest

import (
	"encoding/json"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// Status names the settings page gives in #status's data-status
// (dropboxsign.ConnectionStatus's String).
const (
	statusNever        = "never connected"
	statusConnected    = "connected"
	statusDisconnected = "disconnected"
)

// The app's flash messages after a connect flow (app.go's connectOutcomes).
const (
	flashConnected = "Dropbox Sign is connected."
	flashAgain     = "Dropbox Sign was not connected (access was declined, or the page was submitted twice): connect again."
)

// approveConnect signs in as user, connects and approves, and checks the
// app then says connected.
func approveConnect(t *testing.T, b *browser, user string) {
	t.Helper()
	b.signIn(user, "")
	b.connect()
	approve(t, b)
}

// approve clicks Approve on the consent page, and checks the app's
// callback took the answer (its 303 back to the settings page: the state
// cookie came back on the redirect from another site) and the settings
// page says connected.
func approve(t *testing.T, b *browser) {
	t.Helper()
	n := b.documentCount()
	b.do("approving", chromedp.Click(chromedp.ID("approve")))
	if d := b.waitDocument(callbackPath, n); d.Status != http.StatusSeeOther {
		t.Fatalf("the callback answered %d, want 303 to the settings page", d.Status)
	}
	b.waitStatus(statusConnected)
}

// The whole flow as a user goes through it: sign in, connect, approve on
// the consent page, send a signature request, disconnect.
func TestBrowserConnectSendDisconnect(t *testing.T) {
	app := startApp(t)
	b := newBrowser(t, app)

	b.signIn("alice", "01-home.png")
	if got := b.status(); got != statusNever {
		t.Fatalf("a new user's status is %q, want %q", got, statusNever)
	}
	b.screenshot("02-settings-not-connected.png")

	b.connect()
	if got := b.text("#app-name"); !strings.Contains(got, appName) {
		t.Errorf("the consent page names %q, want %q in it", got, appName)
	}
	if got := b.text("#scopes"); got == "" {
		t.Error("the consent page shows no scopes")
	}
	b.screenshot("03-consent.png")

	approve(t, b)
	if got := b.text(".flash"); got != flashConnected {
		t.Errorf("the flash after Approve says %q, want %q", got, flashConnected)
	}
	b.screenshot("04-settings-connected.png")

	const title, signer, email = "Lease for 5 Elm Street", "Bob Signer", "bob@example.com"
	b.do("opening the send page",
		chromedp.Click(chromedp.CSS(`a[href="/send"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="title"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="title"]`), title),
		chromedp.SendKeys(chromedp.CSS(`input[name="signer_name"]`), signer),
		chromedp.SendKeys(chromedp.CSS(`input[name="signer_email"]`), email),
		chromedp.Click(chromedp.CSS(`form[action="/send"] button`)),
		chromedp.WaitVisible(chromedp.ID("sent")),
	)
	if got := b.text("#sent"); !strings.Contains(got, title) {
		t.Errorf("#sent says %q, want the title %q in it", got, title)
	}
	if got := b.text("ul"); !strings.Contains(got, title) || !strings.Contains(got, email) {
		t.Errorf("the latest requests are %q, want %q to %s among them", got, title, email)
	}
	b.screenshot("05-send-sent.png")
	// The fake holds the request under the grant the user connected.
	if got := fakeTitles(t, app.Fake); len(got) != 1 || got[0] != title {
		t.Errorf("the fake holds the signature requests %q, want [%q]", got, title)
	}

	b.do("opening the settings", chromedp.Click(chromedp.CSS(`a[href="/settings"]`)), chromedp.WaitVisible(chromedp.CSS(`form[action="/dropbox-sign/disconnect"] button`)))
	b.do("disconnecting", chromedp.Click(chromedp.CSS(`form[action="/dropbox-sign/disconnect"] button`)))
	b.waitStatus(statusDisconnected)
	b.screenshot("06-settings-disconnected.png")

	st := app.Fake.Stats()
	if st.Authorizations != 1 || st.Exchanges != 1 || st.TokenRequests != 1 {
		t.Errorf("the fake saw %d consents, %d exchanges in %d token requests; want 1, 1, 1", st.Authorizations, st.Exchanges, st.TokenRequests)
	}
}

// fakeTitles returns the titles of the signature requests the fake holds
// for the one grant it issued, asking its API as the app would.
func fakeTitles(t *testing.T, fake *dropboxsigntest.Server) []string {
	t.Helper()
	issued := fake.IssuedTokens()
	if len(issued) != 1 {
		t.Fatalf("the fake issued %d access tokens, want 1", len(issued))
	}
	var tok string
	for k := range issued {
		tok = k
	}
	req, err := http.NewRequest(http.MethodGet, fake.URL+dropboxsigntest.SignatureRequestListPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := fake.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		List []struct {
			Title string `json:"title"`
		} `json:"signature_requests"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the fake's list answered %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	var titles []string
	for _, r := range out.List {
		titles = append(titles, r.Title)
	}
	return titles
}

// Deny on the consent page: back at the app's settings, told to connect
// again, not connected, and no token request.
func TestBrowserDeny(t *testing.T) {
	app := startApp(t)
	b := newBrowser(t, app)
	b.signIn("dana", "")
	b.connect()
	b.do("denying", chromedp.Click(chromedp.ID("deny")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if got := b.text(".flash"); got != flashAgain {
		t.Errorf("the flash after Deny says %q, want %q", got, flashAgain)
	}
	if got := b.status(); got != statusNever {
		t.Errorf("after Deny the status is %q, want %q", got, statusNever)
	}
	b.screenshot("07-deny.png")
	st := app.Fake.Stats()
	if st.Authorizations != 0 || st.TokenRequests != 0 || st.Exchanges != 0 {
		t.Errorf("after Deny the fake saw %d consents, %d token requests, %d exchanges; want none", st.Authorizations, st.TokenRequests, st.Exchanges)
	}
}

// refused checks the browser got the app's 400 for the callback, with
// want in its text, and that the user is still not connected and the fake
// saw a consent but no token request.
func refused(t *testing.T, b *browser, app *webapp, after int, want, shot string) {
	t.Helper()
	if d := b.waitDocument(callbackPath, after); d.Status != http.StatusBadRequest {
		t.Fatalf("the callback answered %d, want 400", d.Status)
	}
	b.waitPage(callbackPath, want)
	b.waitPage(callbackPath, "Back to the settings page") // the app's own page (Connect.Refuse)
	if shot != "" {
		b.screenshot(shot)
	}
	b.do("opening the settings", chromedp.Navigate(app.URL+"/settings"))
	if got := b.status(); got != statusNever {
		t.Errorf("after a refused callback the status is %q, want %q", got, statusNever)
	}
	st := app.Fake.Stats()
	if st.Authorizations != 1 || st.TokenRequests != 0 {
		t.Errorf("the fake saw %d consents and %d token requests; want 1 and 0 (no token request for a refused callback)", st.Authorizations, st.TokenRequests)
	}
}

// The callback's state changed on its way (the browser's request to the
// callback, rewritten with the Fetch domain), or the browser's connect
// cookie gone: the app refuses with 400 and asks for no token.
func TestBrowserTamperedState(t *testing.T) {
	t.Run("state", func(t *testing.T) {
		app := startApp(t)
		b := newBrowser(t, app)
		b.signIn("erin", "")
		b.connect()

		paused := chromedp.Events(b.ctx, fetch.RequestPaused) // subscribed from here on
		if _, err := chromedp.Call(b.ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
			{URLPattern: app.URL + callbackPath + "?*", RequestStage: fetch.RequestStageRequest},
		}}); err != nil {
			t.Fatal(err)
		}
		n := b.documentCount()
		b.do("approving", chromedp.Click(chromedp.ID("approve")))
		var ev fetch.EventRequestPaused
		for e, err := range paused {
			if err != nil {
				t.Fatalf("waiting for the callback request: %v", err)
			}
			ev = e
			break
		}
		u, err := url.Parse(ev.Request.URL)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		state := q.Get("state")
		if state == "" || q.Get("code") == "" {
			t.Fatalf("the paused callback has no state or code: %s", u.Path)
		}
		// Another state of the same shape: its first character changed.
		tampered := "A" + state[1:]
		if state[0] == 'A' {
			tampered = "B" + state[1:]
		}
		q.Set("state", tampered)
		u.RawQuery = q.Encode()
		b.continueRequest(ev.RequestID, u.String())
		if _, err := chromedp.Call(b.ctx, fetch.Disable, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
		refused(t, b, app, n, "the state does not match", "08-tampered-state.png")
	})

	t.Run("cookie deleted", func(t *testing.T) {
		app := startApp(t)
		b := newBrowser(t, app)
		b.signIn("frank", "")
		b.connect()
		b.deleteConnectCookie()
		n := b.documentCount()
		b.do("approving", chromedp.Click(chromedp.ID("approve")))
		refused(t, b, app, n, "no connect flow is under way in this browser", "")
	})
}

// The callback URL opened again after a successful connect (the back
// button, a bookmark), in the same browser and in another user's: refused
// with 400, and no second grant.
func TestBrowserCallbackReplayed(t *testing.T) {
	app := startApp(t)
	b := newBrowser(t, app)
	approveConnect(t, b, "gina")
	cbs := b.requested(callbackPath)
	if len(cbs) != 1 {
		t.Fatalf("the browser requested the callback %d times, want 1", len(cbs))
	}
	callback := cbs[0]

	resp, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(callback))
	if err != nil {
		t.Fatalf("opening the callback again: %v", err)
	}
	if resp.Status != http.StatusBadRequest {
		t.Fatalf("the replayed callback answered %d, want 400", resp.Status)
	}
	b.waitPage(callbackPath, "no connect flow is under way in this browser")
	b.waitPage(callbackPath, "Back to the settings page")
	b.screenshot("09-callback-replayed.png")
	b.do("opening the settings", chromedp.Navigate(app.URL+"/settings"))
	if got := b.status(); got != statusConnected {
		t.Errorf("after the replay the status is %q, want %q", got, statusConnected)
	}
	if st := app.Fake.Stats(); st.Exchanges != 1 || st.TokenRequests != 1 {
		t.Errorf("after the replay the fake saw %d exchanges in %d token requests, want 1 in 1", st.Exchanges, st.TokenRequests)
	}

	// Another user, in another browser, with the captured URL.
	other := newBrowser(t, app)
	other.signIn("hank", "")
	resp, err = chromedp.Run(other.ctx, chromedp.NavigateResponse(callback))
	if err != nil {
		t.Fatalf("opening the callback in another browser: %v", err)
	}
	if resp.Status != http.StatusBadRequest {
		t.Fatalf("the callback in another user's browser answered %d, want 400", resp.Status)
	}
	other.waitPage(callbackPath, "no connect flow is under way in this browser")
	other.do("opening the settings", chromedp.Navigate(app.URL+"/settings"))
	if got := other.status(); got != statusNever {
		t.Errorf("the other user's status is %q, want %q", got, statusNever)
	}
	if st := app.Fake.Stats(); st.Exchanges != 1 || st.TokenRequests != 1 {
		t.Errorf("after the other browser's try the fake saw %d exchanges in %d token requests, want 1 in 1", st.Exchanges, st.TokenRequests)
	}
}

// A double click on Connect, then Approve: connected, with one grant.
func TestBrowserDoubleClickConnect(t *testing.T) {
	// Both clicks at once, as the mouse sends them: Chrome submits the
	// form once (the second submission replaces the first before it
	// starts), so this is the plain flow behind a double click.
	t.Run("instant", func(t *testing.T) {
		app := startApp(t)
		b := newBrowser(t, app)
		b.signIn("ivy", "")
		b.doubleClick(connectButton)
		b.do("waiting for the consent page", chromedp.WaitVisible(chromedp.ID("approve")))
		t.Logf("the browser sent %d connect requests", len(b.requested("/dropbox-sign/connect")))
		approve(t, b)
		if st := app.Fake.Stats(); st.Exchanges != 1 || st.TokenRequests != 1 {
			t.Errorf("the fake saw %d exchanges in %d token requests, want 1 in 1", st.Exchanges, st.TokenRequests)
		}
	})

	// The second click after the app answered the first (a slower double
	// click): both reach the app, each sets a state cookie and redirects
	// to the consent page, and the second replaces the first. The first
	// redirect is held (Fetch) so that the second click lands on the
	// settings page still, whatever the machine's speed.
	t.Run("second click after the app answered the first", func(t *testing.T) {
		app := startApp(t)
		b := newBrowser(t, app)
		b.signIn("jack", "")
		paused := chromedp.Events(b.ctx, fetch.RequestPaused)
		if _, err := chromedp.Call(b.ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
			{URLPattern: app.Fake.URL + dropboxsigntest.AuthorizePath + "?*", RequestStage: fetch.RequestStageRequest},
		}}); err != nil {
			t.Fatal(err)
		}
		next, stop := iter.Pull2(paused)
		defer stop()
		consent := func() fetch.EventRequestPaused {
			t.Helper()
			ev, err, ok := next()
			if !ok || err != nil {
				t.Fatalf("waiting for the redirect to the consent page: %v", err)
			}
			return ev
		}
		x, y := b.center(connectButton)
		b.click(x, y, 1)
		first := consent() // the app has answered the first click
		b.click(x, y, 2)
		second := consent()
		if stateOf(t, first.Request.URL) == stateOf(t, second.Request.URL) {
			t.Fatal("both clicks got the same state: the second did not reach the app")
		}
		b.continueRequest(second.RequestID, "")
		// The first navigation was cancelled by the second; continuing
		// it fails or goes nowhere.
		chromedp.Call(b.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: first.RequestID})
		if _, err := chromedp.Call(b.ctx, fetch.Disable, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
		b.do("waiting for the consent page", chromedp.WaitVisible(chromedp.ID("approve")))
		approve(t, b)
		if n := len(b.requested("/dropbox-sign/connect")); n != 2 {
			t.Errorf("the browser sent %d connect requests, want 2", n)
		}
		if st := app.Fake.Stats(); st.Exchanges != 1 || st.TokenRequests != 1 {
			t.Errorf("the fake saw %d exchanges in %d token requests, want 1 in 1", st.Exchanges, st.TokenRequests)
		}
	})
}

// stateOf returns the state parameter of rawURL.
func stateOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	s := u.Query().Get("state")
	if s == "" {
		t.Fatalf("no state in %s", u.Path)
	}
	return s
}
