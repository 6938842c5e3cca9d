package oteldropboxsign_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/oteldropboxsign"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/oauth2"
)

// The sample alerts of docs/operating.md ("Prometheus names and sample
// alerts") read the Observer's metrics under their Prometheus names: dots
// become underscores, counters get _total, and the attributes
// dropboxsign.token.operation, dropboxsign.outcome and error.type become the
// labels dropboxsign_token_operation, dropboxsign_outcome and error_type.
// pagingSelectors are the series the alerts that page an operator select,
// each as written in the YAML (fragment) and as the same selection over the
// OpenTelemetry data points (metric, match). An alert fires only if one of
// its series grows, so a scenario in which none of these series has a
// non-zero value pages nobody.
var pagingSelectors = []struct {
	alert    string
	fragment string // the selector in docs/operating.md, whitespace aside
	metric   string // the OTel instrument behind the Prometheus name
	match    func(attrs map[string]string) bool
}{
	{
		// dropboxsign_token_requests_total{dropboxsign_token_operation="refresh",
		//     dropboxsign_outcome=~"temporary|rate_limited|misconfigured"}
		// = dropboxsign.token.requests with dropboxsign.token.operation=refresh
		// and dropboxsign.outcome one of temporary, rate_limited,
		// misconfigured. (The alert's "unless" part, a refresh that
		// succeeds, can only silence it: the failing half alone is
		// stricter.)
		alert:    "DropboxSignRefreshesFailing",
		fragment: `dropboxsign_token_requests_total{dropboxsign_token_operation="refresh", dropboxsign_outcome=~"temporary|rate_limited|misconfigured"}`,
		metric:   "dropboxsign.token.requests",
		match: func(a map[string]string) bool {
			return a["dropboxsign.token.operation"] == "refresh" &&
				slices.Contains([]string{"temporary", "rate_limited", "misconfigured"}, a["dropboxsign.outcome"])
		},
	},
	{
		// dropboxsign_token_requests_total{dropboxsign_outcome="misconfigured"}
		// = dropboxsign.token.requests with dropboxsign.outcome=misconfigured,
		// exchanges and refreshes alike.
		alert:    "DropboxSignMisconfigured",
		fragment: `dropboxsign_token_requests_total{dropboxsign_outcome="misconfigured"}`,
		metric:   "dropboxsign.token.requests",
		match:    func(a map[string]string) bool { return a["dropboxsign.outcome"] == "misconfigured" },
	},
	{
		// dropboxsign_token_invalidations_total{error_type="fresh_token_refused"}
		// = dropboxsign.token.invalidations with error.type=fresh_token_refused.
		alert:    "DropboxSignMisconfigured",
		fragment: `dropboxsign_token_invalidations_total{error_type="fresh_token_refused"}`,
		metric:   "dropboxsign.token.invalidations",
		match:    func(a map[string]string) bool { return a["error.type"] == "fresh_token_refused" },
	},
	{
		// dropboxsign_token_save_failures_total, any labels
		// = dropboxsign.token.save.failures, any attributes.
		alert:    "DropboxSignSaveFailures",
		fragment: `increase(dropboxsign_token_save_failures_total[5m])`,
		metric:   "dropboxsign.token.save.failures",
		match:    func(map[string]string) bool { return true },
	},
	{
		// dropboxsign_store_errors_total, any labels
		// = dropboxsign.store.errors, any attributes.
		alert:    "DropboxSignStoreErrors",
		fragment: `rate(dropboxsign_store_errors_total[5m])`,
		metric:   "dropboxsign.store.errors",
		match:    func(map[string]string) bool { return true },
	},
}

// notPaging are the other sample alerts, and why a user's action cannot
// page anyone through them: a ticket is no page, and the rest measure the
// machinery, not what users do. An alert in the YAML that is in neither
// list fails TestTheSampleAlertsAreAllClassified until it is placed.
var notPaging = map[string]string{
	"DropboxSignAccountsToReconnect": "a ticket: users who must reconnect",
	"DropboxSignConnectionsFailing":  "a ticket: failed code exchanges (declined, used or tampered codes among them)",
	"DropboxSignWatchFailing":        "a ticket: the store's push channel",
	"DropboxSignPlaintextTokens":     "a ticket: tokens written without a sealer",
	"DropboxSignSlowTokenRequests":   "the token endpoint's latency (not asserted: it depends on the machine)",
	"DropboxSignEventsDropped":       "observers falling behind: checked zero below, as dropboxsign.event.dropped",
}

