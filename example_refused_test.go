package dropboxsign_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// When the API refuses a token before its expiry (401: revoked, or the
// clocks disagree), report it with Invalidate, and the next call waits for a
// new token. Any number of callers may report the same token: it costs one
// refresh. (The clients of NewClient and Accounts, and Transport, do this by
// themselves; Invalidate is for code that sets the Authorization header
// itself.)
func ExampleTokenSource_Invalidate() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	ctx := context.Background()
	ts := dropboxsign.NewTokenSource(ctx, fake.Config(), fake.IssueToken())

	getAccount := func(tok *oauth2.Token) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fake.AccountURL(), nil)
		tok.SetAuthHeader(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	tok, err := ts.TokenContext(ctx)
	if err != nil {
		panic(err)
	}
	fake.RevokeAccessTokens() // the API stops accepting it
	for range 3 {             // three requests that were under way with it
		status := getAccount(tok)
		if status == http.StatusUnauthorized {
			ts.Invalidate(tok)
		}
		fmt.Print(status, " ")
	}
	fresh, err := ts.TokenContext(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(getAccount(fresh))
	fmt.Println("refreshes:", fake.Stats().Refreshes)
	// Output:
	// 401 401 401 200
	// refreshes: 1
}

// Transport gives a TokenSource of your own what the client of NewClient
// has, the replay of a request refused with a 401 included, in an
// http.Client of your own: here one with a timeout, over a source that
// persists every new token.
func ExampleTransport() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	ctx := context.Background()

	save := func(ctx context.Context, t *oauth2.Token) error {
		fmt.Println("saving the new token") // a real app writes it to its database
		return nil
	}
	ts := dropboxsign.NewTokenSource(ctx, fake.Config(), fake.IssueToken(), dropboxsign.WithOnRefresh(save))
	client := &http.Client{
		Transport: &dropboxsign.Transport{Source: ts}, // Base nil: http.DefaultTransport
		Timeout:   30 * time.Second,
	}

	fake.RevokeAccessTokens() // the API will refuse the token the source holds
	resp, err := client.Get(fake.AccountURL())
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	stats := fake.Stats()
	fmt.Println("refused:", stats.APIRejected, "refreshes:", stats.Refreshes)
	// Output:
	// saving the new token
	// 200 OK
	// refused: 1 refreshes: 1
}
