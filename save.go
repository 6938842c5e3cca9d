package dropboxsign

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// save persists next.tok with the WithOnRefresh function and records the
// outcome in next, which is not yet published. failures counts the failed
// saves before this one, for the backoff.
//
// With a store, the token is saved there first, replacing next.stored. On a
// conflict the store is read again: if it lost its data, or holds a refusal
// mark (a replica took the refusal of a refresh token we had just spent for
// the grant's), ours is stored anew, being newer; if another process stored
// a token of its own meanwhile (say, a new login), both are valid, the store
// keeps theirs, and this source keeps using its own until its next refresh
// re-reads the store: not a failure.
func (s *TokenSource) save(runCtx context.Context, next *state, failures int, now time.Time) {
	if next.tr.saveErr != nil {
		t := next.edit()
		t.saveErr, t.saveFailures, t.saveRetryAt = nil, 0, time.Time{}
	}
	ctx, cancel := context.WithTimeout(runCtx, s.cfg.opts.timeout)
	defer cancel()
	err := s.saveToStore(ctx, next)
	if err == nil && s.cfg.opts.onRefresh != nil {
		err = s.callOnRefresh(ctx, next.tok)
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
	s.publish(&next)
	if next.tr.saveErr != nil {
		return fmt.Errorf("dropboxsign: account %q: %w", s.key, next.tr.saveErr)
	}
	return nil
}

func (s *TokenSource) saveToStore(ctx context.Context, next *state) error {
	if s.cfg.opts.store == nil || next.stored == next.tok {
		return nil
	}
	err := s.storeSave(ctx, next.stored, next.tok)
	if errors.Is(err, ErrConflict) {
		// Look at what is there instead: nothing or a refusal mark (store
		// ours), our own token (an earlier attempt did write), or another
		// writer's token (fine: see above).
		cur, refusal, lerr := s.load(ctx)
		switch {
		case lerr != nil:
			err = lerr
		case cur == nil || refusal != nil:
			err = s.storeSave(ctx, nil, next.tok)
		case sameToken(cur, next.tok) && cur.RefreshToken == next.tok.RefreshToken:
			err = nil
		default:
			next.stored = cur
			return nil
		}
	}
	if err != nil {
		return s.storeError("save", err, next.tok, next.stored)
	}
	next.stored = next.tok
	return nil
}
