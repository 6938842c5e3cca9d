package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

// storeTimeout bounds disconnect's and forget's store calls: a FileStore's
// lock held by a process that hangs must not hang the command.
const storeTimeout = 30 * time.Second

func runDisconnect(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("disconnect", "Disconnects an account, as an app's \"Disconnect Dropbox Sign\" button does:\n"+
		"its tokens are erased from the token directory and replaced by a disconnection\n"+
		"mark, which holds the account's name and the time and no secret, and which no\n"+
		"process using the store stores a token over. print then exits 3; only a\n"+
		"new login connects the account again. Dropbox Sign has no endpoint to revoke\n"+
		"a grant: the last access token stays valid there until it expires (the user\n"+
		"can remove the app in Dropbox Sign's settings). Running it again changes\n"+
		"nothing. It makes no request. Everything it says goes to stderr.", stderr)
	s := newSettings(fs)
	s.accountFlag()
	s.storeFlags()
	if err := s.parse(args); err != nil {
		return err
	}
	store, err := s.openStore(false)
	if errors.Is(err, errNoDir) {
		// Nothing was ever stored there: no token to erase, and no
		// process using the directory to keep from storing one.
		fmt.Fprintf(stderr, "Nothing stored for account %s: %s does not exist; nothing to disconnect.\n", shellWord(s.account), store.where)
		return nil
	}
	if err != nil {
		return err
	}
	defer store.close()
	dir := store.where
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	// What the account held, to say what was done; the disconnection does
	// not depend on it (a concurrent login or refresh may change it).
	_, before := store.Load(ctx, s.account)
	if err := store.Disconnect(ctx, s.account); err != nil {
		return fmt.Errorf("account %s may still be connected: try again\n(%v)", shellWord(s.account), err)
	}
	var mark *dropboxsign.DisconnectedError
	if _, err := store.Load(ctx, s.account); !errors.As(err, &mark) {
		// A login since, or a store that lost the mark: say so, not done.
		return fmt.Errorf("account %s: the store recorded the disconnection, but now holds %s: run 'dropboxsign-token status'", shellWord(s.account), holds(err))
	}
	key := shellWord(s.account)
	var was *dropboxsign.DisconnectedError
	var refused *dropboxsign.RefusedError
	switch {
	case errors.As(before, &was):
		fmt.Fprintf(stderr, "Account %s was already disconnected%s: nothing changed.\n", key, on(mark.Since))
		return nil
	case errors.Is(before, dropboxsign.ErrNotFound):
		fmt.Fprintf(stderr, "Account %s had nothing stored in %s; it is marked disconnected%s all the same, so that no process\n"+
			"that still holds a token for it stores it back. (A mistyped name? 'dropboxsign-token status' lists the accounts.)\n",
			key, dir, on(mark.Since))
	case errors.As(before, &refused):
		fmt.Fprintf(stderr, "Disconnected account %s%s (Dropbox Sign had refused its grant): its refusal mark is replaced\n"+
			"by a disconnection mark, which holds no secret.\n", key, on(mark.Since))
	case before != nil:
		fmt.Fprintf(stderr, "Disconnected account %s%s: its unreadable file %s is replaced by a disconnection mark,\n"+
			"which holds no secret.\n", key, on(mark.Since), store.path(s.account))
	default:
		fmt.Fprintf(stderr, "Disconnected account %s%s: its tokens are erased from %s, replaced by a disconnection mark,\n"+
			"which holds no secret. Dropbox Sign has no endpoint to revoke the grant: the last access token stays valid\n"+
			"there until it expires; the user can remove the app in Dropbox Sign's settings.\n", key, on(mark.Since), dir)
	}
	fmt.Fprintf(stderr, "To connect it again: %s\n", s.loginCommand())
	fmt.Fprintf(stderr, "To erase the mark, and the account's name with it, from %s on: %s\n",
		mark.Since.Add(dropboxsign.ForgetAfter).Local().Format(time.DateTime), s.command("forget"))
	return nil
}

