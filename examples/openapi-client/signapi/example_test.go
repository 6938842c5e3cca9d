package signapi_test

import (
	"context"
	"fmt"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/examples/openapi-client/signapi"
)

// A client generated from Dropbox Sign's OpenAPI document takes any HTTP
// client: given the one Accounts keeps for a user, every call it makes
// carries that user's token, refreshed as needed (and a request the API
// refuses with a 401 is replayed once with a new token). Against Dropbox
// Sign, the server is dropboxsign.APIBaseURL and conf has the app's
// credentials with dropboxsign.Endpoint; here both are the fake's.
func Example() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	ctx := context.Background()

	store := dropboxsigntest.NewStore() // the app's: FileStore, redisstore, pgstore
	tok := fake.IssueToken()            // the user's grant, stored at login (Accounts.Login)
	tok.AccessToken = ""                // due for a refresh
	store.Save(ctx, "user-1", nil, tok)
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	defer accounts.Shutdown(ctx)

	api, err := signapi.NewClientWithResponses(fake.URL+"/v3", signapi.WithHTTPClient(accounts.Client("user-1")))
	if err != nil {
		panic(err)
	}
	resp, err := api.AccountGetWithResponse(ctx, nil)
	if err != nil {
		panic(err) // for a token error, dropboxsign.Classify(err) tells what to do
	}
	if resp.JSON200 == nil {
		panic(resp.Status()) // resp.JSON4XX holds Dropbox Sign's error
	}
	account := resp.JSON200.Account
	fmt.Println(*account.AccountId, *account.EmailAddress)
	fmt.Println("refreshes:", fake.Stats().Refreshes)
	// Output:
	// account-1 account-1@example.com
	// refreshes: 1
}
