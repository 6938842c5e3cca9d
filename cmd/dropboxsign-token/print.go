package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

func runPrint(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("print", "Prints a valid access token for an account on stdout, and nothing else: errors\n"+
		"and warnings go to stderr. A token that expires within a minute (or within\n"+
		"half its lifetime, if shorter) is refreshed first, and the new token, with\n"+
		"its rotated refresh token, is stored before it is printed. Exit code 3 means\n"+
		"the account must be authorized (again): stderr says with which login command.", stderr)
	s := newSettings(fs)
	s.accountFlag()
	s.storeFlags()
	s.appFlags()
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for a refresh")
	if err := s.parse(args); err != nil {
		return err
	}
	conf, err := s.config()
	if err != nil {
		return err
	}
	store, err := s.openStore(false)
	if errors.Is(err, errNoDir) {
		return s.mustLogin("no token stored for account %s (%s does not exist): run '%s'", shellWord(s.account), store.where, s.loginCommand())
	}
	if err != nil {
		return err
	}
	defer store.close()
	dir := store.where
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// Saying at once what is missing beats a token source's generic error.
	var refused *dropboxsign.RefusedError
	var disconnected *dropboxsign.DisconnectedError
	switch _, err := store.Load(ctx, s.account); {
	case errors.Is(err, dropboxsign.ErrNotFound):
		return s.mustLogin("no token stored for account %s in %s: run '%s'", shellWord(s.account), dir, s.loginCommand())
	case errors.As(err, &disconnected):
		return s.disconnected(disconnected)
	case errors.As(err, &refused):
		return s.refused(refused)
	case err != nil:
		return err
	}
	ts := dropboxsign.NewTokenSource(ctx, conf, nil, dropboxsign.WithStore(store, s.account), dropboxsign.WithExpiryWindow(time.Minute))
	tok, err := ts.TokenContext(ctx)
	var saveErr *dropboxsign.SaveError
	if errors.As(err, &saveErr) && tok != nil {
		fmt.Fprintf(stderr, "dropboxsign-token print: warning: the new token could not be stored (%v); if Dropbox Sign rotated its refresh token, the account will need a login\n", saveErr.Err)
		err = nil
	}
	if err != nil {
		return s.explain(err, conf, *timeout)
	}
	_, err = fmt.Fprintln(stdout, tok.AccessToken)
	return err
}
