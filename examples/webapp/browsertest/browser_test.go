package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// hangGuard bounds a whole browser test: only a hang ends there; every
// verdict comes from what the pages and the fake show.
const hangGuard = 2 * time.Minute

// chromiumPath returns Debian's Chromium. Without one the test is skipped,
// except under CI=true, where a missing browser is a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (CI must install it: apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// browser is one headless Chromium with a fresh profile, one tab, and a
// record of the tab's top-level document requests and responses.
type browser struct {
	t   *testing.T
	app *webapp
	ctx context.Context // the tab, under the hang guard

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced at each record
	requests []string      // document requests' URLs, in order
	docs     []document    // document responses, redirects included, in order
}

// document is a top-level document's response.
type document struct {
	URL    string
	Status int64
}

// newBrowser starts a browser for app; it closes when t ends.
func newBrowser(t *testing.T, app *webapp) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.WindowSize(1000, 700),
		chromedp.UserDataDir(t.TempDir()),
		// app.test is the app; every other name fails to resolve, so
		// the browser reaches nothing beyond 127.0.0.1.
		chromedp.Flag("host-resolver-rules", "MAP "+appHost+" 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	// The first Do starts the browser, bound to tabCtx (no deadline).
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(tabCtx, hangGuard)
	t.Cleanup(cancel)
	b := &browser{t: t, app: app, ctx: ctx, changed: make(chan struct{})}
	err := chromedp.Listen(tabCtx, func(ev any) {
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if ev.Type == network.ResourceTypeDocument {
				b.record(func() {
					// A redirect's response comes only here, with the
					// request it leads to.
					if r := ev.RedirectResponse; r != nil {
						b.docs = append(b.docs, document{URL: r.URL, Status: r.Status})
					}
					b.requests = append(b.requests, ev.Request.URL)
				})
			}
		case *network.EventResponseReceived:
			if ev.Type == network.ResourceTypeDocument {
				b.record(func() { b.docs = append(b.docs, document{URL: ev.Response.URL, Status: ev.Response.Status}) })
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) record(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f()
	close(b.changed)
	b.changed = make(chan struct{})
}

// do runs actions in the tab; what says what they were for a failure.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// text returns the text of the first element sel matches, once visible.
func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

// documentCount is how many document responses the tab has had.
func (b *browser) documentCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.docs)
}

// waitDocument waits for a document response for path after the first
// `after` ones, and returns it.
func (b *browser) waitDocument(path string, after int) document {
	b.t.Helper()
	for {
		b.mu.Lock()
		for _, d := range b.docs[after:] {
			if u, err := url.Parse(d.URL); err == nil && u.Path == path {
				b.mu.Unlock()
				return d
			}
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-b.ctx.Done():
			b.t.Fatalf("no response for %s came (hang guard): %v", path, b.ctx.Err())
		}
	}
}

// requested returns the document requests' URLs whose path is path.
func (b *browser) requested(path string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.requests {
		if u, err := url.Parse(r); err == nil && u.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// waitPage waits until the page at path (on any host) shows want in its
// text: for the plain-text pages (a 400) that no selector tells apart.
// It polls in the page, and starts again when a navigation ends a poll.
func (b *browser) waitPage(path, want string) string {
	b.t.Helper()
	pathJSON, _ := json.Marshal(path)
	wantJSON, _ := json.Marshal(want)
	js := `location.pathname === ` + string(pathJSON) + ` && document.body !== null && document.body.innerText.includes(` + string(wantJSON) + `) && document.body.innerText`
	var lastErr error
	for errs := 0; errs < 20; errs++ {
		text, err := chromedp.Run(b.ctx, chromedp.Poll[string](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(0)))
		if err == nil {
			return text
		}
		if b.ctx.Err() != nil {
			break
		}
		lastErr = err // a navigation ended the poll: poll the new page
	}
	body, _ := chromedp.Run(context.WithoutCancel(b.ctx), chromedp.Evaluate[string](`location.href + "\n" + (document.body ? document.body.innerText : "")`))
	b.t.Fatalf("the page %s never showed %q (%v); it shows:\n%s", path, want, lastErr, body)
	return ""
}

// status returns the app's Dropbox Sign status as the settings page says
// it (#status's data-status), once the page shows it.
func (b *browser) status() string {
	b.t.Helper()
	res, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.CSS("#status"), "data-status"))
	if err != nil {
		b.t.Fatalf("reading the status: %v", err)
	}
	return res.Value
}

// waitStatus waits for the settings page with the given status.
func (b *browser) waitStatus(status string) {
	b.t.Helper()
	b.do("waiting for the settings page saying "+status, chromedp.WaitVisible(chromedp.CSS(`#status[data-status="`+status+`"]`)))
}

// signIn opens the app's home page and signs in as user; shot, if not
// empty, names the home page's screenshot.
func (b *browser) signIn(user, shot string) {
	b.t.Helper()
	b.do("opening the home page", chromedp.Navigate(b.app.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`input[name="user"]`)))
	if shot != "" {
		b.screenshot(shot)
	}
	b.do("signing in",
		chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), user),
		chromedp.Click(chromedp.CSS(`form[action="/signin"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#status`)),
	)
	if got := b.text("#user"); got != user {
		b.t.Fatalf("signed in as %q, want %q", got, user)
	}
}

