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
