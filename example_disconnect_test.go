package dropboxsign_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// The settings page's "Disconnect Dropbox Sign" button. When Disconnect
// returns nil, no replica acts for the user any more (this one at once, the
// others as the store tells them), and the store holds none of their
// tokens: calls for the account fail with ErrDisconnected, without reaching
// Dropbox Sign. Dropbox Sign has no endpoint to revoke a grant: the last
// access token stays valid there until it expires, unused. A new login
// connects the account again.
func ExampleAccounts_Disconnect() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	store := dropboxsigntest.NewStore() // in an app: pgstore, redisstore or a FileStore
	ctx := context.Background()
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	defer accounts.Shutdown(ctx)

	code, state := consent(fake, "state-1")
	if _, err := accounts.Login(ctx, "user-42", code, state); err != nil {
		panic(err)
	}
	last, _ := accounts.TokenSource("user-42").TokenContext(ctx) // for the check below

	// POST /settings/dropbox-sign/disconnect
	disconnect := func(w http.ResponseWriter, r *http.Request) {
		user := "user-42" // from the app's session
		if err := accounts.Disconnect(r.Context(), user); err != nil {
			// Not known to be done (the store is down, say): say so, and
			// let the user try again.
			http.Error(w, "could not disconnect Dropbox Sign; please try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Dropbox Sign disconnected")
	}
	rec := httptest.NewRecorder()
	disconnect(rec, httptest.NewRequest("POST", "/settings/dropbox-sign/disconnect", nil))
	fmt.Print(rec.Body.String())

	apiCalls := fake.Stats().APICalls
	_, err := accounts.Client("user-42").Get(fake.AccountURL())
	fmt.Println("disconnected:", errors.Is(err, dropboxsign.ErrDisconnected), dropboxsign.Classify(err))
	fmt.Println("requests that reached the API:", fake.Stats().APICalls-apiCalls)
	var mark *dropboxsign.DisconnectedError
	_, err = store.Load(ctx, "user-42") // a mark: the key and a time, no token
	fmt.Println("in the store, a disconnection mark:", errors.As(err, &mark) && mark.Key == "user-42")

	// What Dropbox Sign keeps: the last access token works until it expires.
	req, _ := http.NewRequest("GET", fake.AccountURL(), nil)
	last.SetAuthHeader(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("the last access token, at Dropbox Sign:", resp.Status)

	// The user connects again.
	code, state = consent(fake, "state-2")
	if _, err := accounts.Login(ctx, "user-42", code, state); err != nil {
		panic(err)
	}
	resp, err = accounts.Client("user-42").Get(fake.AccountURL())
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("after a new login:", resp.Status)
	// Output:
	// Dropbox Sign disconnected
	// disconnected: true reauthorize
	// requests that reached the API: 0
	// in the store, a disconnection mark: true
	// the last access token, at Dropbox Sign: 200 OK
	// after a new login: 200 OK
}

// The settings page shows where the user's connection stands, from one
// store read and no token request: connected, never connected, disconnected
// by the app, refused by Dropbox Sign (the user removed the app there), or
// unknown when the store cannot be read.
func ExampleAccounts_Connection() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	store := dropboxsigntest.NewStore()
	ctx := context.Background()
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	defer accounts.Shutdown(ctx)

	// GET /settings: the Dropbox Sign line.
	settings := func(w http.ResponseWriter, r *http.Request, user string) {
		c := accounts.Connection(r.Context(), user)
		switch c.Status {
		case dropboxsign.StatusConnected:
			fmt.Fprintln(w, "Connected to Dropbox Sign · [Disconnect]")
		case dropboxsign.StatusNeverConnected:
			fmt.Fprintln(w, "Not connected · [Connect Dropbox Sign]")
		case dropboxsign.StatusDisconnected:
			fmt.Fprintln(w, "Disconnected by you · [Connect Dropbox Sign]") // since c.Since
		case dropboxsign.StatusRefused:
			fmt.Fprintln(w, "Dropbox Sign ended the connection · [Connect again]") // since c.Since; c.Err says why
		default: // StatusUnknown: c.Err says why
			fmt.Fprintln(w, "Dropbox Sign: status unavailable, try again later")
		}
	}
	show := func(user string) {
		rec := httptest.NewRecorder()
		settings(rec, httptest.NewRequest("GET", "/settings", nil), user)
		fmt.Printf("%s: %s", user, rec.Body.String())
	}

	code, state := consent(fake, "state-1")
	if _, err := accounts.Login(ctx, "ann", code, state); err != nil {
		panic(err)
	}
	show("ann")

	show("bo") // never connected

	code, state = consent(fake, "state-2")
	if _, err := accounts.Login(ctx, "cy", code, state); err != nil {
		panic(err)
	}
	if err := accounts.Disconnect(ctx, "cy"); err != nil {
		panic(err)
	}
	show("cy")

	tok := fake.IssueToken()
	tok.AccessToken = "" // due for a refresh
	store.Save(ctx, "di", nil, tok)
	fake.Revoke(tok) // the user removes the app in Dropbox Sign's settings
	accounts.Client("di").Get(fake.AccountURL())
	show("di")
	// Output:
	// ann: Connected to Dropbox Sign · [Disconnect]
	// bo: Not connected · [Connect Dropbox Sign]
	// cy: Disconnected by you · [Connect Dropbox Sign]
	// di: Dropbox Sign ended the connection · [Connect again]
}

// A daily job erases what a disconnection left in the store: a mark that
// holds the account's key and a time, no token. Forget erases a mark once
// it is ForgetAfter old: before then, a replica may still hold a token of
// the grant, and the mark is what keeps it from storing the token back into
// what would look like a store that lost its data.
func ExampleAccounts_Forget() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	store := dropboxsigntest.NewStore()
	ctx := context.Background()
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	defer accounts.Shutdown(ctx)

	// "Delete my account": the app deletes its own data of the user, and
	// disconnects Dropbox Sign.
	for _, user := range []string{"user-9", "user-12"} {
		code, state := consent(fake, "state-"+user)
		if _, err := accounts.Login(ctx, user, code, state); err != nil {
			panic(err)
		}
		if err := accounts.Disconnect(ctx, user); err != nil {
			panic(err)
		}
	}

	// The daily job.
	var kept []string
	for d, err := range accounts.Disconnected(ctx) {
		if err != nil {
			panic(err) // the store failed: the next run tries again
		}
		if time.Since(d.Since) < dropboxsign.ForgetAfter {
			kept = append(kept, d.Key) // tomorrow, or the day after
			continue
		}
		if err := accounts.Forget(ctx, d.Key); err != nil {
			fmt.Println(err) // connected again meanwhile, say: nothing erased
		}
	}
	slices.Sort(kept)
	fmt.Println("kept until", dropboxsign.ForgetAfter, "old:", kept)

	// Too early, Forget erases nothing.
	err := accounts.Forget(ctx, "user-9")
	fmt.Println("forget user-9 now:", err != nil, accounts.Connection(ctx, "user-9").Status)
	// Output:
	// kept until 48h3m0s old: [user-12 user-9]
	// forget user-9 now: true disconnected
}
