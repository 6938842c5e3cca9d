package dropboxsign

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// This file is how a replica tells the others that it is spending the
// stored refresh token. Dropbox Sign may rotate the refresh token at each
// refresh, so once a replica has presented it, the grant lives on only in
// the token that comes back. If that token cannot be stored (the store
// fails just then), the store still holds the spent refresh token: another
// replica that presented it would be refused, and would take the refusal
// for the account's and tell the user to reconnect, while the first
// replica holds a good token and retries its save.
//
// So before presenting a stored refresh token, a replica marks the stored
// token as being spent, with the time, in the same compare-and-swap Save
// it uses for everything else; if the mark cannot be written, it does not
// present the refresh token at all. The new token replaces the mark when
// it is stored; if it cannot be, its replica retries in the background
// (owed.go), calls or no calls. A replica that finds a mark neither
// presents that refresh token nor records a refusal until successorGrace
// has passed since it first saw that mark (by its own clock: clocks of
// replicas may disagree), or the mark is older than the grace plus
// maxMarkSkew by its clock (so that a new process, or an account reloaded,
// which sees an old mark for the first time, does not wait it out again):
// it keeps serving the token it has and reads the store again until the
// successor arrives. Past the grace, the replica
// that held the successor is presumed gone (killed between its token
// request and its save): the refresh token is presented again (it still
// works if the request never reached Dropbox Sign), and a refusal then is
// the account's. A replica that does still hold the successor after that
// overwrites the refusal mark at its next save. A replica ignores a mark
// of its own that it failed to take off (its request brought nothing).
// Replicas of an earlier version ignore marks.
//
// The mark lives in the token's ExpiresIn, which every Store keeps as is
// (see Store.Load) and which this package reads only when positive: stores
// need no change, and replicas of an earlier version read a marked token
// as the token it is. It holds no secret. Load strips it.

// successorGrace is how long a mark keeps other replicas from presenting
// the marked refresh token or recording its refusal. A replica retries a
// failed save after 1 s, doubling, so within it a replica that holds the
// successor has tried about six times; it is shorter than the expiry
// window, so the current access token usually serves callers meanwhile.
const successorGrace = 2 * time.Minute

// maxMarkSkew is the most two replicas' clocks are taken to disagree: a
// mark older than grace plus this, by the reader's clock, is waited on no
// more, even by a source that sees it for the first time.
const maxMarkSkew = 3 * time.Minute

// spendShift places the mark's time above the token's own ExpiresIn, which
// is at most maxExpiresIn < 1<<29.
const spendShift = 29

// withSpendMark returns a copy of t marked as being spent since at.
func withSpendMark(t *oauth2.Token, at time.Time) *oauth2.Token {
	c := slim(t)
	c.ExpiresIn = -(at.Unix()<<spendShift | max(min(t.ExpiresIn, maxExpiresIn), 0))
	return c
}

// readSpendMark returns t without its mark, and the mark (0: none). A
// negative ExpiresIn this package did not write is dropped, and reads as
// no mark.
func readSpendMark(t *oauth2.Token) (*oauth2.Token, int64) {
	if t == nil || t.ExpiresIn >= 0 {
		return t, 0
	}
	v := -t.ExpiresIn
	c := slim(t)
	c.ExpiresIn = v & (1<<spendShift - 1)
	if c.ExpiresIn > maxExpiresIn {
		c.ExpiresIn = 0
	}
	if sec := v >> spendShift; sec <= 0 || sec > 1<<34 { // not a time this package wrote
		return c, 0
	}
	return c, t.ExpiresIn
}

// markTime is when the replica that made mark began spending, by its clock.
func markTime(mark int64) time.Time {
	return time.Unix(-mark>>spendShift, 0)
}

// markSpending marks stored, which the store holds, as being spent now,
// before its refresh token is presented, and returns the mark. On any
// error the refresh token must not be presented: another writer may have
// moved on, or the store may not hold the mark.
func (s *TokenSource) markSpending(ctx context.Context, stored *oauth2.Token, now time.Time) (int64, error) {
	marked := withSpendMark(stored, now)
	return marked.ExpiresIn, s.storeSave(ctx, stored, marked)
}

// awaitSuccessor returns the state of a source that finds the stored token
// marked (mark) by another replica and waits for its successor, or nil once
// the grace has passed. The grace runs from when this source first saw the
// mark, by its own clock: the marking replica's clock may be off. Each
// reading of the store while waiting is not a failure: it does not add to
// the backoff that a real failure after the wait will start.
func awaitSuccessor(st *state, mark int64, now time.Time) *state {
	seen := now
	if st.tr.mark == mark {
		seen = st.tr.markSeen
	}
	if !now.Before(seen.Add(successorGrace)) || now.After(markTime(mark).Add(successorGrace+maxMarkSkew)) {
		// Waited the grace; or the mark is older than any clock could
		// make it look (a new process, or an account reloaded, sees it
		// for the first time long after it was made).
		return nil
	}
	next := *st
	t := next.edit()
	t.err, t.retryAt = &successorPendingError{since: markTime(mark)}, now.Add(refusalRecheck)
	t.mark, t.markSeen = mark, seen
	return &next
}

// successorPendingError is a refresh put off because another replica spent
// the stored refresh token moments ago and has not stored the new token.
type successorPendingError struct{ since time.Time }

func (e *successorPendingError) Error() string {
	return fmt.Sprintf("dropboxsign: a replica presented the stored refresh token at %s (by its clock) and has not stored the new token yet "+
		"(its store write failed?); waiting for it rather than present a spent refresh token", e.since.UTC().Format(time.RFC3339))
}
