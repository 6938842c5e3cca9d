package dropboxsign_test

// Review of issue 20's connect flow: attacks that hold today, pinned.

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
)

// Two tabs: each Begin overwrites the one state cookie, so the first
// tab's callback is refused (400, no token request), the cookie is kept,
// and the second tab's completes. Behaviour worth keeping: a refusal must
// not consume the browser's live flow.
func TestReview20TwoTabsFirstRefusedSecondCompletes(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	cb1 := ca.begin("/tab1")
	cb2 := ca.begin("/tab2")
	ca.refused(cb1, "the first tab's callback after a second Begin")
	if ca.stateCookie() == nil {
		t.Fatal("the refused callback deleted the second tab's cookie")
	}
	if status, loc, _ := ca.get(cb2); status != http.StatusSeeOther || loc != "/tab2?connected=1" {
		t.Errorf("the second tab's callback: %d %q, want 303 to /tab2?connected=1", status, loc)
	}
}

// Return paths through encodings a browser or a later decoding might take
// for another host: the default Done's Location, and a custom Done that
// puts ConnectReturn in the Location header as it is, both resolve to the
// app's own host. Behaviour worth keeping (holds today).
func TestReview20ReturnEncodingsStayLocal(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	var raw string
	app, _ := url.Parse(ca.app.URL + "/callback")
	for _, ret := range []string{"/%2F%2Fevil.example", "/.//evil.example", "/%5Cevil.example", "/%5C%5Cevil.example",
		"/%09/evil.example", "/%0d%0aSet-Cookie:x=1", "/\u3002evil.example", "/..//evil.example", "/a/../..//evil.example",
		"/\u2028//evil.example", "/%2e%2e//evil.example", "/?//evil.example", "/#//evil.example", "///evil.example"} {
		for _, custom := range []bool{false, true} {
			ca.connect.Done = nil
			if custom {
				ca.connect.Done = func(w http.ResponseWriter, r *http.Request, _ string, _ error) {
					raw = dropboxsign.ConnectReturn(r)
					w.Header().Set("Location", raw)
					w.WriteHeader(http.StatusSeeOther)
				}
			}
			cb := ca.begin(ret)
			status, loc, body := ca.get(cb)
			if strings.ContainsAny(loc, "\r\n") {
				t.Errorf("return=%q: a header with a line break: %q", ret, loc)
			}
			l, err := url.Parse(loc)
			if status != http.StatusSeeOther || err != nil {
				t.Errorf("return=%q (custom Done %v): %d %q %q", ret, custom, status, loc, body)
				continue
			}
			if got := app.ResolveReference(l); got.Host != app.Host {
				t.Errorf("return=%q (custom Done %v): Location %q goes to %q", ret, custom, loc, got)
			}
		}
	}
}

// A callback with both code and error is a refusal: Done gets
// Reauthorize, no token request; an error value with markup or control
// characters does not reach the error text.
func TestReview20ErrorAndCodeTogether(t *testing.T) {
	ca := newConnectApp(t, connectKey(t))
	var got error
	ca.connect.Done = func(w http.ResponseWriter, r *http.Request, _ string, err error) {
		got = err
		w.WriteHeader(http.StatusNoContent)
	}
	cb := ca.begin("")
	before := ca.tokenRequests()
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Set("error", "<script>alert(1)</script>\r\nX: y")
	u.RawQuery = q.Encode()
	if status, _, _ := ca.get(u.String()); status != http.StatusNoContent {
		t.Fatalf("code and error: %d, want Done's 204", status)
	}
	if ca.tokenRequests() != before || dropboxsign.Classify(got) != dropboxsign.Reauthorize ||
		strings.ContainsAny(got.Error(), "<>\r\n") || strings.Contains(got.Error(), q.Get("code")) {
		t.Errorf("code and error: Done got %q (%v), %d token requests; want Reauthorize, none, no markup or code", got, dropboxsign.Classify(got), ca.tokenRequests()-before)
	}
}
