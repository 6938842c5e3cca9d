package dropboxsign

import (
	"context"
	"errors"
	"time"
)

// save persists next.tok with the WithOnRefresh function and records the
// outcome in next, which is not yet published. failures counts the failed
// saves before this one, for the backoff.
//
// With a store, the token is saved there first, replacing next.stored. On a
// conflict the store is read again: if it lost its data, the token is stored
// anew; if another process stored a token of its own meanwhile (say, a new
// login), both are valid, the store keeps theirs, and this source keeps using
// its own until its next refresh re-reads the store: not a failure.
func (s *TokenSource) save(next *state, failures int, now time.Time) {
	next.saveErr, next.saveFailures, next.saveRetryAt = nil, 0, time.Time{}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.timeout)
	defer cancel()
	err := s.saveToStore(ctx, next)
	if err == nil && s.opts.onRefresh != nil {
		err = s.callOnRefresh(ctx, next.tok)
	}
	if err != nil {
		r := newRedactor(s.clientSecret(), next.tok.AccessToken, next.tok.RefreshToken)
		next.saveErr = &SaveError{Err: err, text: "dropboxsign: new token not saved: " + r.textN(err.Error(), 4*maxTextRunes)}
		next.saveFailures = failures + 1
		next.saveRetryAt = now.Add(backoff(next.saveFailures))
	}
}

func (s *TokenSource) saveToStore(ctx context.Context, next *state) error {
	if s.opts.store == nil || next.stored == next.tok {
		return nil
	}
	err := s.storeSave(ctx, next.stored, next.tok)
	if errors.Is(err, ErrConflict) {
		// Look at what is there instead: nothing (the store lost its data
		// meanwhile: store ours), our own token (an earlier attempt did
		// write), or another writer's token (fine: see above).
		cur, lerr := s.storeLoad(ctx)
		switch {
		case errors.Is(lerr, ErrNotFound):
			err = s.storeSave(ctx, nil, next.tok)
		case lerr != nil:
			err = lerr
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
