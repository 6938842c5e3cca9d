package dropboxsign

import (
	"context"
	"errors"
	"net/http"
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
func (s *TokenSource) run(ctx context.Context) *state {
	st := s.state.Load()
	if f := s.flying.Load(); f != nil {
		f.from, f.start = st.tok, st // this goroutine's run: see onRefreshUnlessOvertaken
	}
	now := s.cfg.opts.now()
	if st.saveDue(now) && !st.refreshDue(now) {
		next := *st
		s.save(ctx, &next, st.tr.saveFailures, now)
		st = s.publish(st, &next)
		now = s.cfg.opts.now()
	}
	if st.refreshDue(now) {
		prev := st
		st = s.publish(prev, s.refresh(ctx, st, now))
		s.reportRefusal(ctx, prev, st)
	}
	return st
}

// reportRefusal emits EventRefused when a run has just learnt that the
// account's grant is gone (EventDisconnected when the app disconnected
// it): once per refusal, not at every re-read.
func (s *TokenSource) reportRefusal(ctx context.Context, prev, next *state) {
	var was, is *RefusedError
	if errors.As(next.tr.err, &is) && !errors.As(prev.tr.err, &was) {
		s.emit(ctx, Event{Kind: EventRefused, Err: next.tr.err, Failures: next.tr.failures, RetryAt: next.tr.retryAt})
	}
	if errors.Is(next.tr.err, ErrDisconnected) && !errors.Is(prev.tr.err, ErrDisconnected) {
		s.emit(ctx, Event{Kind: EventDisconnected, Err: next.tr.err})
	}
}

// publish makes next, which a run made from the state from, the current
// state. If the state moved on meanwhile, Invalidate, a login, a
// disconnection or a change the store reported did it. A login's token
// wins (the run worked from the grant the login replaced), and so does a
// disconnection. Invalidate's mark, and the backoff of a streak of refused
// tokens, carry over when next still holds the token it marked; a change
// the store reported carries over whatever the run did (the run may have
// read the store before the change).
func (s *TokenSource) publish(from, next *state) *state {
	if next.tr != healthy && next.tr.clear() {
		next.tr = healthy // the hot path again, after a save that succeeded at last
	}
	for {
		cur := s.state.Load()
		if cur != from && (cur.tok != from.tok || cur.cut) {
			return cur // only a login or a disconnection replaces the token outside a run
		}
		if cur != from && cur.recheck && !next.recheck {
			// At once, as recheck does: the re-read is due apart from any
			// pause the run's outcome set (a refused or disconnected
			// account's, say), which would hold off the news.
			n := *next
			n.recheck = true
			if !n.tr.recheckAt.IsZero() {
				n.edit().recheckAt = time.Time{}
			}
			next = &n
		}
		if cur.rejected && sameToken(cur.tok, next.tok) && !next.rejected {
			next.rejected = true
			t := next.edit()
			t.rejections = cur.tr.rejections
			if _, streak := cur.tr.err.(*refusedTokensError); streak {
				t.err, t.retryAt = cur.tr.err, cur.tr.retryAt
			}
		}
		if s.state.CompareAndSwap(cur, next) {
			if next.tr.saveErr != nil {
				if s.cfg.pin != nil {
					s.cfg.pin(s)
				}
				s.cfg.owe(s)
			}
			return next
		}
	}
}

var errUnusableOnArrival = errors.New("dropboxsign: refresh: the new token was about to expire on arrival (expires_in too short, or the clocks disagree)")

// refresh obtains the next token, from the token endpoint or, with a store,
// possibly from another process, and returns the state that follows.
func (s *TokenSource) refresh(ctx context.Context, st *state, now time.Time) *state {
	if s.cfg.opts.store != nil {
		return s.refreshShared(ctx, st, now)
	}
	if st.tok == nil && st.tr.refusedRT != "" {
		return st.refused(st.tr.err, st.tr.refusedRT, now, false)
	}
	return s.refreshFrom(ctx, st, st.tok, nil, now)
}

// refreshShared refreshes under the store's lock: another process may have
// refreshed already, and the stored refresh token is the one to present.
func (s *TokenSource) refreshShared(runCtx context.Context, st *state, now time.Time) *state {
	if st.recheckDue(now) && !st.tokenRunDue(now) {
		return s.reread(runCtx, st, now)
	}
	ctx, cancel := context.WithTimeout(runCtx, s.cfg.opts.timeout)
	defer cancel()
	failed := func(op string, err error, toks ...*oauth2.Token) *state {
		next := st.failed(s.storeError(op, err, toks...), now, true)
		s.emit(runCtx, Event{Kind: EventStoreFailed, Op: op, Err: next.tr.err, RetryAt: next.tr.retryAt, Failures: next.tr.failures, Serving: next.usable(now)})
		return next
	}
	// A process that refreshed moments ago spares us the lock.
	stored, refusal, err := s.load(ctx)
	if err != nil {
		return failed("load", err, st.tok)
	}
	if refusal != nil && !st.overrides(refusal) {
		return st.refused(refusal, st.tr.refusedRT, now, true)
	}
	if next := s.adopt(runCtx, st, stored, now); next != nil {
		return next
	}
	if stored == nil && refusal == nil && st.tok == nil {
		// Nothing here, nothing there: no lock to take, no token to get.
		if lostSince(st, now) {
			return st.refused(st.tr.err, st.tr.refusedRT, now, true)
		}
		return st.refused(&notConnectedError{s.key}, "", now, true)
	}
	// A stored token that is due but still serves callers better than ours
	// is taken now: if the lock or the refresh fails, callers keep it while
	// the refresh is retried (a replica that starts during a store outage,
	// say, must not refuse a token that is good for minutes).
	st = s.holdUsable(st, stored, now)
	unlock, err := s.storeLock(ctx)
	if err != nil {
		return failed("lock", err, st.tok, stored)
	}
	defer unlock()
	var mark int64
	if stored, mark, refusal, err = s.loadMarked(ctx); err != nil {
		return failed("load", err, st.tok, stored)
	}
	if next := s.adopt(runCtx, st, stored, now); next != nil {
		return next
	}
	switch {
	case refusal != nil && !st.overrides(refusal):
		return st.refused(refusal, st.tr.refusedRT, now, true)
	case stored == nil && refusal == nil && !st.tr.replace && !st.seed && !mayRestore(st.tok, now):
		// Nothing stored, and our token, unsaved or not, is too old to be
		// stored back (see RestoreHorizon): the account may have been
		// disconnected and forgotten meanwhile.
		return st.refused(&notConnectedError{s.key}, "", now, true)
	case st.holdsNewer(stored):
		// Our token replaced the stored one (or the one a refusal mark
		// replaced) but its save failed, so the stored refresh token is
		// spent. Store ours first, then go on from it.
	case st.seed && stored == nil:
		// Ours was given to seed an empty store: store it first.
	case stored == nil && st.tok == nil && lostSince(st, now):
		// This replica's token was refused after the store lost its data:
		// the up-to-date replica may not have stored its token yet. Wait
		// for it, for the grace, before taking the grant for gone.
		return st.refused(st.tr.err, st.tr.refusedRT, now, true)
	case stored == nil:
		// Nothing stored any more (the store lost its data): ours seeds it.
		return s.refreshFrom(runCtx, st, st.tok, nil, now)
	default:
		if mark != 0 && mark != st.tr.ownMark {
			// Another replica presented this refresh token and has not
			// stored what it got: presenting it again would be refused, and
			// the refusal is not the account's. Keep serving, and read again.
			if next := awaitSuccessor(st, mark, now); next != nil {
				return next
			}
		}
		return s.spend(runCtx, st, stored, now)
	}
	var disconnected *DisconnectedError
	if err := s.storeOver(ctx, st, stored); errors.Is(err, errOvertaken) {
		return st // a later login replaced this token: publish drops the run's outcome
	} else if errors.As(err, &disconnected) {
		return st.refused(disconnected, st.tr.refusedRT, now, true)
	} else if err != nil {
		return failed("save", err, st.tok, stored)
	}
	if st.tr.saveErr != nil {
		s.emit(runCtx, Event{Kind: EventSaved, Expiry: st.tok.Expiry})
	}
	saved := *st
	saved.stored, saved.seed, saved.recheck = st.tok, false, false
	t := saved.edit()
	t.saveErr, t.saveFailures, t.saveRetryAt, t.replace = nil, 0, time.Time{}, false
	if !saved.needsRefresh(now) {
		return &saved
	}
	return s.spend(runCtx, &saved, st.tok, now)
}

// spend refreshes with stored's refresh token, which the store holds, after
// marking it as being spent (see spending.go). If the request brings no new
// token, nobody holds a successor: the mark is taken off again.
func (s *TokenSource) spend(runCtx context.Context, st *state, stored *oauth2.Token, now time.Time) *state {
	if s.cfg.configErr != nil || stored.RefreshToken == "" || stored.RefreshToken == st.tr.refusedRT {
		return s.refreshFrom(runCtx, st, stored, stored, now) // no request to make: nothing to mark
	}
	ctx, cancel := context.WithTimeout(runCtx, s.cfg.opts.timeout)
	defer cancel()
	mark, err := s.markSpending(ctx, stored, now)
	if errors.Is(err, ErrConflict) {
		// Another writer moved the store on since it was read (a replica
		// whose lease lapsed, a login): its token, if fresh, is ours.
		if cur, gone, lerr := s.load(ctx); lerr == nil {
			if _, disconnected := gone.(*DisconnectedError); disconnected {
				return st.refused(gone, st.tr.refusedRT, now, true)
			}
			if next := s.adopt(runCtx, st, cur, now); next != nil {
				return next
			}
		}
	}
	if err != nil {
		// Unmarked, the refresh token is not presented: if the new token
		// could not be stored either, the others would take the refusal
		// they then meet for the account's. A store that cannot be
		// written stops refreshes, as one that cannot be read does.
		next := st.failed(s.storeError("save", err, st.tok, stored), now, true)
		s.emit(runCtx, Event{Kind: EventStoreFailed, Op: "save", Err: next.tr.err, RetryAt: next.tr.retryAt, Failures: next.tr.failures, Serving: next.usable(now)})
		return next
	}
	next := s.refreshFrom(runCtx, st, stored, stored, now)
	if next.tok == st.tok && next.tr.err != nil && Classify(next.tr.err) != Reauthorize {
		// The request brought no token: nobody holds a successor.
		ctx, cancel := context.WithTimeout(runCtx, s.cfg.opts.timeout)
		defer cancel()
		if s.storeSave(ctx, stored, slim(stored)) != nil {
			next.edit().ownMark = mark // left behind: the others wait out its grace; this source need not
		}
	}
	return next
}

// refusedTo reports whether stored's refresh token is one Dropbox Sign
// refused to this source: a token that cannot be refreshed is no token to
// adopt (its refusal is to be recorded, or already is).
func refusedTo(st *state, stored *oauth2.Token) bool {
	return st.tr.refusedRT != "" && stored.RefreshToken == st.tr.refusedRT
}

// lostSince reports whether st's refusal is one the store's loss of its
// data may explain, met less than the grace ago.
func lostSince(st *state, now time.Time) bool {
	lost, ok := st.tr.err.(*lostRefusalError)
	return ok && now.Before(lost.since.Add(successorGrace))
}

// load reads the store: its token (nil if it holds none), or the mark it
// holds: a *RefusedError or a *DisconnectedError.
func (s *TokenSource) load(ctx context.Context) (*oauth2.Token, storeMark, error) {
	t, _, refusal, err := s.loadMarked(ctx)
	return t, refusal, err
}

// loadMarked is load, and returns the mark of a replica spending the
// stored token's refresh token, if there is one (see spending.go).
func (s *TokenSource) loadMarked(ctx context.Context) (*oauth2.Token, int64, storeMark, error) {
	t, err := s.storeLoad(ctx)
	s.notePlaintext(ctx, t) // before anything copies t: see plaintext.go
	var refusal *RefusedError
	var disconnected *DisconnectedError
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, 0, nil, nil
	case errors.As(err, &disconnected):
		return nil, 0, disconnected, nil
	case errors.As(err, &refusal):
		return nil, 0, refusal, nil
	case err == nil && t == nil:
		return nil, 0, nil, errors.New("Store.Load returned neither a token nor an error")
	case err != nil:
		return nil, 0, nil, err
	}
	t, mark := readSpendMark(t)
	return t, mark, nil, nil
}

