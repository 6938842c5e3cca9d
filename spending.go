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
// it uses for everything else. The new token replaces the mark when it is
// stored. A replica that finds a mark younger than successorGrace neither
// presents that refresh token nor records a refusal: it keeps serving the
// token it has and reads the store again until the successor arrives. Past
// the grace, the replica that held the successor is presumed gone (killed
// between its token request and its save): the refresh token is presented
// again (it still works if the request never reached Dropbox Sign), and a
// refusal then is the account's. A replica that does still hold the
// successor after that overwrites the refusal mark at its next save.
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

// spendShift places the mark's time above the token's own ExpiresIn, which
// is at most maxExpiresIn < 1<<29.
const spendShift = 29

// withSpendMark returns a copy of t marked as being spent since at.
func withSpendMark(t *oauth2.Token, at time.Time) *oauth2.Token {
	c := slim(t)
	c.ExpiresIn = -(at.Unix()<<spendShift | max(min(t.ExpiresIn, maxExpiresIn), 0))
	return c
}

// readSpendMark returns t without its mark and when the mark was made, or
// t itself and the zero time if it carries none. A value that is not a
// mark this package made (a negative ExpiresIn from elsewhere) is dropped.
func readSpendMark(t *oauth2.Token) (*oauth2.Token, time.Time) {
	if t == nil || t.ExpiresIn >= 0 {
		return t, time.Time{}
	}
	v := -t.ExpiresIn
	c := slim(t)
	c.ExpiresIn = v & (1<<spendShift - 1)
	if c.ExpiresIn > maxExpiresIn {
		c.ExpiresIn = 0
	}
	sec := v >> spendShift
	if sec <= 0 || sec > 1<<34 { // not a time this package wrote
		return c, time.Time{}
	}
	return c, time.Unix(sec, 0)
}

// markSpending marks stored, which the store holds, as being spent now,
// before its refresh token is presented. It returns the store's error: on
// any, the refresh token must not be presented (another writer may have
// moved on, or the store may not have the mark).
func (s *TokenSource) markSpending(ctx context.Context, stored *oauth2.Token, now time.Time) error {
	return s.storeSave(ctx, stored, withSpendMark(stored, now))
}

// awaitingSuccessor reports whether a mark made at spent keeps this replica
// from presenting the marked refresh token at now. A mark from the future
// beyond the grace is taken for a broken clock, not obeyed forever.
func awaitingSuccessor(spent, now time.Time) bool {
	return !spent.IsZero() && now.Before(spent.Add(successorGrace)) && spent.Before(now.Add(successorGrace))
}

// successorPendingError is a refresh put off because another replica spent
// the stored refresh token moments ago and has not stored the new token.
type successorPendingError struct{ since time.Time }

func (e *successorPendingError) Error() string {
	return fmt.Sprintf("dropboxsign: another replica presented the stored refresh token at %s and has not stored the new token yet "+
		"(its store write failed?); waiting for it rather than present a spent refresh token", e.since.UTC().Format(time.RFC3339))
}
