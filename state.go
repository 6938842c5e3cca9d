package dropboxsign

import (
	"math/rand/v2"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// state is one immutable snapshot of a TokenSource. The source replaces it
// whole with an atomic store; nothing modifies a state once published.
type state struct {
	tok         *oauth2.Token // nil when the source has none
	stored      *oauth2.Token // with a store: what it holds as far as we know; Save's prev
	refreshAt   time.Time     // start of the refresh-ahead window
	usableUntil time.Time     // after this, callers wait for a new token
	expires     bool          // false: tok has no Expiry and is never refreshed ahead
	rejected    bool          // the API refused tok: never hand it out again
	seed        bool          // tok was given, with a store: not handed out before the store has spoken
	recheck     bool          // the store says the account changed: tok is not handed out before it is read again
	cut         bool          // set by Accounts.Disconnect: no run that began before may replace this state
	tr          *trouble      // never nil; the shared healthy one when all is well
}

// trouble is what a state knows of what went wrong: refresh and save
// failures, their backoff, refused tokens. It lives apart from the state so
// that the many healthy states share one (healthy) and stay small: a state
// that changes it takes a copy of its own (see edit).
type trouble struct {
	err       error     // why the last refresh failed; nil after a success
	failures  int       // consecutive refresh failures
	retryAt   time.Time // no refresh attempt before this
	refusedRT string    // a refresh token Dropbox Sign refused: never presented again

	rejections int       // tokens the API refused in a row, this one included if rejected
	arrived    time.Time // when a refresh that a rejection called for brought tok

	saveErr      *SaveError // non-nil while tok is not persisted
	saveFailures int
	saveRetryAt  time.Time
	// replace: tok, not yet persisted, is a new login's, which replaces
	// whatever the store holds (the previous grant's tokens, which other
	// replicas may go on refreshing meanwhile), not only what it held when
	// read.
	replace bool
	// loggedIn: when the login whose token awaits its save (replace)
	// happened, by this process's clock: a disconnection recorded after
	// it wins over it (see writeLogin).
	loggedIn time.Time

	// A mark of the stored token as being spent (see spending.go): the
	// one this source waits on, since when by its clock, and one of its
	// own it failed to take off, which it ignores.
	mark     int64
	markSeen time.Time
	ownMark  int64

	// recheckAt: no re-read of the store that the store's news called for
	// (state.recheck) before this; set after such a read failed.
	recheckAt time.Time
}

// clear reports whether t records nothing: a state with such a trouble may
// share the healthy one, and so take the hot path again.
func (t *trouble) clear() bool {
	return t.err == nil && t.failures == 0 && t.retryAt.IsZero() && t.refusedRT == "" &&
		t.rejections == 0 && t.arrived.IsZero() && t.saveErr == nil && t.saveFailures == 0 && t.saveRetryAt.IsZero() && !t.replace && t.loggedIn.IsZero() &&
		t.mark == 0 && t.markSeen.IsZero() && t.ownMark == 0 && t.recheckAt.IsZero()
}

var healthy = &trouble{}

// edit gives st, a private copy not yet published, a trouble of its own and
// returns it for writing.
func (st *state) edit() *trouble {
	t := *st.tr
	st.tr = &t
	return &t
}

// unusableMargin is the most a token's last moments are shunned: near its
// expiry a token may die in flight, or on a server whose clock runs ahead.
const unusableMargin = 10 * time.Second

// newState schedules tok: see schedule.
func newState(tok *oauth2.Token, window time.Duration) *state {
	st := &state{tok: tok, tr: healthy}
	st.expires, st.refreshAt, st.usableUntil = schedule(tok, window)
	return st
}

// schedule says when tok enters its refresh-ahead window (window before
// expiry, at most half its lifetime) and when it stops being handed out
// (min(10 s, lifetime/10) before expiry). A token without an access token
// that can be sent (given, or read from a store, as it may have been
// tampered with) is due at once; one without an expiry never is (expires is
// false).
func schedule(tok *oauth2.Token, window time.Duration) (expires bool, refreshAt, usableUntil time.Time) {
	if tok == nil || credentialProblem(tok.AccessToken) != "" || !strings.EqualFold(tok.Type(), "Bearer") {
		return true, time.Time{}, time.Time{} // zero times: refresh now, nothing usable meanwhile
	}
	if tok.Expiry.IsZero() {
		return false, time.Time{}, time.Time{}
	}
	margin := unusableMargin
	if tok.ExpiresIn > 0 && tok.ExpiresIn <= maxExpiresIn {
		life := time.Duration(tok.ExpiresIn) * time.Second
		window = min(window, life/2)
		margin = min(margin, life/10)
	}
	usableUntil = tok.Expiry.Add(-margin)
	refreshAt = tok.Expiry.Add(-window)
	if refreshAt.After(usableUntil) {
		refreshAt = usableUntil
	}
	return true, refreshAt, usableUntil
}

// holdsNewer reports, for a source with a store, whether st.tok is newer than
// stored: it replaced exactly what the store still holds (or the store holds
// nothing), but saving it failed; or it is a new login's, not yet stored,
// which replaces whatever the store holds. Then the stored refresh token may
// be spent, or belong to a grant the user has replaced, and must neither be
// adopted nor presented.
func (st *state) holdsNewer(stored *oauth2.Token) bool {
	return st.tr.saveErr != nil && st.tok != nil && st.stored != st.tok &&
		(st.tr.replace || stored == nil || st.stored != nil && sameToken(stored, st.stored) && stored.RefreshToken == st.stored.RefreshToken)
}

// tokenOrEmpty returns tok, or an empty token when there is none.
func (st *state) tokenOrEmpty() *oauth2.Token {
	if st.tok == nil {
		return &oauth2.Token{}
	}
	return st.tok
}

// fresh reports whether tok can be handed out with nothing else to do: the
// hot path's whole test.
func (st *state) fresh(now time.Time) bool {
	return st.tr == healthy && !st.rejected && !st.seed && !st.recheck && (!st.expires || now.Before(st.refreshAt))
}

func (st *state) usable(now time.Time) bool {
	return st.tok != nil && st.tok.AccessToken != "" && !st.rejected && !st.seed && !st.recheck && (!st.expires || now.Before(st.usableUntil))
}

func (st *state) needsRefresh(now time.Time) bool {
	return st.rejected || (st.expires && !now.Before(st.refreshAt))
}

// refreshDue and saveDue report whether a background run would do anything.
// A re-read of the store that its news called for (recheck) is due apart
// from the token endpoint's backoff: it makes no token request (see
// reread).
func (st *state) refreshDue(now time.Time) bool {
	return st.tokenRunDue(now) || st.recheckDue(now)
}

// tokenRunDue reports whether a refresh (or a seed's store) is due.
func (st *state) tokenRunDue(now time.Time) bool {
	return (st.needsRefresh(now) || st.seed) && !now.Before(st.tr.retryAt)
}

// recheckDue reports whether a re-read of the store is due.
func (st *state) recheckDue(now time.Time) bool {
	return st.recheck && !now.Before(st.tr.recheckAt)
}

func (st *state) saveDue(now time.Time) bool {
	return st.tr.saveErr != nil && !now.Before(st.tr.saveRetryAt)
}

// failed returns the state after a failed refresh attempt: the token is kept
// and the next attempt waits for the backoff. shared says the source has a
// store.
func (st *state) failed(err error, now time.Time, shared bool) *state {
	next := *st
	t := next.edit()
	t.err = err
	t.failures++
	t.retryAt = retryAt(err, t.failures, now, shared)
	if st.usable(now) && Classify(err) == Temporary && t.retryAt.After(st.usableUntil) {
		// Failures met while the token still served callers must not keep
		// them waiting once it stops serving: try again then.
		t.retryAt = st.usableUntil
	}
	return &next
}

// refused returns the state after Dropbox Sign refused the grant for good:
// no token, the refusal as the error, and the refused refresh token
// remembered so that it is never presented again. With a store the source
// reads it again after refusalRecheck, for a new login; without one, it
// tries again after the longest backoff.
func (st *state) refused(err error, refreshToken string, now time.Time, shared bool) *state {
	next := &state{expires: true, tr: st.tr}
	t := next.edit()
	t.err, t.failures, t.refusedRT = err, st.tr.failures+1, refreshToken
	t.retryAt = now.Add(maxBackoff)
	if shared {
		t.retryAt = now.Add(refusalRecheck)
	}
	t.saveErr, t.saveFailures, t.saveRetryAt, t.replace, t.loggedIn = nil, 0, time.Time{}, false, time.Time{}
	return next
}

// refusalRecheck is how often a source with a store whose grant is gone
// reads the store again (never the token endpoint), so that a new login
// saved by any replica serves within about this long.
const refusalRecheck = time.Second

// maxRateLimitWait bounds how long a rate-limit answer can stop refreshes: a
// reset time further out than this is taken for a broken header.
const maxRateLimitWait = time.Hour

// retryAt is when the next refresh may be tried after the n-th consecutive
// failure, err. Errors that retrying cannot fix wait the longest backoff at
// once (a source with a store reads the store again sooner: see refused); a
// rate-limit answer is never retried before it says.
func retryAt(err error, n int, now time.Time, shared bool) time.Time {
	switch Classify(err) {
	case Reauthorize:
		if shared {
			return now.Add(refusalRecheck)
		}
		return now.Add(maxBackoff)
	case Misconfigured:
		if _, fromStore := err.(*storeError); fromStore {
			// What an operator fixes in the store (a plain token refused,
			// say) may be fixed any moment, or replaced by a login.
			return now.Add(backoff(n))
		}
		return now.Add(maxBackoff)
	case RateLimited:
		at := now.Add(backoff(n))
		if notBefore, ok := rateLimitedUntil(err, now); ok && notBefore.After(at) {
			at = notBefore
			if limit := now.Add(maxRateLimitWait); at.After(limit) {
				at = limit
			}
		}
		return at
	default:
		return now.Add(backoff(n))
	}
}

// backoff is the pause after the n-th consecutive failure: 1 s, doubling,
// stretched by up to half at random so that sources that failed together do
// not retry together, and never above 5 min. It is never below 1 s.
func backoff(n int) time.Duration {
	base := maxBackoff * 2 / 3 // the jitter keeps the ceiling and a spread of 100 s
	if n < 10 {
		base = min(firstBackoff<<(n-1), base)
	}
	return base + time.Duration(rand.Float64()*float64(base/2))
}

const firstBackoff, maxBackoff = time.Second, 5 * time.Minute