// A series is one collected data point: an instrument, its attributes, its
// value, and which process recorded it.
type series struct {
	Process string            `json:"process"`
	Metric  string            `json:"metric"`
	Attrs   map[string]string `json:"attrs"`
	Value   float64           `json:"value"`
}

func (s series) String() string {
	var kv []string
	for k, v := range s.Attrs {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return fmt.Sprintf("%s: %s{%s} = %v", s.Process, s.Metric, strings.Join(kv, ","), s.Value)
}

// collectSeries reads every data point of reader once (a histogram's value
// is its count).
func collectSeries(t *testing.T, reader *sdkmetric.ManualReader, process string) []series {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var out []series
	add := func(name string, set attribute.Set, v float64) {
		attrs := map[string]string{}
		for _, kv := range set.ToSlice() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		out = append(out, series{Process: process, Metric: name, Attrs: attrs, Value: v})
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, float64(p.Value))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, float64(p.Count))
				}
			default:
				t.Errorf("%s: data of type %T", m.Name, m.Data)
			}
		}
	}
	return out
}

// paged returns, for each paging alert, the non-zero series it selects:
// the series that would make it fire. None: nobody is paged.
func paged(all []series) []string {
	var out []string
	for _, sel := range pagingSelectors {
		for _, s := range all {
			if s.Metric == sel.metric && sel.match(s.Attrs) && s.Value != 0 {
				out = append(out, sel.alert+" ("+sel.fragment+") selects "+s.String())
			}
		}
	}
	// DropboxSignEventsDropped: observers that lose events would hide
	// series from the checks above.
	for _, s := range all {
		if s.Metric == "dropboxsign.event.dropped" && s.Value != 0 {
			out = append(out, "DropboxSignEventsDropped selects "+s.String())
		}
	}
	return out
}

// TestNoPagingAlertForWhatAUserDid runs every action a user can take,
// through the connect handlers and Accounts, with the Observer on the real
// metric SDK, on this process and on a second replica (another OS
// process); then it evaluates the paging alerts' selectors over what both
// recorded: none may select a non-zero series. Refreshes may fail only as
// reauthorize (a grant the user revoked).
func TestNoPagingAlertForWhatAUserDid(t *testing.T) {
	all := userActions(t, "")
	if p := paged(all); len(p) != 0 {
		t.Errorf("an operator would be paged for what users did:\n%s", strings.Join(p, "\n"))
	}
	// Not vacuous: the actions did make token requests, and failed ones.
	var exchanges, refreshes, failedExchanges, refusedRefreshes float64
	for _, s := range all {
		if s.Metric != "dropboxsign.token.requests" {
			continue
		}
		switch op, outcome := s.Attrs["dropboxsign.token.operation"], s.Attrs["dropboxsign.outcome"]; {
		case op == "exchange":
			exchanges += s.Value
			if outcome != "success" {
				failedExchanges += s.Value
			}
		case op == "refresh":
			refreshes += s.Value
			if outcome == "reauthorize" {
				refusedRefreshes += s.Value
			}
		}
	}
	if failedExchanges < 2 || refusedRefreshes < 1 || exchanges < 4 || refreshes < 1 {
		t.Errorf("token requests recorded: %v exchanges (%v failed), %v refreshes (%v refused); want at least 4 (2), 1 (1)",
			exchanges, failedExchanges, refreshes, refusedRefreshes)
	}
	for _, s := range all {
		if s.Metric == "dropboxsign.token.requests" && s.Value != 0 && s.Attrs["dropboxsign.outcome"] != "success" {
			t.Logf("failed token requests: %s", s)
		}
	}
}

