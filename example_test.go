package dropboxsign_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// The authorization-code flow: send the user to AuthCodeURL, then exchange
// the code that reaches the callback. Against Dropbox Sign, conf would be
// &oauth2.Config{ClientID: …, ClientSecret: …, Endpoint: dropboxsign.Endpoint}.
func Example() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	conf := fake.Config()
	ctx := context.Background()

	state := "900e06e2" // use a random value per login
	authURL := conf.AuthCodeURL(state)

	// The user consents in a browser; Dropbox Sign redirects to the app's
	// callback with code and state. The fake's own callback echoes them.
	resp, err := http.Get(authURL)
	if err != nil {
		panic(err)
	}
	var callback struct{ Code, State string }
	json.NewDecoder(resp.Body).Decode(&callback)
	resp.Body.Close()
	if callback.State != state {
		panic("state mismatch")
	}

	tok, err := dropboxsign.Exchange(ctx, conf, callback.Code, callback.State)
	if err != nil {
		panic(err)
	}
	fmt.Println(tok.TokenType, tok.ExpiresIn, tok.RefreshToken != "")
	// Output: Bearer 3600 true
}

// A TokenSource plugs into oauth2.NewClient: API calls carry a fresh bearer
// token, and refreshes happen behind them.
func ExampleNewTokenSource() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	ctx := context.Background()
	tok := fake.IssueToken() // in a real app: loaded from storage

	ts := dropboxsign.NewTokenSource(ctx, fake.Config(), tok)
	client := oauth2.NewClient(ctx, ts)

	resp, err := client.Get(fake.AccountURL()) // e.g. dropboxsign.APIBaseURL + "/account"
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}

// NewClient is the shortest path from a stored token to API calls.
func ExampleNewClient() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	tok := fake.IssueToken()
	tok.AccessToken = "" // only the refresh token is known: the first call refreshes

	client := dropboxsign.NewClient(context.Background(), fake.Config(), tok)
	resp, err := client.Get(fake.AccountURL())
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, fake.Stats().Refreshes)
	// Output: 200 OK 1
}

// WithOnRefresh persists every new token before anyone uses it: with
// rotating refresh tokens, the stored one must always be the newest.
func ExampleWithOnRefresh() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	dir, _ := os.MkdirTemp("", "dropboxsign-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "token.json")

	save := func(_ context.Context, t *oauth2.Token) error {
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		return os.WriteFile(path, b, 0o600) // a real app writes atomically
	}
	stale := fake.IssueToken()
	stale.AccessToken = "" // force a refresh
	ts := dropboxsign.NewTokenSource(context.Background(), fake.Config(), stale, dropboxsign.WithOnRefresh(save))

	// TokenContext reports a failed save (Token and the clients do not:
	// the token serves requests while the save is retried).
	tok, err := ts.TokenContext(context.Background())
	var saveErr *dropboxsign.SaveError
	if errors.As(err, &saveErr) {
		fmt.Println("token in use but not saved yet:", saveErr.Err)
	} else if err != nil {
		panic(err)
	}
	var stored oauth2.Token
	b, _ := os.ReadFile(path)
	json.Unmarshal(b, &stored)
	fmt.Println(stored.RefreshToken == tok.RefreshToken, stored.RefreshToken != stale.RefreshToken)
	// Output: true true
}

// Token endpoint errors keep x/oauth2's error type, with Dropbox Sign's
// error names and rate-limit headers read out.
func ExampleErrorRateLimit() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	fake.InjectFault(dropboxsigntest.RateLimited(fake.IssueToken().Expiry))

	_, err := dropboxsign.Refresh(context.Background(), fake.Config(), "a-refresh-token")
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		fmt.Println(re.Response.StatusCode, re.ErrorCode)
	}
	if rl, ok := dropboxsign.ErrorRateLimit(err); ok {
		fmt.Println("remaining:", rl.Remaining, "of", rl.Limit)
	}
	// Output:
	// 429 exceeded_rate
	// remaining: 0 of 100
}
