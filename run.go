package dropboxsign

import (
	"context"
	"errors"
	"time"

	"golang.org/x/oauth2"
)

// This file is the writing side of a TokenSource: runs, which refresh the
// token or retry its save. At most one runs at a time (see flight.go), so
// runs are the only writers of s.state but for Invalidate, which only marks
// a token.

// run does the work the current state calls for and returns the state that
// follows. It re-reads the state, because another run may have just done the
// work, and re-checks after a save retry, because the token may have become
// due for a refresh meanwhile (a caller may be waiting for one).
func (s *TokenSource) run() *state {
	st := s.state.Load()
	now := s.opts.now()
	if st.saveDue(now) && !st.refreshDue(now) {
		next := *st
		s.save(&next, st.saveFailures, now)
		st = s.publish(&next)
		now = s.opts.now()
	}
	if st.refreshDue(now) {
		st = s.publish(s.refresh(st, now))
	}
	return st
}

// publish makes next the current state. If the state moved on since next's
// run loaded it, Invalidate did it: its mark, and the backoff of a streak of
// refused tokens, carry over when next still holds that token.
func (s *TokenSource) publish(next *state) *state {
	for {
		cur := s.state.Load()
		if cur.rejected && sameToken(cur.tok, next.tok) && !next.rejected {
			next.rejected, next.rejections = true, cur.rejections
			if _, streak := cur.err.(*refusedTokensError); streak {
				next.err, next.retryAt = cur.err, cur.retryAt
			}
		}
		if s.state.CompareAndSwap(cur, next) {
			return next
		}
	}
}

var errUnusableOnArrival = errors.New("dropboxsign: refresh: the new token was about to expire on arrival (expires_in too short, or the clocks disagree)")

// refresh obtains the next token, from the token endpoint or, with a store,
// possibly from another process, and returns the state that follows.
func (s *TokenSource) refresh(st *state, now time.Time) *state {
	if s.opts.store != nil {
		return s.refreshShared(st, now)
	}
	return s.refreshFrom(st, st.tok, nil, now)
}

// refreshShared refreshes under the store's lock: another process may have
// refreshed already, and the stored refresh token is the one to present.
func (s *TokenSource) refreshShared(st *state, now time.Time) *state {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.timeout)
	defer cancel()
	load := func() (*oauth2.Token, error) {
		t, err := s.storeLoad(ctx)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return t, err
	}
	// A process that refreshed moments ago spares us the lock.
	stored, err := load()
	if err != nil {
		return st.failed(s.storeError("load", err, st.tok, stored), now, true)
	}
	if next := s.adopt(st, stored, now); next != nil {
		return next
	}
	// A stored token that is due but still serves callers better than ours
	// is taken now: if the lock or the refresh fails, callers keep it while
	// the refresh is retried (a replica that starts during a store outage,
	// say, must not refuse a token that is good for minutes).
	st = s.holdUsable(st, stored, now)
	unlock, err := s.storeLock(ctx)
	if err != nil {
		return st.failed(s.storeError("lock", err, st.tok, stored), now, true)
	}
	defer unlock()
	if stored, err = load(); err != nil {
		return st.failed(s.storeError("load", err, st.tok, stored), now, true)
	}
	if next := s.adopt(st, stored, now); next != nil {
		return next
	}
	if st.holdsNewer(stored) || (st.seed && stored == nil) {
		// Our token replaced the stored one but its save failed, so the
		// stored refresh token is spent; or ours was given to seed an empty
		// store. Store ours first, then go on from it.
		if err := s.storeSave(ctx, stored, st.tok); err != nil {
			return st.failed(s.storeError("save", err, st.tok, stored), now, true)
		}
		saved := *st
		saved.stored, saved.seed = st.tok, false
		saved.saveErr, saved.saveFailures, saved.saveRetryAt = nil, 0, time.Time{}
		if !saved.needsRefresh(now) {
			return &saved
		}
		st, stored = &saved, st.tok
	}
	base := stored
	if base == nil {
		base = st.tok // nothing stored (yet, or any more): our token seeds the store
	}
	return s.refreshFrom(st, base, stored, now)
}

// adopt returns the state for a stored token that another process wrote and
// that needs no refresh yet, or nil.
func (s *TokenSource) adopt(st *state, stored *oauth2.Token, now time.Time) *state {
	if stored == nil || (st.rejected && sameToken(stored, st.tok)) || st.holdsNewer(stored) {
		return nil
	}
	next := newState(stored, s.opts.window)
	if !next.usable(now) || next.needsRefresh(now) {
		return nil
	}
	next.stored = stored
	return next
}

// holdUsable returns st with stored in hand, if stored serves callers now
// and longer than st's token does; else st.
func (s *TokenSource) holdUsable(st *state, stored *oauth2.Token, now time.Time) *state {
	if stored == nil || sameToken(stored, st.tok) || st.holdsNewer(stored) {
		return st
	}
	next := newState(stored, s.opts.window)
	if !next.usable(now) || st.usable(now) && (!st.expires || next.expires && !next.usableUntil.After(st.usableUntil)) {
		return st
	}
	next.stored = stored
	next.err, next.failures, next.retryAt = st.err, st.failures, st.retryAt
	return next
}

// refreshFrom makes one token request with base's refresh token and returns
// the state that follows. With a store, prev is what the store held when
// read under the lock (nil: nothing), and the new token replaces exactly that.
func (s *TokenSource) refreshFrom(st *state, base, prev *oauth2.Token, now time.Time) *state {
	var tok *oauth2.Token
	var err error
	switch {
	case s.configErr != nil:
		err = s.configErr
	case base == nil:
		err = errNoToken
	default:
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.timeout)
		tok, err = s.client.refresh(ctx, base.RefreshToken, base.AccessToken, st.tokenOrEmpty().AccessToken)
		cancel()
	}
	if err != nil {
		next := st.failed(err, now, s.opts.store != nil)
		var te *responseError
		if errors.As(err, &te) && te.refreshToken != "" && base != nil && te.refreshToken != base.RefreshToken {
			// A broken response that still carried a new refresh token: the
			// old one may be spent, so keep and persist the new one.
			kept := *base
			kept.RefreshToken = te.refreshToken
			next.tok, next.stored = &kept, prev
			s.save(next, st.saveFailures, now)
		}
		return next
	}
	next := newState(tok, s.opts.window)
	next.stored = prev
	next.arrived = s.opts.now()
	if st.rejected {
		next.rejections = st.rejections // a streak goes on while replacements are refused at once
	}
	s.save(next, st.saveFailures, now)
	if later := s.opts.now(); !next.usable(later) {
		// Keep it (its refresh token is the newest) but do not refresh
		// again at once: that would spend a refresh token per round trip.
		next.err, next.failures = errUnusableOnArrival, st.failures+1
		next.retryAt = later.Add(backoff(next.failures))
	}
	return next
}
