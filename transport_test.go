package dropboxsign_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
	"net"
	"net/http/httptest"
	"net/url"
)

func get(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Error(err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestNewClientAuthorizesACopyThroughTheContextTransport(t *testing.T) {
	srv := newServer(t)
	counter := &countingTransport{}
	ctx := context.WithValue(testContext(t), oauth2.HTTPClient, &http.Client{Transport: counter})
	client := dropboxsign.NewClient(ctx, srv.Config(), expired(srv.IssueToken()))

	req, _ := http.NewRequest("GET", srv.AccountURL(), nil)
	req.Header.Set("X-Request-Id", "42")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status = %d, want 200", resp.StatusCode)
	}
	if req.Header.Get("Authorization") != "" || len(req.Header) != 1 {
		t.Errorf("the caller's request was modified: %v", req.Header)
	}
	if n := counter.n.Load(); n != 2 {
		t.Errorf("context transport saw %d round trips, want 2 (refresh, API call)", n)
	}
	if st := srv.Stats(); st.Refreshes != 1 || st.APIRejected != 0 {
		t.Errorf("stats = %+v", st)
	}
}

type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error { c.closed.Store(true); return nil }

func TestNewClientWaitsWithTheRequestContext(t *testing.T) {
	srv := newServer(t)
	release := srv.HoldTokenResponses()
	defer release()
	client := dropboxsign.NewClient(testContext(t), srv.Config(), expired(srv.IssueToken()))

	ctx, cancel := context.WithCancel(context.Background())
	body := &closeRecorder{Reader: strings.NewReader("{}")}
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.AccountURL(), body)
	go func() {
		srv.WaitTokenRequests(testContext(t), 1)
		cancel()
	}()
	_, err := client.Do(req)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if !body.closed.Load() {
		t.Error("request body not closed")
	}
	if n := srv.Stats().APICalls; n != 0 {
		t.Errorf("%d API calls went out without a token", n)
	}
}

func TestOAuth2NewClientIsADropIn(t *testing.T) {
	srv := newServer(t)
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()))
	if status := get(t, oauth2.NewClient(testContext(t), ts), srv.AccountURL()); status != 200 {
		t.Errorf("status = %d", status)
	}
}

// x/oauth2's wrappers write to the tokens they receive, so a source shared
// by several of them must hand each a private copy; the race detector checks.
// One refresh serves every wrapper.
func TestOneSourceServesManyOAuth2Wrappers(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), expired(srv.IssueToken()))
	var clients []*http.Client
	var sources []oauth2.TokenSource
	for range 8 {
		clients = append(clients, oauth2.NewClient(ctx, ts))
		sources = append(sources, oauth2.ReuseTokenSource(nil, ts), oauth2.ReuseTokenSourceWithExpiry(nil, ts, time.Minute))
	}
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i := range 32 {
		wg.Go(func() {
			for range 20 {
				if i%2 == 0 {
					if get(t, clients[i%len(clients)], srv.AccountURL()) != 200 {
						failures.Add(1)
					}
				} else if tok, err := sources[i%len(sources)].Token(); err != nil || !tok.Valid() {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d calls failed", n)
	}
	if st := srv.Stats(); st.TokenRequests != 1 || st.APIRejected != 0 {
		t.Errorf("token requests = %d, API rejections = %d; want 1 and 0", st.TokenRequests, st.APIRejected)
	}
}

// oauth2.ReuseTokenSource caches a token until 10 s before its Expiry; the
// source's Token shortens that Expiry so that the wrapper comes back during
// the refresh-ahead window (about once a second) and picks up the new token
// without waiting, while every token it hands out stays Valid.
func TestReuseTokenSourceComesBackInTimeForRefreshAhead(t *testing.T) {
	srv := newServer(t)
	done := newRuns()
	old := srv.IssueToken()
	old.Expiry = time.Now().Add(2 * time.Minute) // inside the 5 min window, still usable
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), old, done.option())
	wrapper := oauth2.ReuseTokenSource(nil, ts)

	release := srv.HoldTokenResponses()
	for range 3 {
		if tok, err := wrapper.Token(); err != nil || tok.AccessToken != old.AccessToken || !tok.Valid() {
			t.Fatalf("during the refresh: %v, %v; want the current, Valid token at once", tok, err)
		}
	}
	release()
	done.wait(t)
	// x/oauth2's clock cannot be moved: poll, within a bound far below the
	// two minutes an unshortened Expiry would keep the old token cached.
	var tok *oauth2.Token
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
		var err error
		if tok, err = wrapper.Token(); err != nil || !tok.Valid() {
			t.Fatalf("wrapper: %v, %v", tok, err)
		}
		if tok.AccessToken != old.AccessToken {
			break
		}
	}
	if tok.AccessToken == old.AccessToken {
		t.Fatal("the wrapper kept the old token")
	}
	if real, _ := ts.TokenContext(context.Background()); tok.Expiry.After(real.Expiry) || tok == real {
		t.Errorf("Token() = %p expiring %v; want a private copy expiring no later than %v", tok, tok.Expiry, real.Expiry)
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("token requests = %d, want 1", n)
	}
}

