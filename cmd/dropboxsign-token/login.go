package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

func runLogin(args []string, stdout, stderr io.Writer) error {
	var s settings
	fs := newFlagSet("login", "Authorizes an account: prints Dropbox Sign's authorize URL, waits for the\n"+
		"redirect to a loopback callback, checks its state, exchanges the code and\n"+
		"stores the token (file mode 0600). A callback with another state (a stale\n"+
		"tab, a forged request) is refused, and login keeps waiting for its own.\n"+
		"The API app's callback URL must be http://<listen><callback-path>.", stderr)
	s.register(fs, true)
	listen := fs.String("listen", "127.0.0.1:8910", "loopback address of the callback listener")
	path := fs.String("callback-path", "/callback", "path of the callback URL")
	open := fs.Bool("open", false, "open the authorize URL in a browser, if one is available")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the authorization")
	if err := parse(fs, args); err != nil {
		return err
	}
	conf, err := s.config(true)
	if err != nil {
		return err
	}
	store, err := s.store()
	if err != nil {
		return err
	}
	ln, err := listenLoopback(*listen)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	state := randomState()
	authURL := conf.AuthCodeURL(state)
	fmt.Fprintf(stderr, "To authorize account %q, open this URL in a browser:\n\n  %s\n\n", s.account, authURL)
	fmt.Fprintf(stderr, "Waiting up to %s for the redirect to http://%s%s ...\n", *timeout, ln.Addr(), *path)
	if *open {
		if err := openBrowser(authURL); err != nil {
			fmt.Fprintf(stderr, "(could not open a browser: %v; open the URL yourself)\n", err)
		}
	}
	code, err := serveCallback(ctx, ln, *path, state, stderr)
	if err != nil {
		return err
	}
	tok, err := dropboxsign.Exchange(ctx, conf, code, state)
	if err != nil {
		return fmt.Errorf("exchanging the code: %w", err)
	}
	// Replace whatever was stored for the account, with compare-and-swap
	// against what we read, so a concurrent refresh is never undone unseen.
	for range 3 {
		prev, err := store.Load(ctx, s.account)
		if err != nil && !errors.Is(err, dropboxsign.ErrNotFound) {
			fmt.Fprintf(stderr, "warning: replacing an unreadable token file: %v\n", err)
			if err := os.Remove(store.Path(s.account)); err != nil {
				return fmt.Errorf("storing the token: %w", err)
			}
		}
		if err = store.Save(ctx, s.account, prev, tok); !errors.Is(err, dropboxsign.ErrConflict) {
			if err != nil {
				return fmt.Errorf("storing the token: %w", err)
			}
			fmt.Fprintf(stderr, "Authorized. The token for account %q is stored in %s (it expires %s).\n",
				s.account, store.Path(s.account), tok.Expiry.Local().Format(time.DateTime))
			return nil
		}
	}
	return errors.New("storing the token: the stored token kept changing; try again")
}

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
