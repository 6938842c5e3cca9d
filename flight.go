package dropboxsign

import (
	"context"
	"errors"
	"time"

	"golang.org/x/oauth2"
)

// This file is how callers share runs. A run does the work the source's
// state calls for (a refresh, or a retry of a failed save) and publishes the
// state that follows. At most one run is under way per source, found through
// an atomic pointer, so concurrent callers share one token request.
//
// Callers that need a run's outcome wait on its done channel, one channel
// for all of them: a caller that leaves (its context ended) takes nothing
// with it and leaves nothing behind, however many come and go while a
// refresh is held up; a caller whose context has already ended does not
// join at all. singleflight's DoChan, used here before, keeps a channel per
// waiter until the call returns, and lets a caller join a call whose
// function has already returned, handing it an outcome older than the state
// it has seen; the run is forgotten here before its waiters wake, and a
// waiter that finds the outcome already stale starts the next run.

// A flight is one run.
type flight struct {
	done  chan struct{}   // closed once the run has published its outcome
	st    *state          // the outcome; written before done is closed
	ctx   context.Context // values only: of the caller that started it, for tracing
	from  *oauth2.Token   // the token the run started from: a login replaced it if the state's differs (see save)
	start *state          // the state the run started from: a disconnection cut it if the state is another cut one
}

// overtaken reports whether, since run f began, a login replaced the
// source's token or a disconnection cut the account: nothing of f may be
// published or handed to the WithOnRefresh function then.
func (f *flight) overtaken(cur *state) bool {
	return cur.tok != f.from || cur.cut && cur != f.start
}

// maxJoins bounds how many runs one caller waits for when each outcome is
// already stale by the time it wakes: a bound, not a schedule.
const maxJoins = 3

// launch returns the run under way, or starts one on a goroutine of its own
// (started is then true): the run serves every caller, so no caller's
// context may end it. Once an Accounts' Shutdown has begun it starts none
// and returns nil.
func (s *TokenSource) launch(ctx context.Context) (f *flight, started bool) {
	for {
		if f := s.flying.Load(); f != nil {
			return f, false
		}
		if !s.cfg.enter() {
			return nil, false
		}
		f := &flight{done: make(chan struct{}), ctx: context.WithoutCancel(ctx)}
		if s.flying.CompareAndSwap(nil, f) {
			go s.fly(f)
			return f, true
		}
		s.cfg.leave()
	}
}

func (s *TokenSource) fly(f *flight) {
	defer s.cfg.leave()
	f.st = s.run(f.ctx)
	// Forget the run before waking its waiters: from now on a caller starts
	// a new run rather than join this one and get its outcome again.
	s.flying.Store(nil)
	close(f.done)
	if s.cfg.opts.afterRun != nil {
		s.cfg.opts.afterRun()
	}
}

// kick starts a background run unless one is under way; the caller does not
// wait for it. While a slow refresh runs, callers in the window cost one
// atomic load here, no lock and no channel.
func (s *TokenSource) kick() {
	if s.flying.Load() != nil {
		return
	}
	if _, started := s.launch(s.cfg.ctx); started && s.cfg.opts.kicked != nil {
		s.cfg.opts.kicked()
	}
}

// wait is the slow path of a caller without a usable token: it waits for a
// run that starts from the state it saw, or a later one, and returns what
// that run's outcome gives it.
func (s *TokenSource) wait(ctx context.Context, st *state, now time.Time) (*oauth2.Token, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	for range maxJoins {
		if err := st.backingOff(now); err != nil {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		f, _ := s.launch(ctx)
		if f == nil {
			return nil, ErrShutdown
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		st, now = f.st, s.cfg.opts.now()
		switch {
		case st.usable(now) && st.tr.saveErr != nil:
			return st.tok, st.tr.saveErr
		case st.usable(now):
			return st.tok, nil
		case st.recheckDue(now):
			continue // the store's news came during the run: the re-read it calls for is next
		case st.tr.err != nil && now.Before(st.tr.retryAt):
			// The run this caller waited for failed: its error, as is
			// (an *oauth2.RetrieveError when the endpoint refused).
			return nil, st.tr.err
		}
		// The outcome is stale already (the next attempt is due, or a
		// rejection came in meanwhile): go again from it.
	}
	if st.tr.err != nil {
		return nil, st.tr.err
	}
	return nil, errNoUsableToken
}

// backingOff returns the error for a caller that finds no usable token while
// the source waits before its next attempt, or nil if an attempt is due. A
// grant that is gone is reported as it is; other failures say when the next
// attempt comes.
func (st *state) backingOff(now time.Time) error {
	t := st.tr
	if t.err == nil || !now.Before(t.retryAt) || st.recheckDue(now) {
		return nil
	}
	if Classify(t.err) == Reauthorize {
		return t.err // no retry brings it back: only the user can
	}
	return &backoffError{err: t.err, retry: t.retryAt.Sub(now)}
}

var errNoUsableToken = errors.New("dropboxsign: no usable token; try again")
