package dropboxsign_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// Classify tells what to do about a token error: wait, send the user back
// through the consent page, or fix the configuration. It looks through
// wrapping, so the errors of Refresh, of a TokenSource and of the clients
// of NewClient and Accounts (a *url.Error around the source's) classify
// alike. Here each class comes from a real answer of the token endpoint.
func ExampleClassify() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	ctx := context.Background()
	tok := fake.IssueToken()

	whatToDo := func(err error) {
		switch class := dropboxsign.Classify(err); class {
		case dropboxsign.NotAnError:
			fmt.Println("ok")
		case dropboxsign.Temporary:
			// A TokenSource retries by itself, with backoff.
			fmt.Printf("%v: try again later\n", class)
		case dropboxsign.RateLimited:
			rl, _ := dropboxsign.ErrorRateLimit(err)
			fmt.Printf("%v: try again after %s\n", class, rl.Reset.UTC().Format(time.RFC3339))
		case dropboxsign.Reauthorize:
			fmt.Printf("%v: ask the user to connect their Dropbox Sign account again\n", class)
		case dropboxsign.Misconfigured:
			fmt.Printf("%v: fix the client ID, secret or token URL; retrying cannot help\n", class)
		}
	}

	// Dropbox Sign, or a proxy before it, is down.
	fake.InjectFault(dropboxsigntest.Fault{Status: http.StatusServiceUnavailable, Count: 1})
	_, err := dropboxsign.Refresh(ctx, fake.Config(), tok.RefreshToken)
	whatToDo(err)

	// Too many requests: exceeded_rate, and when the window resets.
	limited := dropboxsigntest.RateLimited(time.Date(2030, 1, 2, 15, 4, 0, 0, time.UTC))
	limited.Count = 1
	fake.InjectFault(limited)
	_, err = dropboxsign.Refresh(ctx, fake.Config(), tok.RefreshToken)
	whatToDo(err)

	// The user disconnected the app: invalid_grant.
	fake.Revoke(tok)
	_, err = dropboxsign.Refresh(ctx, fake.Config(), tok.RefreshToken)
	whatToDo(err)

	// A wrong client secret: invalid_client.
	conf := fake.Config()
	conf.ClientSecret = "not-the-secret"
	_, err = dropboxsign.Refresh(ctx, conf, tok.RefreshToken)
	whatToDo(err)
	// Output:
	// temporary: try again later
	// rate limited: try again after 2030-01-02T15:04:00Z
	// reauthorize: ask the user to connect their Dropbox Sign account again
	// misconfigured: fix the client ID, secret or token URL; retrying cannot help
}