// redirectLab serves any host name on loopback: /hop?to=URL redirects there,
// /landing records the Authorization header it got, per host, and answers
// 200, or 401 with ?status=401.
type redirectLab struct {
	plain, tls *httptest.Server
	mu         sync.Mutex
	seen       []string // "host auth" per landing
}

func newRedirectLab(t *testing.T) *redirectLab {
	l := &redirectLab{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hop":
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
		case "/landing":
			l.mu.Lock()
			l.seen = append(l.seen, r.Host+" "+r.Header.Get("Authorization"))
			l.mu.Unlock()
			if r.URL.Query().Get("status") == "401" {
				w.WriteHeader(http.StatusUnauthorized)
			}
		}
	})
	l.plain, l.tls = httptest.NewServer(h), httptest.NewTLSServer(h)
	t.Cleanup(l.plain.Close)
	t.Cleanup(l.tls.Close)
	return l
}

// transport dials every host name to the lab: plain or TLS by the port
// asked for (443 goes to the TLS server).
func (l *redirectLab) transport() http.RoundTripper {
	tr := l.tls.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		target := l.plain.Listener.Addr().String()
		if strings.HasSuffix(addr, ":443") {
			target = l.tls.Listener.Addr().String()
		}
		return (&net.Dialer{}).DialContext(ctx, network, target)
	}
	return tr
}

func (l *redirectLab) landings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := l.seen
	l.seen = nil
	return seen
}

// The token goes where net/http sends an Authorization header set by hand:
// the first request's host and its subdomains, never elsewhere, not even
// back home after a detour; and, stricter, never over plain http after https.
func TestTokenDoesNotFollowRedirectsToOtherHosts(t *testing.T) {
	srv := newServer(t)
	lab := newRedirectLab(t)
	tok := srv.IssueToken()
	ctx := context.WithValue(testContext(t), oauth2.HTTPClient, &http.Client{Transport: lab.transport()})
	client := dropboxsign.NewClient(ctx, srv.Config(), tok)
	hop := func(from string, to ...string) string {
		u := to[len(to)-1]
		for i := len(to) - 2; i >= 0; i-- {
			u = to[i] + "/hop?to=" + url.QueryEscape(u)
		}
		return from + "/hop?to=" + url.QueryEscape(u)
	}
	bearer := "Bearer " + tok.AccessToken
	for _, tc := range []struct {
		name, url, want string
	}{
		{"same host", hop("http://api.example.com", "http://api.example.com/landing"), "api.example.com " + bearer},
		{"other port", hop("http://api.example.com", "http://api.example.com:8080/landing"), "api.example.com:8080 " + bearer},
		{"subdomain", hop("http://api.example.com", "http://eu.api.example.com/landing"), "eu.api.example.com " + bearer},
		{"other host", hop("http://api.example.com", "http://evil.example.net/landing"), "evil.example.net "},
		{"suffix trick", hop("http://api.example.com", "http://api.example.com.evil.net/landing"), "api.example.com.evil.net "},
		{"parent domain", hop("http://api.example.com", "http://example.com/landing"), "example.com "},
		{"home after a detour", hop("http://api.example.com", "http://evil.example.net", "http://api.example.com/landing"), "api.example.com "},
		{"https to http", hop("https://api.example.com", "http://api.example.com/landing"), "api.example.com "},
		{"https to https", hop("https://api.example.com", "https://api.example.com/landing"), "api.example.com " + bearer},
		{"elsewhere refuses", hop("http://api.example.com", "http://evil.example.net/landing?status=401"), "evil.example.net "},
	} {
		resp, err := client.Get(tc.url)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		if got := lab.landings(); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: the landing saw %q, want %q", tc.name, got, tc.want)
		}
	}
	// A 401 from a host that got no token says nothing about the token.
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("%d token requests: a refusal elsewhere invalidated the token", n)
	}
}