func runForget(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("forget", "Erases a disconnected account's mark from the store, so that it\n"+
		"keeps nothing of the account, not even its name. Only a mark at least\n"+
		forgetAfter()+" old is erased: until then a process may still hold a token it\n"+
		"obtained before the disconnection, and the mark is what keeps it from storing\n"+
		"it back. A connected or refused account is not touched: disconnect it first.\n"+
		"It makes no request. Everything it says goes to stderr.", stderr)
	s := newSettings(fs)
	s.accountFlag()
	s.storeFlags()
	if err := s.parse(args); err != nil {
		return err
	}
	key := shellWord(s.account)
	store, err := s.openStore(false)
	if errors.Is(err, errNoDir) {
		fmt.Fprintf(stderr, "Nothing stored for account %s: %s does not exist; nothing to forget.\n", key, store.where)
		return nil
	}
	if err != nil {
		return err
	}
	defer store.close()
	dir := store.where
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	_, before := store.Load(ctx, s.account)
	var mark *dropboxsign.DisconnectedError
	switch err := store.Forget(ctx, s.account, time.Now().Add(-dropboxsign.ForgetAfter)); {
	case errors.Is(err, dropboxsign.ErrConflict):
		return s.notForgotten(ctx, store)
	case err != nil:
		return fmt.Errorf("account %s: nothing erased\n(%v)", key, err)
	case errors.As(before, &mark):
		fmt.Fprintf(stderr, "Forgot account %s: its disconnection mark%s is erased; %s holds nothing of it.\n", key, on(mark.Since), dir)
	default:
		fmt.Fprintf(stderr, "Nothing stored for account %s in %s: nothing to forget.\n", key, dir)
	}
	return nil
}

// notForgotten says why forget erased nothing: the account is not
// disconnected, or not for long enough.
func (s *settings) notForgotten(ctx context.Context, store dropboxsign.Store) error {
	key := shellWord(s.account)
	_, err := store.Load(ctx, s.account)
	var mark *dropboxsign.DisconnectedError
	if errors.As(err, &mark) {
		return fmt.Errorf("account %s was disconnected%s, less than %s ago: nothing erased; try again from %s on\n"+
			"(until then a process may still hold a token it obtained before the disconnection, and the mark is what keeps it from storing it back)",
			key, on(mark.Since), forgetAfter(), mark.Since.Add(dropboxsign.ForgetAfter).Local().Format(time.DateTime))
	}
	return fmt.Errorf("account %s %s, not disconnected: run '%s' first, then forget it once its mark is %s old; nothing erased",
		key, holds(err), s.command("disconnect"), forgetAfter())
}

// disconnected is the error for an account the app disconnected (print):
// exit code 3, as for any account that needs a login.
func (s *settings) disconnected(d *dropboxsign.DisconnectedError) error {
	return s.mustLogin("account %s was disconnected: run '%s' to connect it again\n"+
		"(marked disconnected in the store%s, by 'dropboxsign-token disconnect' or the app: its tokens are erased. "+
		"Until the account logs in again, print says so at once, without a request.)", shellWord(s.account), s.loginCommand(), on(d.Since))
}

// holds says what a Load's error says the account holds.
func holds(err error) string {
	var refused *dropboxsign.RefusedError
	var mark *dropboxsign.DisconnectedError
	switch {
	case err == nil:
		return "is connected (a token is stored)"
	case errors.Is(err, dropboxsign.ErrNotFound):
		return "has nothing stored"
	case errors.As(err, &mark):
		return "is disconnected"
	case errors.As(err, &refused):
		return "is refused by Dropbox Sign"
	}
	return fmt.Sprintf("cannot be read (%v)", err)
}

// on is " on <local time>" for a mark's time, "" if it has none.
func on(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return " on " + t.Local().Format(time.DateTime)
}

// forgetAfter is dropboxsign.ForgetAfter as the messages say it.
func forgetAfter() string {
	return dropboxsign.ForgetAfter.String()
}
