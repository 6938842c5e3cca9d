package dropboxsign_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// The "Connect Dropbox Sign" button and the callback, for the app's
// signed-in user. (Against Dropbox Sign, conf has the app's credentials and
// dropboxsign.Endpoint, RedirectURL is the callback URL set in the API
// app's settings, and the keys come from a secret manager, the same on
// every replica.)
func ExampleConnect() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	dir, _ := os.MkdirTemp("", "tokens")
	defer os.RemoveAll(dir)
	store, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	conf := fake.Config()
	accounts := dropboxsign.NewAccounts(ctx, conf, store)
	defer accounts.Shutdown(ctx)

	key := make([]byte, 32) // from a secret manager
	mux := http.NewServeMux()
	app := httptest.NewServer(mux)
	defer app.Close()
	conf.RedirectURL = app.URL + "/dropbox-sign/callback"
	fake.SetCallbackURL(conf.RedirectURL)

	connect := &dropboxsign.Connect{
		Accounts: accounts,
		Config:   conf,
		Keys:     [][]byte{key},
		User: func(r *http.Request) (string, bool) {
			return "user-42", true // from the app's session
		},
		Done: func(w http.ResponseWriter, r *http.Request, account string, err error) {
			if err != nil {
				// Classify(err) == Reauthorize: declined, or start again.
				http.Error(w, "Dropbox Sign is not connected: try again", http.StatusBadGateway)
				return
			}
			http.Redirect(w, r, dropboxsign.ConnectReturn(r), http.StatusSeeOther)
		},
	}
	mux.Handle("GET /dropbox-sign/connect", connect.Begin())
	mux.Handle("GET /dropbox-sign/callback", connect.Callback())
	mux.HandleFunc("GET /settings", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "settings:", accounts.Connection(r.Context(), "user-42").Status == dropboxsign.StatusConnected)
	})

	// The user's browser: connect, consent (the fake consents at once),
	// back at the settings page.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Get(app.URL + "/dropbox-sign/connect?return=/settings")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.Request.URL.Path, " ", string(page))
	// Output:
	// /settings settings: true
}
