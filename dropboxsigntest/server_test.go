package dropboxsigntest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

func post(t *testing.T, srv *dropboxsigntest.Server, query string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := srv.Client().Post(srv.URL+dropboxsigntest.TokenPath+query, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func refreshBody(srv *dropboxsigntest.Server, rt string) map[string]string {
	return map[string]string{"grant_type": "refresh_token", "refresh_token": rt, "client_id": srv.ClientID, "client_secret": srv.ClientSecret}
}

func TestRotationRejectsAndCountsStaleRefreshTokens(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	tok := srv.IssueToken()
	status, first := post(t, srv, "?refresh", refreshBody(srv, tok.RefreshToken))
	if status != 200 || first["refresh_token"] == tok.RefreshToken || first["expires_in"] != 3600.0 {
		t.Fatalf("refresh: %d %v", status, first)
	}
	status, again := post(t, srv, "?refresh", refreshBody(srv, tok.RefreshToken))
	if status != 400 || again["error"] != "invalid_grant" {
		t.Fatalf("stale refresh: %d %v", status, again)
	}
	if st := srv.Stats(); st.Refreshes != 1 || st.StaleRefreshTokens != 1 || st.TokenRequests != 2 {
		t.Errorf("stats = %+v", st)
	}

	srv.SetRotation(false)
	rt := first["refresh_token"].(string)
	if _, same := post(t, srv, "?refresh", refreshBody(srv, rt)); same["refresh_token"] != rt {
		t.Errorf("without rotation the refresh token changed: %v", same)
	}
}

func TestTokenRouteIsStrictAboutTheDialect(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	rt := srv.IssueToken().RefreshToken

	// x/oauth2's form-encoded refresh at the plain token URL.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {srv.ClientID}, "client_secret": {srv.ClientSecret}}
	resp, err := srv.Client().PostForm(srv.URL+dropboxsigntest.TokenPath, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("form body: status %d, want 400", resp.StatusCode)
	}
	if status, m := post(t, srv, "", refreshBody(srv, rt)); status != 400 || m["error"] != "invalid_request" {
		t.Errorf("refresh without ?refresh: %d %v", status, m)
	}
	wrong := refreshBody(srv, rt)
	wrong["client_secret"] = "nope"
	if status, m := post(t, srv, "?refresh", wrong); status != 401 || m["error"] != "invalid_client" {
		t.Errorf("wrong secret: %d %v", status, m)
	}
	if srv.Stats().Refreshes != 0 {
		t.Error("a malformed request refreshed")
	}
}

func TestAuthorizeRedirectsToTheCallback(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	noFollow := srv.Client()
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	srv.SetCallbackURL("http://127.0.0.1:1/cb")
	conf := srv.Config()

	resp, err := noFollow.Get(conf.AuthCodeURL("s1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 302 || loc.Host != "127.0.0.1:1" || loc.Query().Get("state") != "s1" || loc.Query().Get("code") == "" {
		t.Errorf("authorize: %d to %v", resp.StatusCode, loc)
	}

	srv.SetDenyConsent(true)
	resp, _ = noFollow.Get(conf.AuthCodeURL("s2"))
	resp.Body.Close()
	loc, _ = url.Parse(resp.Header.Get("Location"))
	if loc.Query().Get("error") != "access_denied" || loc.Query().Get("code") != "" {
		t.Errorf("denied consent redirected to %v", loc)
	}

	conf.ClientID = "someone-else"
	resp, _ = noFollow.Get(conf.AuthCodeURL("s3"))
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("unknown client: status %d, want 400", resp.StatusCode)
	}
}

func TestAPIRouteChecksTheBearerToken(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	tok := srv.IssueToken()
	call := func(auth string) (int, string) {
		req, _ := http.NewRequest("GET", srv.AccountURL(), nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := call("Bearer " + tok.AccessToken); status != 200 || !strings.Contains(body, "account_id") {
		t.Errorf("valid token: %d %s", status, body)
	}
	for _, auth := range []string{"", "Bearer nope", "Basic " + tok.AccessToken} {
		if status, body := call(auth); status != 401 || !strings.Contains(body, `"error_name":"unauthorized"`) {
			t.Errorf("%q: %d %s", auth, status, body)
		}
	}
	srv.RevokeAccessTokens()
	if status, _ := call("Bearer " + tok.AccessToken); status != 401 {
		t.Errorf("revoked token: status %d", status)
	}
	if st := srv.Stats(); st.APICalls != 5 || st.APIRejected != 4 {
		t.Errorf("stats = %+v", st)
	}
}

func TestFaultsAnswerInOrderThenStop(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	rt := srv.IssueToken().RefreshToken
	srv.InjectFault(dropboxsigntest.Fault{Status: 503, Count: 2})
	srv.InjectFault(dropboxsigntest.OAuthError(400, "invalid_request", "x"))
	statuses := []int{}
	for range 4 {
		s, _ := post(t, srv, "?refresh", refreshBody(srv, rt))
		statuses = append(statuses, s)
	}
	srv.ClearFaults()
	s, _ := post(t, srv, "?refresh", refreshBody(srv, rt))
	statuses = append(statuses, s)
	if want := []int{503, 503, 400, 400, 200}; !slices.Equal(statuses, want) {
		t.Errorf("statuses = %v, want %v", statuses, want)
	}
	if st := srv.Stats(); st.Faults != 4 || st.TokenRequests != 5 {
		t.Errorf("stats = %+v", st)
	}
}

func TestHoldTokenResponses(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	release := srv.HoldTokenResponses()
	answered := make(chan int)
	go func() {
		s, _ := post(t, srv, "?refresh", refreshBody(srv, srv.IssueToken().RefreshToken))
		answered <- s
	}()
	if err := srv.WaitTokenRequests(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-answered:
		t.Fatal("answered while held")
	default:
	}
	release()
	release() // harmless
	if s := <-answered; s != 200 {
		t.Errorf("status %d after release", s)
	}
}

func TestLatencyDelaysTokenAnswers(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	srv.SetLatency(100 * time.Millisecond)
	start := time.Now()
	if s, _ := post(t, srv, "?refresh", refreshBody(srv, srv.IssueToken().RefreshToken)); s != 200 {
		t.Fatalf("status %d", s)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("answered in %v, before the 100 ms latency", took)
	}
}

func TestCloseReleasesHeldResponses(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	srv.HoldTokenResponses()
	answered := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Post(srv.URL+dropboxsigntest.TokenPath+"?refresh", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	srv.WaitTokenRequests(context.Background(), 1)
	srv.Close() // returns: the held answer is let go
	if err := <-answered; err != nil {
		t.Errorf("held request: %v", err)
	}
}

func TestStandardOAuthRefreshOnlyWhenAsked(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	conf := srv.Config()
	conf.Endpoint.AuthStyle = 0 // auto-detect, as x/oauth2 users often leave it
	tok := srv.IssueToken()
	tok.Expiry = time.Now().Add(-time.Minute)
	if _, err := conf.TokenSource(context.Background(), tok).Token(); err == nil {
		t.Fatal("x/oauth2's form refresh was accepted by the strict server")
	}
	srv.SetAcceptStandardOAuth(true)
	got, err := conf.TokenSource(context.Background(), tok).Token()
	if err != nil || got.AccessToken == tok.AccessToken {
		t.Fatalf("x/oauth2 refresh in standard mode: %v, %v", got, err)
	}
}

// NewServerOn serves on the caller's listener, at its address, and Close
// closes it.
func TestNewServerOnServesOnTheGivenListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := dropboxsigntest.NewServerOn(ln)
	if srv.URL != "http://"+ln.Addr().String() {
		t.Errorf("URL %q, want http://%s", srv.URL, ln.Addr())
	}
	status, answer := post(t, srv, "?refresh", refreshBody(srv, srv.IssueToken().RefreshToken))
	if status != 200 || answer["access_token"] == nil {
		t.Errorf("refresh on the given listener: %d %v", status, answer)
	}
	srv.Close()
	if conn, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		conn.Close()
		t.Error("the listener still accepts connections after Close")
	}
}
