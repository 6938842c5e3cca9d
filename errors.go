package dropboxsign

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// SaveError reports that the [WithOnRefresh] function failed to persist a
// new token. The token that comes with it is valid and kept by the source;
// see [WithOnRefresh] for what happens next.
type SaveError struct {
	Err error // what the store or the WithOnRefresh function returned

	text string // Err's text, redacted of the token and the client secret
}

// Error says that the new token was not saved, and why, in Err's words
// redacted of every secret the source knows: a save function may well put
// the token it was given into its error.
func (e *SaveError) Error() string {
	if e.text != "" {
		return e.text
	}
	return "dropboxsign: new token not saved: " + e.Err.Error()
}

// Unwrap returns the WithOnRefresh function's error.
func (e *SaveError) Unwrap() error { return e.Err }

// errBadConfig is matched by every error about an unusable oauth2.Config.
var errBadConfig = errors.New("dropboxsign: unusable configuration")

type configError struct{ msg string }

func configErrorf(format string, args ...any) error {
	return &configError{"dropboxsign: " + fmt.Sprintf(format, args...)}
}

func (e *configError) Error() string        { return e.msg }
func (e *configError) Is(target error) bool { return target == errBadConfig }

var errNoToken = errors.New("dropboxsign: the token source has no token to refresh")

// backoffError is what callers get, at once, while the source waits before
// its next refresh attempt and has no usable token.
type backoffError struct {
	err   error
	retry time.Duration
}

func (e *backoffError) Error() string {
	return fmt.Sprintf("dropboxsign: no usable token; next refresh attempt in %s after: %v", e.retry.Round(time.Millisecond), e.err)
}

func (e *backoffError) Unwrap() error { return e.err }

// storeError is a failed Store call. Its text is redacted of every secret
// the source knows (a custom store may print a token it was given); the
// store's own error stays reachable, as is, for errors.Is and errors.As.
type storeError struct {
	text string
	err  error
}

func (e *storeError) Error() string { return e.text }
func (e *storeError) Unwrap() error { return e.err }

// storeError wraps err, from the store's op on the source's key.
func (s *TokenSource) storeError(op string, err error, toks ...*oauth2.Token) error {
	r := newRedactor(s.clientSecret())
	for _, t := range toks {
		if t != nil {
			r.add(t.AccessToken, t.RefreshToken)
		}
	}
	// The store is the app's own: its errors may say more than an endpoint's.
	return &storeError{text: fmt.Sprintf("dropboxsign: store: %s %q: %s", op, s.key, r.textN(err.Error(), 4*maxTextRunes)), err: err}
}

// lostRefusalError is a refused grant that may be another replica's doing:
// the store lost the token this replica's was derived from.
type lostRefusalError struct {
	err   error
	since time.Time // when this replica met it
}

func (e *lostRefusalError) Error() string {
	return "dropboxsign: the grant was refused, and the store holds no token (did it lose its data?): another replica may hold a newer one; reading the store again: " + e.err.Error()
}

func (e *lostRefusalError) Unwrap() error { return e.err }

// refusedTokensError is what callers get while the source backs off after
// the API refused a token fresh from a refresh: refreshing does not help.
type refusedTokensError struct{ n int }

func (e *refusedTokensError) Error() string {
	return fmt.Sprintf("dropboxsign: the API refused %d tokens in a row (401), the last one fresh from a refresh: "+
		"refreshing again does not help; does a proxy drop the Authorization header, or has the app lost API access?", e.n)
}

// unrecordedRefusalError is a refused grant that could not be recorded in
// the store: until it is, it may be one another replica caused (a replica
// that spent the refresh token and could not store what it got).
type unrecordedRefusalError struct{ cause, err error }

func (e *unrecordedRefusalError) Error() string {
	return "dropboxsign: Dropbox Sign refused the grant, and recording the refusal failed (" + e.err.Error() +
		"); until it is recorded, another replica may hold a newer token: trying again: " + e.cause.Error()
}

func (e *unrecordedRefusalError) Unwrap() error { return e.cause }