// adopt returns the state for a stored token that another process wrote and
// that needs no refresh yet, or nil.
func (s *TokenSource) adopt(ctx context.Context, st *state, stored *oauth2.Token, now time.Time) *state {
	if stored == nil || (st.rejected && sameToken(stored, st.tok)) || st.holdsNewer(stored) || refusedTo(st, stored) {
		return nil
	}
	next := newState(slim(stored), s.cfg.opts.window)
	if !next.usable(now) || next.needsRefresh(now) {
		return nil
	}
	next.stored = next.tok // what the store holds: Save compares access and refresh tokens, which slim keeps
	s.emit(ctx, Event{Kind: EventAdopted, Expiry: stored.Expiry})
	return next
}

// holdUsable returns st with stored in hand, if stored serves callers now
// and longer than st's token does; else st.
func (s *TokenSource) holdUsable(st *state, stored *oauth2.Token, now time.Time) *state {
	if stored == nil || sameToken(stored, st.tok) || st.holdsNewer(stored) || refusedTo(st, stored) {
		return st
	}
	next := newState(slim(stored), s.cfg.opts.window)
	if !next.usable(now) || st.usable(now) && (!st.expires || next.expires && !next.usableUntil.After(st.usableUntil)) {
		return st
	}
	next.stored = next.tok // as in adopt: one copy of the token, not two
	t := next.edit()
	t.err, t.failures, t.retryAt, t.refusedRT = st.tr.err, st.tr.failures, st.tr.retryAt, st.tr.refusedRT
	t.mark, t.markSeen, t.ownMark = st.tr.mark, st.tr.markSeen, st.tr.ownMark
	return next
}