// TestThePagingCheckSeesAnOperatorsFault runs the same actions with a
// fault that is the operator's, not a user's: a wrong client secret, which
// Dropbox Sign answers with invalid_client. DropboxSignMisconfigured must
// select it, on both processes: the check above is not blind.
func TestThePagingCheckSeesAnOperatorsFault(t *testing.T) {
	all := userActions(t, "wrong-secret")
	p := paged(all)
	for _, process := range []string{"app", "replica"} {
		want := "DropboxSignMisconfigured (" + pagingSelectors[1].fragment + ") selects " + process + ": dropboxsign.token.requests{dropboxsign.outcome=misconfigured,dropboxsign.token.operation=exchange,error.type=invalid_client}"
		if !slices.ContainsFunc(p, func(s string) bool { return strings.HasPrefix(s, want+" = ") }) {
			t.Errorf("with a wrong client secret, the check does not see\n%s\nIt sees:\n%s", want, strings.Join(p, "\n"))
		}
	}
}

// TestTheSampleAlertsAreAllClassified keeps the Go checks tied to the YAML
// of docs/operating.md: each paging selector is there as written, and every
// alert there is either one of pagingSelectors' or in notPaging.
func TestTheSampleAlertsAreAllClassified(t *testing.T) {
	doc, err := os.ReadFile("../docs/operating.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "### Prometheus names and sample alerts")
	if !ok {
		t.Fatal(`docs/operating.md has no section "Prometheus names and sample alerts"`)
	}
	_, yaml, _ := strings.Cut(section, "```yaml")
	yaml, _, _ = strings.Cut(yaml, "```")
	flat := strings.Join(strings.Fields(yaml), " ")
	known := map[string]bool{}
	for _, sel := range pagingSelectors {
		known[sel.alert] = true
		if !strings.Contains(flat, strings.Join(strings.Fields(sel.fragment), " ")) {
			t.Errorf("%s: the selector %s is no longer in docs/operating.md: update pagingSelectors", sel.alert, sel.fragment)
		}
	}
	alerts := regexp.MustCompile(`(?m)^- alert: (\S+)`).FindAllStringSubmatch(yaml, -1)
	if len(alerts) < len(known) {
		t.Fatalf("%d alerts in the YAML", len(alerts))
	}
	for _, a := range alerts {
		if !known[a[1]] && notPaging[a[1]] == "" {
			t.Errorf("alert %s in docs/operating.md is neither in pagingSelectors nor in notPaging: say which", a[1])
		}
	}
}

// userActions runs, against a fake Dropbox Sign, an app whose Accounts
// (over a FileStore) has the Observer on the real metric SDK and whose
// connect handlers are dropboxsign.Connect's, every action its users can
// take: connect; submit the callback twice (shared exchange), replay it
// without its cookie (400), and with it on another replica (the code is
// used: refused); decline consent; a tampered code; a tampered state, a
// callback in another user's session, a tampered or missing cookie, an
// expired flow (400, no token request); revoke the app in Dropbox Sign and
// use the account (401, then the refresh gets invalid_grant); connect
// again; disconnect and use the account; use an account never connected.
// It returns the series of both processes. fault names what it breaks, the
// operator's doing: "" nothing, "wrong-secret" the app's client secret
// (then the users' outcomes are not checked).
func userActions(t *testing.T, fault string) []series {
	h := newHarness(t)
	ctx := context.Background()
	srv := h.srv
	dir := t.TempDir()
	store, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	conf := srv.Config()
	if fault == "wrong-secret" {
		conf.ClientSecret = "not-" + conf.ClientSecret
	}
	accounts := dropboxsign.NewAccounts(h.ctx, conf, store, h.options()...)
	t.Cleanup(h.obs.RegisterAccounts(accounts))
	t.Cleanup(func() { accounts.Shutdown(ctx) })
	strict := fault == "" // the users' outcomes are checked only without a fault

	mux := http.NewServeMux()
	app := httptest.NewServer(mux)
	t.Cleanup(app.Close)
	conf.RedirectURL = app.URL + "/callback"
	srv.SetCallbackURL(conf.RedirectURL)
	key := make([]byte, 32)
	rand.Read(key)
	connect := &dropboxsign.Connect{Accounts: accounts, Config: conf, User: signedIn, Keys: [][]byte{key}}
	mux.Handle("GET /connect", connect.Begin())
	mux.Handle("GET /callback", connect.Callback())
	b := newBrowser(t, app.URL)

	// expect checks a user's outcome: the status and the Location the app
	// answered the callback with.
	expect := func(what string, status int, loc string, wantStatus int, wantLoc string) {
		t.Helper()
		if strict && (status != wantStatus || loc != wantLoc) {
			t.Errorf("%s: %d to %q, want %d to %q", what, status, loc, wantStatus, wantLoc)
		}
	}
	// refused checks that a callback gets 400 and makes no token request.
	refused := func(what, target string) {
		t.Helper()
		before := srv.Stats().TokenRequests
		if status, _, body := b.get(target); status != http.StatusBadRequest || srv.Stats().TokenRequests != before {
			t.Errorf("%s: %d %q and %d token requests, want 400 and none", what, status, body, srv.Stats().TokenRequests-before)
		}
	}

	// Somebody not signed in starts the flow: 401.
	b.signIn("")
	if status, _, _ := b.get(app.URL + "/connect"); status != http.StatusUnauthorized {
		t.Errorf("connect without a user: %d, want 401", status)
	}

	// alice connects, and uses the account.
	b.signIn("alice")
	cb := b.begin()
	kept := b.stateCookie()
	status, loc, _ := b.get(cb)
	expect("alice connects", status, loc, http.StatusSeeOther, "/?connected=1")
	if strict {
		apiCall(t, accounts, srv.AccountURL(), "alice", http.StatusOK)
	}

	// She submits the callback twice (a double click, the back button): in
	// this process the exchange is shared, she is connected once.
	b.setStateCookie(kept)
	before := srv.Stats().TokenRequests
	status, loc, _ = b.get(cb)
	expect("alice's callback submitted again", status, loc, http.StatusSeeOther, "/?connected=1")
	if n := srv.Stats().TokenRequests - before; strict && n != 0 {
		t.Errorf("alice's callback submitted again: %d token requests, want none", n)
	}
	// Without the cookie (it was deleted): refused before any token request.
	refused("alice's callback replayed without its cookie", cb)
	// The same callback, with its cookie, reaches another replica: a
	// process of its own, whose exchange Dropbox Sign refuses (the code is
	// used).
	before = srv.Stats().TokenRequests
	replica, class := runReplica(t, conf, dir, key, cb, kept, "alice")
	if n := srv.Stats().TokenRequests - before; n != 1 {
		t.Errorf("the replayed callback on another replica: %d token requests, want 1", n)
	}
	if strict && class != dropboxsign.Reauthorize.String() {
		t.Errorf("the replayed callback on another replica: %s, want reauthorize", class)
	}

	// bob declines at the consent step.
	b.signIn("bob")
	srv.SetDenyConsent(true)
	before = srv.Stats().TokenRequests
	status, loc, _ = b.get(b.begin())
	expect("bob declines", status, loc, http.StatusSeeOther, "/?connect_error=reauthorize")
	srv.SetDenyConsent(false)
	if n := srv.Stats().TokenRequests - before; n != 0 {
		t.Errorf("bob declined: %d token requests, want none", n)
	}

	// carol's code is tampered with (the state is right): Dropbox Sign
	// refuses it.
	b.signIn("carol")
	status, loc, _ = b.get(withParam(t, b.begin(), "code", "code_tampered"))
	expect("carol's tampered code", status, loc, http.StatusSeeOther, "/?connect_error=reauthorize")

	// dave's state is tampered with, then his callback lands in erin's
	// session, then his cookie is tampered with: all refused before any
	// token request. Then his flow expires.
	b.signIn("dave")
	cb = b.begin()
	refused("a tampered state", withParam(t, cb, "state", "tampered"))
	b.signIn("erin")
	refused("dave's callback in erin's session", cb)
	b.signIn("dave")
	c := []byte(b.stateCookie())
	c[len(c)/2] ^= 1
	b.setStateCookie(string(c))
	refused("a tampered cookie", cb)
	b.setStateCookie("")
	refused("a callback without the cookie", cb)
	short := *connect
	short.MaxAge = time.Nanosecond // expired by the time of the callback
	mux.Handle("GET /connect-short", short.Begin())
	resp, err := b.client.Get(app.URL + "/connect-short")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cb = resp.Header.Get("Location")
	before = srv.Stats().TokenRequests
	if status, _, body := b.get(cb); status != http.StatusBadRequest || !strings.Contains(body, "expired") || srv.Stats().TokenRequests != before {
		t.Errorf("an expired flow: %d %q, want 400, expired, and no token request", status, body)
	}

	// alice revokes the app in Dropbox Sign, then her account is used: the
	// API refuses the token (401), the refresh gets invalid_grant.
	if tok, err := store.Load(ctx, "alice"); err == nil {
		srv.Revoke(tok)
	} else if strict {
		t.Fatal(err)
	}
	if strict {
		apiCall(t, accounts, srv.AccountURL(), "alice", http.StatusUnauthorized)
		if _, err := accounts.TokenSource("alice").TokenContext(ctx); dropboxsign.Classify(err) != dropboxsign.Reauthorize {
			t.Errorf("alice after revoking the app: %v, want Reauthorize", err)
		}
	} else {
		accounts.Client("alice").Get(srv.AccountURL())
	}
	// She connects again, and uses the account.
	b.signIn("alice")
	status, loc, _ = b.get(b.begin())
	expect("alice connects again", status, loc, http.StatusSeeOther, "/?connected=1")
	if strict {
		apiCall(t, accounts, srv.AccountURL(), "alice", http.StatusOK)
	}

	// She disconnects in the app, and the account is used.
	if err := accounts.Disconnect(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.TokenSource("alice").TokenContext(ctx); !errors.Is(err, dropboxsign.ErrDisconnected) {
		t.Errorf("alice after disconnecting: %v, want ErrDisconnected", err)
	}
	// An account never connected is used.
	if _, err := accounts.TokenSource("frank").TokenContext(ctx); !errors.Is(err, dropboxsign.ErrNotConnected) {
		t.Errorf("frank, never connected: %v, want ErrNotConnected", err)
	}
	if resp, err := accounts.Client("frank").Get(srv.AccountURL()); err == nil {
		resp.Body.Close()
		t.Errorf("frank, never connected: the API answered %s", resp.Status)
	}

	// Every event of the Accounts reaches the observers in order, one at a
	// time: once the recorder (after the Observer) has the last one, a
	// disconnection made for the purpose, the Observer has recorded all.
	if err := accounts.Disconnect(ctx, "zz-last"); err != nil {
		t.Fatal(err)
	}
	for n := 1; ; n++ {
		events := h.rec.waitFor(t, dropboxsign.EventDisconnected, n)
		if slices.ContainsFunc(events, func(e dropboxsign.Event) bool { return e.Account == "zz-last" }) {
			break
		}
	}
	return append(collectSeries(t, h.reader, "app"), replica...)
}

// withParam returns target with its query parameter name set to value.
func withParam(t *testing.T, target, name, value string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(name, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// apiCall calls the fake's account route as account and checks the
// status.
func apiCall(t *testing.T, accounts *dropboxsign.Accounts, target, account string, want int) {
	t.Helper()
	resp, err := accounts.Client(account).Get(target)
	if err != nil {
		if want == http.StatusOK {
			t.Errorf("%s calls the API: %v", account, err)
		}
		return
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Errorf("%s calls the API: %s, want %d", account, resp.Status, want)
	}
}

func signedIn(r *http.Request) (string, bool) {
	c, err := r.Cookie("user")
	if err != nil || c.Value == "" {
		return "", false
	}
	return c.Value, true
}

// A browser keeps cookies and stops at each redirect to the app, so that
// the test sees, replays or tampers with the callback.
type browser struct {
	t      *testing.T
	app    *url.URL
	jar    http.CookieJar
	client *http.Client
}

func newBrowser(t *testing.T, appURL string) *browser {
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(appURL)
	return &browser{t: t, app: u, jar: jar, client: &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == u.Host {
			return http.ErrUseLastResponse
		}
		return nil
	}}}
}

func (b *browser) signIn(user string) {
	b.jar.SetCookies(b.app, []*http.Cookie{{Name: "user", Value: user, Path: "/"}})
}

// begin starts the flow and returns the callback URL Dropbox Sign's
// consent step sent the browser to.
func (b *browser) begin() string {
	b.t.Helper()
	status, loc, _ := b.get(b.app.String() + "/connect")
	if status != http.StatusFound || !strings.HasPrefix(loc, b.app.String()+"/callback?") {
		b.t.Fatalf("begin: %d to %q, want the fake's redirect to the callback", status, loc)
	}
	return loc
}

func (b *browser) get(target string) (int, string, string) {
	b.t.Helper()
	resp, err := b.client.Get(target)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&body)
	return resp.StatusCode, resp.Header.Get("Location"), body.String()
}

func (b *browser) callbackURL() *url.URL {
	return &url.URL{Scheme: b.app.Scheme, Host: b.app.Host, Path: "/callback"}
}

func (b *browser) stateCookie() string {
	for _, c := range b.jar.Cookies(b.callbackURL()) {
		if c.Name == dropboxsign.ConnectCookieName {
			return c.Value
		}
	}
	return ""
}

func (b *browser) setStateCookie(value string) {
	c := &http.Cookie{Name: dropboxsign.ConnectCookieName, Value: value, Path: "/callback"}
	if value == "" {
		c.MaxAge = -1
	}
	b.jar.SetCookies(b.callbackURL(), []*http.Cookie{c})
}

// The replica: this test binary run again, as another process of the
// app, with its own Accounts, Observer and metric SDK over the same store
// and Dropbox Sign. It serves one callback, then reports the class of the
// outcome and what its metrics hold, on a line of its own.
const (
	replicaEnv    = "OTELDROPBOXSIGN_ALERTS_REPLICA" // JSON: replicaInput
	replicaPrefix = "REPLICA-RESULT "
)

type replicaInput struct {
	ClientID, ClientSecret, AuthURL, TokenURL, RedirectURL string
	StoreDir, Key, Callback, Cookie, User                  string
}

type replicaOutput struct {
	Class  string   `json:"class"`
	Series []series `json:"series"`
}

func runReplica(t *testing.T, conf *oauth2.Config, dir string, key []byte, callback, cookie, user string) ([]series, string) {
	t.Helper()
	in, err := json.Marshal(replicaInput{
		ClientID: conf.ClientID, ClientSecret: conf.ClientSecret, AuthURL: conf.Endpoint.AuthURL,
		TokenURL: conf.Endpoint.TokenURL, RedirectURL: conf.RedirectURL, StoreDir: dir,
		Key: hex.EncodeToString(key), Callback: callback, Cookie: cookie, User: user,
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAlertsReplicaProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), replicaEnv+"="+string(in))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the replica: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, replicaPrefix); ok {
			var r replicaOutput
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				t.Fatal(err)
			}
			return r.Series, r.Class
		}
	}
	t.Fatalf("the replica reported nothing:\n%s", out)
	return nil, ""
}

