// Command webapp is a small, complete multi-user app that connects each
// user's Dropbox Sign account with package dropboxsign: a stub sign-in, a
// settings page (connect, reconnect, disconnect), sending a signature
// request on the user's behalf, delete-my-account and a readiness route.
//
// By default it runs against a fake Dropbox Sign (dropboxsigntest) started
// in the same process, and keeps tokens in a FileStore in a temporary
// directory:
//
//	go run ./examples/webapp
//
// then open the URL it prints. See README.md.
//
// Flags: -addr (where to listen), -url (the app's URL as browsers reach it,
// when a proxy or a host name stands in front), -store (a token directory
// to keep), -postgres (keep tokens in PostgreSQL instead), and -dropbox-sign (the URL of a fake Dropbox Sign already
// running, with its client ID and secret in DROPBOX_SIGN_CLIENT_ID and
// DROPBOX_SIGN_CLIENT_SECRET: the browser tests run the fake themselves to
// count what it sees).
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "webapp:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	publicURL := flag.String("url", "", "the app's URL as browsers reach it (default: http:// and the address it listens on)")
	storeDir := flag.String("store", "", "directory of the token store (default: a new temporary directory)")
	postgres := flag.String("postgres", "", "keep tokens in PostgreSQL at this DSN (postgres://…) instead of a directory; the tables are made if missing")
	fakeURL := flag.String("dropbox-sign", "", "URL of a fake Dropbox Sign already running, client ID and secret in $DROPBOX_SIGN_CLIENT_ID and $DROPBOX_SIGN_CLIENT_SECRET (default: start one in this process)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The app's listener first: the callback URL names its address.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	appURL := "http://" + ln.Addr().String()
	if *publicURL != "" {
		u, err := url.Parse(*publicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("-url must be an http or https URL with no path, such as https://app.example.com, not %q", *publicURL)
		}
		appURL = u.Scheme + "://" + u.Host
	}

	// Dropbox Sign: a fake. Against the real one: a Config with the API
	// app's client ID and secret, dropboxsign.Endpoint, and APIURL
	// https://api.hellosign.com.
	var conf *oauth2.Config
	apiURL := *fakeURL
	if apiURL == "" {
		fake := dropboxsigntest.NewServer()
		defer fake.Close()
		conf, apiURL = fake.Config(), fake.URL
		fake.SetCallbackURL(appURL + pathCallback) // the callback URL set in the API app's settings
	} else {
		u, err := url.Parse(apiURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-dropbox-sign must be an http or https URL, not %q", apiURL)
		}
		id, secret := os.Getenv("DROPBOX_SIGN_CLIENT_ID"), os.Getenv("DROPBOX_SIGN_CLIENT_SECRET")
		if id == "" || secret == "" {
			return errors.New("-dropbox-sign needs DROPBOX_SIGN_CLIENT_ID and DROPBOX_SIGN_CLIENT_SECRET in the environment")
		}
		apiURL = strings.TrimSuffix(apiURL, "/")
		conf = &oauth2.Config{ClientID: id, ClientSecret: secret, Endpoint: oauth2.Endpoint{
			AuthURL:   apiURL + dropboxsigntest.AuthorizePath,
			TokenURL:  apiURL + dropboxsigntest.TokenPath,
			AuthStyle: oauth2.AuthStyleInParams,
		}}
	}
	conf.RedirectURL = appURL + pathCallback

	store, where, err := openStore(ctx, *storeDir, *postgres)
	if err != nil {
		return err
	}
	defer store.Close()
	accounts := dropboxsign.NewAccounts(context.Background(), conf, store.Store)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		accounts.Shutdown(sctx)
	}()

	app, err := NewApp(Config{
		Accounts: accounts,
		OAuth:    conf,
		APIURL:   apiURL,
		// Random per run here (sessions end when it stops); in
		// production, from a secret manager, the same on every replica.
		SessionKey: randomKey(),
		ConnectKey: randomKey(),
		Log:        slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("webapp: open %s (fake Dropbox Sign at %s, tokens in %s)\n", appURL, apiURL, where)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func randomKey() []byte {
	k := make([]byte, 32)
	rand.Read(k) // never fails (crypto/rand)
	return k
}
