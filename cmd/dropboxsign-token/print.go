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
	var s settings
	fs := newFlagSet("print", "Prints a valid access token for an account, and nothing else, on stdout.\n"+
		"A token about to expire is refreshed first, and the new token (with its\n"+
		"rotated refresh token) is stored before it is printed.", stderr)
	s.register(fs, true)
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for a refresh")
	if err := parse(fs, args); err != nil {
		return err
	}
	conf, err := s.config(false) // credentials are needed only to refresh
	if err != nil {
		return err
	}
	store, err := s.store()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if _, err := store.Load(ctx, s.account); err != nil {
		if errors.Is(err, dropboxsign.ErrNotFound) {
			return fmt.Errorf("no token stored for account %q in %s: run 'dropboxsign-token login -account %s'", s.account, store.Path(s.account), s.account)
		}
		return err
	}
	ts := dropboxsign.NewTokenSource(ctx, conf, nil, dropboxsign.WithStore(store, s.account), dropboxsign.WithExpiryWindow(time.Minute))
	tok, err := ts.TokenContext(ctx)
	var saveErr *dropboxsign.SaveError
	if errors.As(err, &saveErr) && tok != nil {
		fmt.Fprintf(stderr, "warning: the refreshed token could not be stored: %v\n", saveErr.Err)
		err = nil
	}
	if err != nil {
		if dropboxsign.Classify(err) == dropboxsign.Reauthorize {
			return fmt.Errorf("%w\nThe account must be authorized again: run 'dropboxsign-token login -account %s'", err, s.account)
		}
		return err
	}
	_, err = fmt.Fprintln(stdout, tok.AccessToken)
	return err
}
