package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

func runLogin(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("login", "Authorizes an account: prints Dropbox Sign's authorize URL, waits for the\n"+
		"redirect to a loopback callback, checks its state, exchanges the code and\n"+
		"stores the token (file mode 0600), replacing the account's token, refusal or\n"+
		"disconnection. A callback with another state (a stale tab, a forged request)\n"+
		"is refused, and login keeps waiting for its own. The API app's callback URL\n"+
		"must be http://<listen><callback-path>. Everything it says goes to stderr.", stderr)
	s := newSettings(fs)
	s.accountFlag()
	s.storeFlags()
	s.appFlags()
	listen := fs.String("listen", defaultListen, "loopback `address` of the callback listener")
	path := fs.String("callback-path", defaultCallbackPath, "`path` of the callback URL")
	open := fs.Bool("open", false, "open the authorize URL in a browser, if one is available")
	approve := fs.Bool("approve", false, "consent without a browser, as the user would: only against a fake\n"+
		"Dropbox Sign on loopback ('dropboxsign-token fake'), for scripts and tests")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the authorization")
	if err := s.parse(args); err != nil {
		return err
	}
	conf, err := s.config()
	if err != nil {
		return err
	}
	if *approve {
		if *open {
			return usagef("-approve consents without a browser: it excludes -open")
		}
		if u, _ := url.Parse(conf.Endpoint.AuthURL); u == nil || !isLoopbackHost(u.Hostname()) {
			return usagef("-approve consents on the user's behalf, so it works only against a fake Dropbox Sign on loopback "+
				"(run 'dropboxsign-token fake' and use the endpoint it prints); this endpoint is %s: open the URL in a browser instead",
				conf.Endpoint.AuthURL)
		}
	}
	store, err := s.openStore(true)
	if err != nil {
		return err
	}
	defer store.close()
	ln, err := listenLoopback("-listen", *listen, "the callback",
		"another login running? pick another -listen, and set the API app's callback URL to match")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	state := randomState()
	authURL := conf.AuthCodeURL(state)
	callback := "http://" + ln.Addr().String() + *path
	if *approve {
		fmt.Fprintf(stderr, "Authorizing account %s at the fake's authorize page, without a browser (-approve):\n\n  %s\n\n", shellWord(s.account), authURL)
	} else {
		fmt.Fprintf(stderr, "To authorize account %s, open this URL in a browser:\n\n  %s\n\n", shellWord(s.account), authURL)
	}
	fmt.Fprintf(stderr, "Waiting up to %s for the redirect to %s ...\n", *timeout, callback)
	waitCtx, stopWaiting := context.WithCancelCause(ctx)
	defer stopWaiting(nil)
	switch {
	case *approve:
		go func() {
			if err := approveAt(waitCtx, authURL, callback); err != nil {
				stopWaiting(err)
			}
		}()
	case *open:
		if err := openBrowser(authURL); err != nil {
			fmt.Fprintf(stderr, "(could not open a browser: %v; open the URL yourself)\n", err)
		}
	}
	code, err := serveCallback(waitCtx, ln, *path, state, stderr)
	if err != nil {
		var ae approveError
		if errors.As(context.Cause(waitCtx), &ae) {
			return ae
		}
		return err
	}
	tok, err := dropboxsign.Exchange(ctx, conf, code, state)
	if err != nil {
		return fmt.Errorf("exchanging the code: %w", s.explain(err, conf, *timeout))
	}
	// Replace whatever was stored for the account, with compare-and-swap
	// against what we read, so a concurrent refresh is never undone unseen.
	// A disconnection mark no save writes over: Replace does, and tells
	// the processes that watch the directory that the account is back.
	for range 3 {
		prev, err := store.Load(ctx, s.account)
		var refused *dropboxsign.RefusedError
		var disconnected *dropboxsign.DisconnectedError
		switch {
		case err == nil, errors.Is(err, dropboxsign.ErrNotFound):
		case errors.As(err, &disconnected):
			if err := store.Replace(ctx, s.account, tok); err != nil {
				return fmt.Errorf("storing the token: %w", err)
			}
			fmt.Fprintf(stderr, "Authorized. Account %s, disconnected%s, is connected again: its token is stored in %s (it expires %s).\nPrint it with: %s\n",
				shellWord(s.account), on(disconnected.Since), store.path(s.account), tok.Expiry.Local().Format(time.DateTime), s.command("print"))
			return nil
		case errors.As(err, &refused):
			prev = nil // a new login replaces the refusal
		default:
			if store.file == nil {
				// Replace writes over whatever the store holds.
				fmt.Fprintf(stderr, "warning: replacing an unreadable token: %v\n", err)
				if err := store.Replace(ctx, s.account, tok); err != nil {
					return fmt.Errorf("storing the token: %w", err)
				}
				fmt.Fprintf(stderr, "Authorized. The token for account %s is stored in %s (it expires %s).\nPrint it with: %s\n",
					shellWord(s.account), store.path(s.account), tok.Expiry.Local().Format(time.DateTime), s.command("print"))
				return nil
			}
			fmt.Fprintf(stderr, "warning: replacing an unreadable token file: %v\n", err)
			if err := os.Remove(store.path(s.account)); err != nil {
				return fmt.Errorf("storing the token: %w", err)
			}
		}
		if err = store.Save(ctx, s.account, prev, tok); !errors.Is(err, dropboxsign.ErrConflict) {
			if err != nil {
				return fmt.Errorf("storing the token: %w", err)
			}
			fmt.Fprintf(stderr, "Authorized. The token for account %s is stored in %s (it expires %s).\nPrint it with: %s\n",
				shellWord(s.account), store.path(s.account), tok.Expiry.Local().Format(time.DateTime), s.command("print"))
			return nil
		}
	}
	return errors.New("storing the token: the stored token kept changing; try again")
}

// Login's defaults, which fake's -callback matches.
const (
	defaultListen       = "127.0.0.1:8910"
	defaultCallbackPath = "/callback"
)

// openBrowser asks the desktop to open url.
func openBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	return cmd.Start()
}
