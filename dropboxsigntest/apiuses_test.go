package dropboxsigntest_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// APIUses counts the API requests of each bearer token, accepted or not,
// with when the first and the last arrived; IssuedTokens says when the
// request that obtained a token arrived, which for a held refresh is
// before the token was issued.
func TestAPIUsesAndRequested(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	tok := srv.IssueToken()
	call := func(token string) {
		req, _ := http.NewRequest("GET", srv.AccountURL(), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	before := time.Now()
	call(tok.AccessToken)
	mid := time.Now()
	call(tok.AccessToken)
	call("unknown")
	after := time.Now()
	uses := srv.APIUses()
	if u := uses[tok.AccessToken]; u.Count != 2 || u.First.Before(before) || u.First.After(mid) || u.Last.Before(mid) || u.Last.After(after) {
		t.Errorf("the issued token: %+v; want 2 requests, the first before %v, the last after", u, mid)
	}
	if u := uses["unknown"]; u.Count != 1 {
		t.Errorf("a token the server never issued: %+v; want its 1 request", u)
	}
	if len(uses) != 2 {
		t.Errorf("%d tokens recorded, want 2", len(uses))
	}

	release := srv.HoldTokenResponses()
	answered := make(chan map[string]any)
	sent := time.Now()
	go func() {
		_, m := post(t, srv, "?refresh", refreshBody(srv, tok.RefreshToken))
		answered <- m
	}()
	if err := srv.WaitTokenRequests(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	held := time.Now()
	release()
	m := <-answered
	at, _ := m["access_token"].(string)
	it, ok := srv.IssuedTokens()[at]
	switch {
	case !ok:
		t.Fatalf("the refresh's token is not among the issued ones: %v", m)
	case it.Requested.Before(sent) || it.Requested.After(held):
		t.Errorf("requested at %v; want when the request arrived, between %v and %v", it.Requested, sent, held)
	case !it.Issued.After(held):
		t.Errorf("issued at %v; want after the release at %v", it.Issued, held)
	}
	if it := srv.IssuedTokens()[tok.AccessToken]; it.Requested.IsZero() || it.Requested.After(it.Issued) {
		t.Errorf("IssueToken's token: requested %v, issued %v; want the same moment", it.Requested, it.Issued)
	}
}
