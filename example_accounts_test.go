package dropboxsign_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// A platform app that acts for many Dropbox Sign users: one Accounts for the
// process, the app's own user IDs as keys, tokens in a store every replica
// shares. The callback stores a new login; every handler then calls the API
// for its user through Client. (Against Dropbox Sign, conf has the app's
// ClientID, ClientSecret and dropboxsign.Endpoint, and the store is the
// app's database: see the pgstore and redisstore modules.)
func ExampleAccounts() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	dir, _ := os.MkdirTemp("", "tokens")
	defer os.RemoveAll(dir)
	store, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	defer accounts.Shutdown(ctx)

	// The OAuth callback: check state against the one sent with the user
	// (AuthCodeURL(state)), then store the grant under the user's ID.
	callback := func(w http.ResponseWriter, r *http.Request) {
		user := "user-42" // from the app's session
		if _, err := accounts.Login(r.Context(), user, r.FormValue("code"), r.FormValue("state")); err != nil {
			http.Error(w, "could not connect your Dropbox Sign account", http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, "connected")
	}
	code, state := consent(fake, "a-random-state")
	rec := httptest.NewRecorder()
	callback(rec, httptest.NewRequest("GET", "/callback?code="+code+"&state="+state, nil))
	fmt.Print(rec.Body.String())

	// Any handler, on any replica: the user's client, refreshed as needed.
	resp, err := accounts.Client("user-42").Get(fake.AccountURL()) // e.g. dropboxsign.APIBaseURL + "/account"
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// connected
	// 200 OK
}

// When a user disconnects the app in their Dropbox Sign settings, the next
// refresh is refused: the account is marked in the store, every call for it
// fails with a RefusedError (Classify says Reauthorize) on every replica,
// and Refused lists it, until the user connects again.
func ExampleAccounts_Refused() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	dir, _ := os.MkdirTemp("", "tokens")
	defer os.RemoveAll(dir)
	store, _ := dropboxsign.NewFileStore(dir)
	ctx := context.Background()
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)

	tok := fake.IssueToken()
	tok.AccessToken = "" // due for a refresh
	store.Save(ctx, "user-7", nil, tok)
	fake.Revoke(tok) // the user disconnects the app

	_, err := accounts.Client("user-7").Get(fake.AccountURL())
	if dropboxsign.Classify(err) == dropboxsign.Reauthorize {
		fmt.Println("ask the user to connect again")
	}
	for refused, err := range accounts.Refused(ctx) {
		if err != nil {
			panic(err)
		}
		fmt.Println("awaiting re-authorization:", refused.Key)
	}

	code, state := consent(fake, "another-state")
	if _, err := accounts.Login(ctx, "user-7", code, state); err != nil {
		panic(err)
	}
	resp, err := accounts.Client("user-7").Get(fake.AccountURL())
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("after the new login:", resp.Status)
	// Output:
	// ask the user to connect again
	// awaiting re-authorization: user-7
	// after the new login: 200 OK
}

// Shutdown belongs after the HTTP server's: first no new requests, then no
// new refreshes, each waiting for what is under way, so that a deploy's
// SIGTERM never loses a refresh token Dropbox Sign has just rotated.
func ExampleAccounts_Shutdown() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	dir, _ := os.MkdirTemp("", "tokens")
	defer os.RemoveAll(dir)
	store, _ := dropboxsign.NewFileStore(dir)
	ctx := context.Background()
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := accounts.Client("user-1").Get(fake.AccountURL())
		if err == nil {
			resp.Body.Close()
		}
	}))

	// On SIGTERM (signal.NotifyContext in main, say):
	srv.Config.Shutdown(ctx) // net/http: stop taking requests, wait for those in flight
	srv.Close()
	err := accounts.Shutdown(ctx) // then: stop refreshing, wait for refreshes and saves in flight
	fmt.Println("shut down:", err)

	_, err = accounts.Client("user-1").Get(fake.AccountURL())
	fmt.Println(errors.Is(err, dropboxsign.ErrShutdown))
	// Output:
	// shut down: <nil>
	// true
}

// consent plays the user's browser: the authorize page, then the redirect
// to the fake's callback, which echoes code and state.
func consent(fake *dropboxsigntest.Server, state string) (code, gotState string) {
	resp, err := http.Get(fake.Config().AuthCodeURL(state))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var cb struct{ Code, State string }
	json.NewDecoder(resp.Body).Decode(&cb)
	return cb.Code, cb.State
}
