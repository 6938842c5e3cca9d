package dropboxsign

import (
	"context"
	"errors"
	"hash/maphash"
	"runtime"
	"time"
	"weak"
)

// This file is how an Accounts learns of disconnections and logins made by
// other replicas: it watches its store, if the store is a Watcher, and has
// each held account the store reports read the store again at its next
// call.

// watch starts watching a.cfg.opts.store, if it is a Watcher, until
// Shutdown or until a is garbage: the watch holds a only weakly, so an
// Accounts dropped without Shutdown does not keep a goroutine for good.
func (a *Accounts) watch() {
	w, ok := a.cfg.opts.store.(Watcher)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	a.stopWatch, a.watchDone = cancel, done
	wa := weak.Make(a) // nothing the goroutine keeps may reference a (a.cfg does: pin)
	poll := a.cfg.opts.watchPoll
	report := func(c Change) {
		if a := wa.Value(); a != nil {
			a.changed(c)
		} else {
			cancel()
		}
	}
	go func() {
		defer close(done)
		defer cancel()
		for n := 1; ctx.Err() == nil; n++ {
			restarted := make(chan struct{})
			if n > 1 {
				// The new Watch reports only what changes once it runs:
				// whatever changed since the last one ended is unknown.
				// All now, and All again a poll later, by when the new
				// Watch runs and reports the rest itself.
				report(Change{All: true})
				go func() {
					select {
					case <-time.After(poll):
						report(Change{All: true})
					case <-restarted:
					}
				}()
			}
			// callOut for its recovery of a panic; with a context that does
			// not end, so that it waits for Watch to return (Shutdown waits
			// for this goroutine: no watch outlives it).
			_, err := callOut(context.Background(), "Store.Watch", func() (struct{}, error) {
				w.Watch(ctx, poll, report)
				return struct{}{}, nil
			}, nil)
			close(restarted)
			if ctx.Err() != nil {
				return
			}
			// Watch returned before its end (a panic, say): start again,
			// after a pause, so that a broken one does not spin.
			if err == nil {
				err = errors.New("dropboxsign: Store.Watch returned before its context ended")
			}
			report(Change{Err: err})
			select {
			case <-ctx.Done():
			case <-time.After(backoff(min(n, 10))):
			}
		}
	}()
	runtime.AddCleanup(a, func(cancel context.CancelFunc) { cancel() }, cancel)
}

// waitWatch waits, until ctx ends, for the watch, stopped, to return.
func (a *Accounts) waitWatch(ctx context.Context) error {
	if a.watchDone == nil {
		return nil
	}
	select {
	case <-a.watchDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// changed handles a change the store reported: the account it names, if
// held, or every held account, reads the store again before its token
// serves another call.
func (a *Accounts) changed(c Change) {
	switch {
	case c.Err != nil:
		a.cfg.emit(a.cfg.ctx, "", Event{Kind: EventWatchFailed, Err: c.Err})
	case c.All:
		for i := range a.shards {
			sh := &a.shards[i]
			sh.mu.RLock()
			for _, s := range sh.held {
				s.recheck()
			}
			for _, wp := range sh.gone {
				if s := wp.Value(); s != nil {
					s.recheck()
				}
			}
			sh.mu.RUnlock()
		}
	case c.Key != "":
		if s := a.lookup(c.Key); s != nil {
			s.recheck()
		}
	}
}

// lookup returns the account's source if this process has one (held, or
// let go but still referenced), else nil. It makes none.
func (a *Accounts) lookup(account string) *TokenSource {
	sh := &a.shards[maphash.String(a.seed, account)%accountShards]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if s := sh.held[account]; s != nil {
		return s
	}
	if wp, ok := sh.gone[account]; ok {
		return wp.Value()
	}
	return nil
}

// recheck has the source read the store again before its token serves
// another call, at once (a pause after a failed re-read is cut short; the
// token endpoint's backoff is not: see reread): the store says the
// account changed. A run under way carries the recheck over to the
// state it publishes (see publish). It always publishes a new state, even
// over one that awaits a recheck already: a run that started from that one
// may have read the store before this change, and only a new state tells
// it so.
func (s *TokenSource) recheck() {
	for {
		cur := s.state.Load()
		next := *cur
		next.recheck = true
		if !cur.tr.recheckAt.IsZero() {
			next.edit().recheckAt = time.Time{}
		}
		if s.state.CompareAndSwap(cur, &next) {
			return
		}
	}
}

// reread is the run the store's news calls for (state.recheck) when no
// refresh is due: one read of the store, and no token request, whatever
// the token endpoint's backoff (a rate limit must not be broken because an
// account changed). It takes what the store holds if it replaces the
// source's token (a mark, a new login's token), and keeps the source's
// token if the store holds it, an older one, or nothing; a newer stored
// token that is due replaces the source's at the next refresh, and the
// source's is not handed out meanwhile.
func (s *TokenSource) reread(runCtx context.Context, st *state, now time.Time) *state {
	ctx, cancel := context.WithTimeout(runCtx, s.cfg.opts.timeout)
	defer cancel()
	stored, mark, err := s.load(ctx)
	if err != nil {
		// Read again after a pause of its own; the token endpoint's
		// backoff, if any, stands as it is (a rate limit above all). The
		// store's error is the callers' only if nothing else is.
		next := *st
		t := next.edit()
		t.recheckAt = now.Add(backoff(1))
		if t.err == nil {
			t.err, t.retryAt = s.storeError("load", err, st.tok), t.recheckAt
		}
		s.emit(runCtx, Event{Kind: EventStoreFailed, Op: "load", Err: t.err, RetryAt: t.recheckAt})
		return &next
	}
	if mark != nil && !st.overrides(mark) {
		return st.refused(mark, st.tr.refusedRT, now, true)
	}
	if stored == nil && st.tok == nil {
		if lostSince(st, now) {
			return st.refused(st.tr.err, st.tr.refusedRT, now, true) // as refreshShared: the grace goes on
		}
		return st.refused(&notConnectedError{s.key}, "", now, true)
	}
	if next := s.adopt(runCtx, st, stored, now); next != nil {
		return next
	}
	if stored == nil || st.holdsNewer(stored) || st.tok != nil && !stored.Expiry.After(st.tok.Expiry) {
		// Ours still stands: the store holds it, or an older token, or
		// nothing (a store that lost its data is the refresh's business).
		// The store answered: an error of an earlier read is over.
		next := *st
		next.recheck = false
		if !st.tr.recheckAt.IsZero() || isStoreError(st.tr.err) {
			t := next.edit()
			t.recheckAt = time.Time{}
			if isStoreError(t.err) {
				t.err, t.retryAt = nil, time.Time{}
			}
		}
		return &next
	}
	// The store's token replaces ours (a new login's, say) but is due: it
	// serves callers meanwhile if it can (the backoff carries over), and
	// ours is not handed out any more; the next refresh, when the backoff
	// lets it, starts from the store's.
	if next := s.holdUsable(st, stored, now); next != st {
		return next
	}
	return &state{expires: true, tr: st.tr}
}

// isStoreError reports whether err is a failed Store call's.
func isStoreError(err error) bool {
	_, ok := err.(*storeError)
	return ok
}
