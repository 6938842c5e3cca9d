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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "webapp:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	storeDir := flag.String("store", "", "directory of the token store (default: a new temporary directory)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The app's listener first: the callback URL names its address.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	appURL := "http://" + ln.Addr().String()

	// A fake Dropbox Sign. Against the real one: a Config with the API
	// app's client ID and secret, dropboxsign.Endpoint, and APIURL
	// https://api.hellosign.com.
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	conf := fake.Config()
	conf.RedirectURL = appURL + pathCallback
	fake.SetCallbackURL(conf.RedirectURL) // the callback URL set in the API app's settings

	dir := *storeDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "webapp-tokens-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	store, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		return err
	}
	accounts := dropboxsign.NewAccounts(context.Background(), conf, store)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		accounts.Shutdown(sctx)
	}()

	app, err := NewApp(Config{
		Accounts: accounts,
		OAuth:    conf,
		APIURL:   fake.URL,
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
	fmt.Printf("webapp: open %s (fake Dropbox Sign at %s, tokens in %s)\n", appURL, fake.URL, dir)
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
