package dropboxsign

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// save persists next.tok with the WithOnRefresh function and records the
// outcome in next, which is not yet published. failures counts the failed
// saves before this one, for the backoff.
//
// With a store, the token is saved there first, replacing next.stored. On a
// conflict the store is read again: if it lost its data, or holds a refusal
// mark (a replica took the refusal of a refresh token we had just spent for
// the grant's), ours is stored anew, being newer; if another process stored
// a token of its own meanwhile (a new login, say), the store's is the
// account's: next adopts it, and ours, of the grant it replaced, is dropped.
// A new login's token not yet stored (see install) replaces whatever the
// store holds, but a disconnection recorded after the login. A token that
// meets a disconnection mark is dropped: next becomes the disconnected
// state.
func (s *TokenSource) save(runCtx context.Context, next *state, failures int, now time.Time) {
	replace, loggedIn := next.tr.replace, next.tr.loggedIn
	if next.tr.saveErr != nil || replace {
		t := next.edit()
		t.saveErr, t.saveFailures, t.saveRetryAt, t.replace, t.loggedIn = nil, 0, time.Time{}, false, time.Time{}
	}
	ctx, cancel := context.WithTimeout(runCtx, s.cfg.opts.timeout)
	defer cancel()
	var err error
	if replace {
		if err = s.writeLogin(ctx, next.tok, loggedIn); err == nil {
			next.stored = next.tok
		}
	} else if adopted, serr := s.saveToStore(ctx, next); adopted {
		s.emit(runCtx, Event{Kind: EventAdopted, Expiry: next.tok.Expiry})
		return
	} else {
		err = serr
	}
	var disconnected *DisconnectedError
	var notConnected *notConnectedError
	switch {
	case errors.As(err, &disconnected):
		*next = *next.refused(disconnected, next.tr.refusedRT, now, true)
		return
	case errors.As(err, &notConnected):
		*next = *next.refused(notConnected, next.tr.refusedRT, now, true)
		return
	}
	if err == nil && s.cfg.opts.onRefresh != nil {
		err = s.onRefreshUnlessOvertaken(ctx, next.tok)
	}
	if errors.Is(err, errOvertaken) {
		return // a login replaced the token: nothing of this run is published
	}
	if err == nil {
		if failures > 0 {
			s.emit(runCtx, Event{Kind: EventSaved, Expiry: next.tok.Expiry})
		}
		return
	}
	r := newRedactor(s.clientSecret(), next.tok.AccessToken, next.tok.RefreshToken)
	t := next.edit()
	t.saveErr = &SaveError{Err: err, text: "dropboxsign: new token not saved: " + r.textN(err.Error(), 4*maxTextRunes)}
	t.saveFailures = failures + 1
	t.saveRetryAt = now.Add(backoff(t.saveFailures))
	t.replace, t.loggedIn = replace, loggedIn
	s.emit(runCtx, Event{Kind: EventSaveFailed, Err: t.saveErr, RetryAt: t.saveRetryAt, Failures: t.saveFailures, Expiry: next.tok.Expiry})
}

// saveBeforeExit retries a failed save at once, for Accounts.Shutdown: no
// run starts any more, and once the process exits nobody would retry it.
func (s *TokenSource) saveBeforeExit(ctx context.Context) error {
	st := s.state.Load()
	if st.tr.saveErr == nil {
		return nil
	}
	next := *st
	s.save(ctx, &next, st.tr.saveFailures, s.cfg.opts.now())
	s.publish(st, &next)
	if next.tr.saveErr != nil {
		return fmt.Errorf("dropboxsign: account %q: %w", s.key, next.tr.saveErr)
	}
	return nil
}

// saveToStore stores next.tok in place of next.stored. If the store holds
// another writer's token instead, next adopts it (adopted is true).
func (s *TokenSource) saveToStore(ctx context.Context, next *state) (adopted bool, err error) {
	if s.cfg.opts.store == nil || next.stored == next.tok {
		return false, nil
	}
	err = s.storeSave(ctx, next.stored, next.tok)
	if errors.Is(err, ErrConflict) {
		// Look at what is there instead: nothing or a refusal mark (store
		// ours), our own token (an earlier attempt did write), or another
		// writer's token (see above).
		cur, refusal, lerr := s.load(ctx)
		_, disconnected := refusal.(*DisconnectedError)
		switch {
		case lerr != nil:
			err = lerr
		case disconnected:
			return false, refusal // the account's grant is to be forgotten: ours too
		case cur == nil && refusal == nil && !mayRestore(next.tok, s.cfg.opts.now()):
			// Nothing stored, and ours is too old to be stored back: the
			// account may have been disconnected and forgotten since.
			return false, &notConnectedError{s.key}
		case cur == nil || refusal != nil:
			err = s.storeSave(ctx, nil, next.tok)
		case sameToken(cur, next.tok) && cur.RefreshToken == next.tok.RefreshToken:
			err = nil
		case next.stored != nil && sameToken(cur, next.stored) && cur.RefreshToken == next.stored.RefreshToken:
			// The store refused to replace what it says it holds: a broken
			// store, not another writer. Keep ours, and report it.
		default:
			theirs := newState(slim(cur), s.cfg.opts.window)
			theirs.stored = theirs.tok
			*next = *theirs
			return true, nil
		}
	}
	if err != nil {
		return false, s.storeError("save", err, next.tok, next.stored)
	}
	next.stored = next.tok
	return false, nil
}

// onRefreshUnlessOvertaken calls the WithOnRefresh function with tok, a
// run's new token, unless a login has replaced the account's token since
// the run began: one call at a time per account (the login's lock), so
// that a login's call is never followed by one for the grant it replaced.
func (s *TokenSource) onRefreshUnlessOvertaken(ctx context.Context, tok *oauth2.Token) error {
	mu := s.cfg.loginLock(s.key)
	mu.Lock()
	defer mu.Unlock()
	if f := s.flying.Load(); f != nil && f.overtaken(s.state.Load()) {
		return errOvertaken // only a login or a disconnection replaces the token outside a run
	}
	return s.callOnRefresh(ctx, tok)
}

// storeOver stores st.tok, not yet stored, in place of stored, what the
// store was read to hold; a new login's token, over whatever it holds.
func (s *TokenSource) storeOver(ctx context.Context, st *state, stored *oauth2.Token) error {
	if st.tr.replace {
		return s.writeLogin(ctx, st.tok, st.tr.loggedIn)
	}
	return s.storeSave(ctx, stored, st.tok)
}
