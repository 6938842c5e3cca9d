package dropboxsign

import (
	"context"
	"errors"
	"time"

	"golang.org/x/oauth2"
)

// This file is the writing side of a TokenSource: runs, which refresh the
// token or retry its save. singleflight runs them one at a time, so they are
// the only writers of s.state but for Invalidate, which only marks a token.

// kick starts a background run unless one is under way. The flag keeps
// callers in the expiry window from queueing on singleflight (a lock and a
// channel each) while a slow refresh runs.
func (s *TokenSource) kick() {
	if s.kicked.Load() || !s.kicked.CompareAndSwap(false, true) {
		return
	}
	if s.opts.kicked != nil {
		s.opts.kicked()
	}
	go func() {
		defer s.kicked.Store(false)
		s.flight.Do(flightKey, s.run)
	}()
}

// run does the work the current state calls for and returns the state that
// follows. It re-reads the state, because another run may have just done the
// work, and re-checks after a save retry, because the token may have become
// due for a refresh meanwhile (a caller may be waiting for one).
func (s *TokenSource) run() (any, error) {
	if s.opts.afterRun != nil {
		defer s.opts.afterRun()
	}
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
	return st, nil
}

// publish makes next the current state. If the state moved on since next's
// run loaded it, Invalidate did it: its mark carries over when next still
// holds that token.
func (s *TokenSource) publish(next *state) *state {
	for {
		cur := s.state.Load()
		if cur.rejected && sameToken(cur.tok, next.tok) {
			next.rejected = true
		}
		if s.state.CompareAndSwap(cur, next) {
			return next
		}
	}
}

var errUnusableOnArrival = errors.New("dropboxsign: refresh: the new token was about to expire on arrival (expires_in too short, or the clocks disagree)")

// refresh makes one token request and returns the state that follows it.
func (s *TokenSource) refresh(st *state, now time.Time) *state {
	var tok *oauth2.Token
	var err error
	switch {
	case s.configErr != nil:
		err = s.configErr
	case st.tok == nil:
		err = errNoToken
	default:
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.timeout)
		tok, err = s.client.refresh(ctx, st.tok.RefreshToken)
		cancel()
	}
	if err != nil {
		next := st.failed(err, now)
		var te *tokenError
		if errors.As(err, &te) && te.refreshToken != "" && st.tok != nil && te.refreshToken != st.tok.RefreshToken {
			// A broken response that still carried a new refresh token: the
			// old one may be spent, so keep and persist the new one.
			kept := *st.tok
			kept.RefreshToken = te.refreshToken
			next.tok = &kept
			s.save(next, st.saveFailures, now)
		}
		return next
	}
	next := newState(tok, s.opts.window)
	s.save(next, st.saveFailures, now)
	if later := s.opts.now(); !next.usable(later) {
		// Keep it (its refresh token is the newest) but do not refresh
		// again at once: that would spend a refresh token per round trip.
		next.err, next.failures = errUnusableOnArrival, st.failures+1
		next.retryAt = later.Add(backoff(next.failures))
	}
	return next
}