// TestAlertsReplicaProcess is the replica's body: it does nothing unless
// runReplica started this process.
func TestAlertsReplicaProcess(t *testing.T) {
	raw := os.Getenv(replicaEnv)
	if raw == "" {
		return
	}
	var in replicaInput
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		t.Fatal(err)
	}
	key, err := hex.DecodeString(in.Key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)
	obs := oteldropboxsign.NewObserver(oteldropboxsign.WithMeterProvider(mp))
	rec := newRecorder()
	store, err := dropboxsign.NewFileStore(in.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	conf := &oauth2.Config{ClientID: in.ClientID, ClientSecret: in.ClientSecret, RedirectURL: in.RedirectURL,
		Endpoint: oauth2.Endpoint{AuthURL: in.AuthURL, TokenURL: in.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	accounts := dropboxsign.NewAccounts(ctx, conf, store, dropboxsign.WithObserver(obs), dropboxsign.WithObserver(rec))
	defer accounts.Shutdown(ctx)
	defer obs.RegisterAccounts(accounts)()
	var got error
	connect := &dropboxsign.Connect{Accounts: accounts, Config: conf, User: signedIn, Keys: [][]byte{key},
		Done: func(_ http.ResponseWriter, _ *http.Request, _ string, err error) { got = err }}
	r := httptest.NewRequest("GET", in.Callback, nil)
	r.AddCookie(&http.Cookie{Name: "user", Value: in.User})
	r.AddCookie(&http.Cookie{Name: dropboxsign.ConnectCookieName, Value: in.Cookie})
	w := httptest.NewRecorder()
	connect.Callback().ServeHTTP(w, r)
	if w.Code == http.StatusBadRequest {
		t.Fatalf("the callback was refused: %s", w.Body)
	}
	rec.waitFor(t, dropboxsign.EventTokenRequest, 1) // the Observer has it too
	out, err := json.Marshal(replicaOutput{Class: dropboxsign.Classify(got).String(), Series: collectSeries(t, reader, "replica")})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("\n%s%s\n", replicaPrefix, out)
}
