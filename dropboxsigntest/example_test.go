package dropboxsigntest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// app stands for the code under test: an app that acts for its users
// through their Dropbox Sign accounts. In production it is built with
// dropboxsign.Endpoint, dropboxsign.APIBaseURL and the app's store; its
// tests build it with the fake's.
type app struct {
	accounts *dropboxsign.Accounts
	apiBase  string
}

func newApp(conf *oauth2.Config, apiBase string, store dropboxsign.Store) *app {
	return &app{accounts: dropboxsign.NewAccounts(context.Background(), conf, store), apiBase: apiBase}
}

// accountID asks the API who user is, in Dropbox Sign.
func (a *app) accountID(ctx context.Context, user string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.apiBase+"/account", nil)
	if err != nil {
		return "", err
	}
	resp, err := a.accounts.Client(user).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /account: %s", resp.Status)
	}
	var body struct {
		Account struct {
			AccountID string `json:"account_id"`
		} `json:"account"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	return body.Account.AccountID, nil
}

// handle is the app's page that shows a user's Dropbox Sign account.
func (a *app) handle(w http.ResponseWriter, r *http.Request) {
	id, err := a.accountID(r.Context(), r.FormValue("user"))
	switch dropboxsign.Classify(err) {
	case dropboxsign.NotAnError:
		fmt.Fprintln(w, "your Dropbox Sign account:", id)
	case dropboxsign.Reauthorize:
		http.Redirect(w, r, "/connect", http.StatusSeeOther)
	default:
		http.Error(w, "Dropbox Sign is unavailable: try again later", http.StatusServiceUnavailable)
	}
}

// get calls the app's page for user, as a test does.
func (a *app) get(user string) string {
	rec := httptest.NewRecorder()
	a.handle(rec, httptest.NewRequest(http.MethodGet, "/account?user="+user, nil))
	return fmt.Sprint(rec.Code, " ", strings.TrimSpace(rec.Body.String()))
}

// due stores a token for user that needs a refresh before use, as a test's
// setup does: the fake's IssueToken stands for the user's earlier login.
func due(fake *dropboxsigntest.Server, store dropboxsign.Store, user string) *oauth2.Token {
	tok := fake.IssueToken()
	tok.AccessToken = ""
	if err := store.Save(context.Background(), user, nil, tok); err != nil {
		panic(err)
	}
	return tok
}

// An app's test runs the app's own code against the fake in place of
// Dropbox Sign: the fake's Config in place of the app's oauth2.Config, its
// URL in place of the API's. Here the whole way, from the consent page to
// an API call (in a test, t.Cleanup(fake.Close) and t.Errorf where this
// prints).
func ExampleServer() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	a := newApp(fake.Config(), fake.URL+"/v3", dropboxsigntest.NewStore())

	// The user consents: the fake's authorize page redirects to its own
	// callback (see SetCallbackURL for the app's), which echoes code and
	// state.
	resp, err := http.Get(fake.Config().AuthCodeURL("a-random-state"))
	if err != nil {
		panic(err)
	}
	var callback struct{ Code, State string }
	json.NewDecoder(resp.Body).Decode(&callback)
	resp.Body.Close()
	if _, err := a.accounts.Login(context.Background(), "user-1", callback.Code, callback.State); err != nil {
		panic(err)
	}

	fmt.Println(a.get("user-1"))
	stats := fake.Stats()
	fmt.Println("exchanges:", stats.Exchanges, "API calls:", stats.APICalls)
	// Output:
	// 200 your Dropbox Sign account: account-1
	// exchanges: 1 API calls: 1
}

// InjectFault makes the token endpoint fail as Dropbox Sign can, so that a
// test sees what the app's users see then: here a page that says to try
// again when Dropbox Sign is down, and that sends a user whose grant is gone
// to connect again.
func ExampleServer_InjectFault() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	store := dropboxsigntest.NewStore()
	a := newApp(fake.Config(), fake.URL+"/v3", store)

	due(fake, store, "user-1")
	fake.InjectFault(dropboxsigntest.BadGateway()) // Count 0: every token request, until ClearFaults
	fmt.Println(a.get("user-1"))
	fake.ClearFaults()

	// The user disconnected the app in their Dropbox Sign settings: the
	// refresh gets invalid_grant. (Revoke does it; so would
	// InjectFault(OAuthError(400, "invalid_grant", …)).)
	fake.Revoke(due(fake, store, "user-2"))
	fmt.Println(a.get("user-2"))
	// Output:
	// 503 Dropbox Sign is unavailable: try again later
	// 303 <a href="/connect">See Other</a>.
}

// HoldTokenResponses keeps token answers back while a test acts with a
// refresh in flight. Here: pages that several users' requests hit at once
// share one refresh, as they do when the app keeps one Accounts for the
// process (an app that made one per request would show five token requests).
func ExampleServer_HoldTokenResponses() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	store := dropboxsigntest.NewStore()
	a := newApp(fake.Config(), fake.URL+"/v3", store)
	due(fake, store, "user-1")

	release := fake.HoldTokenResponses()
	pages := make([]string, 5)
	var wg sync.WaitGroup
	for i := range pages {
		wg.Go(func() { pages[i] = a.get("user-1") })
	}
	// The refresh has reached the token endpoint; the pages wait for it.
	if err := fake.WaitTokenRequests(context.Background(), 1); err != nil {
		panic(err)
	}
	release()
	wg.Wait()

	for _, page := range pages {
		fmt.Println(page)
	}
	fmt.Println("token requests:", fake.Stats().TokenRequests)
	// Output:
	// 200 your Dropbox Sign account: account-1
	// 200 your Dropbox Sign account: account-1
	// 200 your Dropbox Sign account: account-1
	// 200 your Dropbox Sign account: account-1
	// 200 your Dropbox Sign account: account-1
	// token requests: 1
}

// NewStore is a Store in memory that counts its calls: a test's stand-in for
// the app's database, or Redis, that it can inspect. Here a test checks that
// the app stores the refresh token Dropbox Sign rotates, and that a request
// served from memory costs no store call.
func ExampleNewStore() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	store := dropboxsigntest.NewStore()
	a := newApp(fake.Config(), fake.URL+"/v3", store)
	ctx := context.Background()
	first := due(fake, store, "user-1")

	fmt.Println(a.get("user-1")) // refreshes
	stored, err := store.Load(ctx, "user-1")
	if err != nil {
		panic(err)
	}
	fmt.Println("rotated refresh token stored:", stored.RefreshToken != first.RefreshToken)

	before := store.Stats()
	fmt.Println(a.get("user-1")) // the token in memory serves
	fmt.Println("no store call:", store.Stats() == before)
	// Output:
	// 200 your Dropbox Sign account: account-1
	// rotated refresh token stored: true
	// 200 your Dropbox Sign account: account-1
	// no store call: true
}