// refreshFrom makes one token request with base's refresh token and returns
// the state that follows. With a store, prev is what the store held when
// read under the lock (nil: nothing), and the new token replaces exactly that.
func (s *TokenSource) refreshFrom(runCtx context.Context, st *state, base, prev *oauth2.Token, now time.Time) *state {
	shared := s.cfg.opts.store != nil
	var tok *oauth2.Token
	var err error
	var event *Event
	reqCtx := runCtx
	switch {
	case s.cfg.configErr != nil:
		err = s.cfg.configErr
	case base == nil:
		err = errNoToken
	case base.RefreshToken != "" && base.RefreshToken == st.tr.refusedRT:
		// Refused before: presenting it again would only be refused again.
		return s.confirmRefusal(runCtx, st, st.tr.err, base, prev, now)
	default:
		reqCtx = s.cfg.requestStarted(runCtx, "refresh", s.key)
		ctx, cancel := context.WithTimeout(reqCtx, s.cfg.opts.timeout)
		started := s.cfg.opts.now()
		var requested bool
		tok, requested, err = s.cfg.client.refreshOnce(ctx, base.RefreshToken, base.AccessToken, st.tokenOrEmpty().AccessToken)
		cancel()
		if requested || err != nil { // a failure shared with another source is reported by each
			e := requestEvent("refresh", started, s.cfg.opts.now(), tok, err)
			event = &e
		} else {
			// Another source of this process spent the same grant: its
			// token, without a request of ours (see grants.go).
			event = &Event{Kind: EventAdopted, Expiry: tok.Expiry}
		}
	}
	if err != nil {
		if shared && base != nil && Classify(err) == Reauthorize {
			next := s.confirmRefusal(runCtx, st, err, base, prev, now)
			s.report(reqCtx, event, next)
			return next
		}
		next := st.failed(err, now, shared)
		defer s.report(reqCtx, event, next)
		var re *responseError
		if errors.As(err, &re) && re.refreshToken != "" && base != nil && re.refreshToken != base.RefreshToken {
			// A broken response that still carried a new refresh token: the
			// old one may be spent, so keep and persist the new one.
			kept := slim(base)
			kept.RefreshToken = re.refreshToken
			next.tok, next.stored = kept, prev
			s.save(runCtx, next, st.tr.saveFailures, now)
		}
		return next
	}
	next := newState(slim(tok), s.cfg.opts.window)
	next.stored = prev
	defer s.report(reqCtx, event, next)
	if st.rejected {
		// A streak of refused tokens goes on while replacements are
		// refused at once (see Invalidate).
		t := next.edit()
		t.rejections, t.arrived = st.tr.rejections, s.cfg.opts.now()
	}
	s.save(runCtx, next, st.tr.saveFailures, now)
	if next.tok == nil {
		return next // the save met a disconnection: the token is dropped
	}
	if later := s.cfg.opts.now(); !next.usable(later) {
		// Keep it (its refresh token is the newest) but do not refresh
		// again at once: that would spend a refresh token per round trip.
		t := next.edit()
		t.err, t.failures = errUnusableOnArrival, st.tr.failures+1
		t.retryAt = later.Add(backoff(t.failures))
	}
	return next
}