// connectButton is the settings page's Connect (or Reconnect) button.
const connectButton = `form[action^="/dropbox-sign/connect"] button`

// connect clicks Connect and waits for the fake's consent page.
func (b *browser) connect() {
	b.t.Helper()
	b.do("clicking Connect", chromedp.Click(chromedp.CSS(connectButton)), chromedp.WaitVisible(chromedp.ID("approve")))
}

// center returns the viewport coordinates of the center of the element
// sel matches, scrolled into view, for clicks by mouse events alone: they
// reach the page while a navigation is under way, when the query actions
// wait for it to end.
func (b *browser) center(sel string) (x, y float64) {
	b.t.Helper()
	b.do("waiting for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.ScrollIntoView(chromedp.CSS(sel)))
	selJSON, _ := json.Marshal(sel)
	xy, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]float64](`(() => { const r = document.querySelector(`+string(selJSON)+`).getBoundingClientRect(); return [r.x + r.width/2, r.y + r.height/2]; })()`))
	if err != nil || len(xy) != 2 {
		b.t.Fatalf("locating %s: %v %v", sel, xy, err)
	}
	return xy[0], xy[1]
}

// click presses and releases the left button at x, y; count is the
// click's clickCount (2 for the second click of a double click).
func (b *browser) click(x, y float64, count int) {
	b.t.Helper()
	b.do("clicking",
		chromedp.MouseEvent(chromedp.MousePressed, x, y, chromedp.ButtonLeft, chromedp.ClickCount(count)),
		chromedp.MouseEvent(chromedp.MouseReleased, x, y, chromedp.ButtonLeft, chromedp.ClickCount(count)),
	)
}

// doubleClick clicks twice at the center of the element sel matches, as a
// person's double click does (the second click with clickCount 2), with
// nothing waited for between them.
func (b *browser) doubleClick(sel string) {
	b.t.Helper()
	x, y := b.center(sel)
	b.click(x, y, 1)
	b.click(x, y, 2)
}

// connectCookie returns the browser's connect cookie for the app, if any.
func (b *browser) connectCookie() (*network.Cookie, bool) {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.app.URL + callbackPath}})
	if err != nil {
		b.t.Fatalf("reading the cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == "dropboxsign_connect" {
			return c, true
		}
	}
	return nil, false
}

// deleteConnectCookie deletes the app's connect cookie from the browser,
// and checks it was there and is gone.
func (b *browser) deleteConnectCookie() {
	b.t.Helper()
	if _, ok := b.connectCookie(); !ok {
		b.t.Fatal("the browser holds no connect cookie to delete")
	}
	if _, err := chromedp.Call(b.ctx, network.DeleteCookies, network.DeleteCookiesParams{Name: "dropboxsign_connect", URL: b.app.URL + callbackPath}); err != nil {
		b.t.Fatalf("deleting the connect cookie: %v", err)
	}
	if _, ok := b.connectCookie(); ok {
		b.t.Fatal("the connect cookie is still there after Network.deleteCookies")
	}
}

// screenshot takes a full-page PNG of what the tab shows, checks it is a
// PNG of a sensible size, and writes it as name (such as "01-home.png") to
// -screenshots DIR, or to a temporary directory.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(buf))
	if err != nil {
		b.t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	if cfg.Width < 500 || cfg.Height < 300 || cfg.Width > 4000 || cfg.Height > 8000 {
		b.t.Fatalf("screenshot %s is %dx%d: not the page", name, cfg.Width, cfg.Height)
	}
	dir := *screenshotDir
	if dir == "" {
		dir = b.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// continueRequest resumes a request paused by the Fetch domain, at url if
// not empty.
func (b *browser) continueRequest(id fetch.RequestID, url string) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: id, URL: url}); err != nil {
		b.t.Fatalf("continuing the paused request: %v", err)
	}
}