// confirmRefusal handles, for a source with a store, Dropbox Sign's refusal
// of base's grant. If base is the token the store still holds, the refusal
// is the account's: the store is marked (compare-and-swap, so that a token
// another replica stored meanwhile is never taken for refused), and every
// replica learns it at its next read. If the store holds nothing but held
// base once, it lost its data, and this replica's token may be one another
// replica has since spent: that is no proof that the grant is gone, so the
// refusal is reported as temporary while the store is read again, where the
// replica that is up to date will put its token. Either way the refused
// refresh token is never presented again.
func (s *TokenSource) confirmRefusal(runCtx context.Context, st *state, cause error, base, prev *oauth2.Token, now time.Time) *state {
	refusal := &RefusedError{Key: s.key, Since: now, Err: cause}
	if prev == nil && st.stored != nil {
		next := st.refused(&lostRefusalError{err: cause, since: now}, base.RefreshToken, now, true)
		return next
	}
	if prev == nil || !sameToken(prev, base) || prev.RefreshToken != base.RefreshToken {
		return st.refused(refusal, base.RefreshToken, now, true)
	}
	ctx, cancel := context.WithTimeout(runCtx, s.cfg.opts.timeout)
	defer cancel()
	err := s.storeMarkRefused(ctx, prev)
	if errors.Is(err, ErrConflict) {
		// The store moved on: a replica stored a newer token (the refusal
		// was of a spent one, not of the grant), or marked it first.
		stored, marked, lerr := s.load(ctx)
		switch {
		case lerr != nil:
			err = lerr
		case marked != nil:
			return st.refused(marked, base.RefreshToken, now, true)
		case stored != nil:
			if next := s.adopt(runCtx, st, stored, now); next != nil {
				return next
			}
			next := st.failed(cause, now, true)
			t := next.edit()
			t.retryAt, t.refusedRT = now, base.RefreshToken // go on from the newer token at once
			return next
		default:
			return st.refused(refusal, base.RefreshToken, now, true)
		}
	}
	if err != nil {
		// Not recorded (the store failed): until it is, this replica cannot
		// tell the account's refusal from one another replica caused, so
		// callers are told to try again, not to reconnect. The next attempt
		// finds the refused token still stored and records it, without
		// presenting it again.
		next := st.failed(&unrecordedRefusalError{cause: cause, err: s.storeError("mark", err, base)}, now, true)
		next.edit().refusedRT = base.RefreshToken
		return next
	}
	return st.refused(refusal, base.RefreshToken, now, true)
}

// requestEvent describes a token request that ran from started to ended and
// brought tok, or failed with err. Its Time is when the request ended, not
// when the event is emitted: that comes after the save or the refusal mark
// that follows, and a tracing span ends at Time.
func requestEvent(op string, started, ended time.Time, tok *oauth2.Token, err error) Event {
	e := Event{Kind: EventTokenRequest, Op: op, Time: ended, Duration: ended.Sub(started), Err: err, RateLimit: RateLimit{Limit: -1, Remaining: -1}}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		e.Status, e.ErrorName = re.Response.StatusCode, re.ErrorCode
		if rl, ok := ParseRateLimit(re.Response.Header); ok {
			e.RateLimit = rl
		}
	}
	if tok != nil {
		e.Status, e.Expiry = http.StatusOK, tok.Expiry
		if rl, ok := TokenRateLimit(tok); ok {
			e.RateLimit = rl
		}
	}
	return e
}

// report emits a token request's event, if one was made, with the source's
// decision: what the state that follows says.
func (s *TokenSource) report(ctx context.Context, e *Event, next *state) {
	if e == nil {
		return
	}
	if e.Err != nil {
		e.RetryAt, e.Failures = next.tr.retryAt, next.tr.failures
	}
	s.emit(ctx, *e)
}
