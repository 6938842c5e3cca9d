package dropboxsign

import (
	"context"
	"errors"
	"net/http"

	"golang.org/x/oauth2"
)

// Class sorts token errors by what can be done about them.
type Class int

const (
	// NotAnError is the class of a nil error.
	NotAnError Class = iota
	// Temporary errors may go away by themselves: network failures,
	// timeouts, 5xx answers, malformed responses. Try again later; a
	// TokenSource does so itself, with backoff.
	Temporary
	// RateLimited is a 429 (exceeded_rate): try again after the reset time
	// that [ErrorRateLimit] reports. A TokenSource waits for it.
	RateLimited
	// Reauthorize means the user's grant is gone (invalid_grant,
	// access_denied, unauthorized, no refresh token at all): only sending
	// the user through the consent page again gets a new token.
	Reauthorize
	// Misconfigured means the request itself is wrong and retrying cannot
	// fix it: bad client credentials (invalid_client), a wrong or insecure
	// token URL, another 4xx; or a stored token this configuration refuses
	// (a plain one, with [Sealer.RefusePlaintext]) or cannot open (sealed
	// under a key it lacks: [*MissingKeyError]). An operator must act:
	// fix the configuration, or the store.
	Misconfigured
)

var classNames = [...]string{"not an error", "temporary", "rate limited", "reauthorize", "misconfigured"}

// String returns the class's name, as used in logs: "temporary", "rate
// limited", "reauthorize", "misconfigured" or "not an error".
func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown class"
}

// Terminal reports whether retrying the same request cannot succeed.
func (c Class) Terminal() bool { return c == Reauthorize || c == Misconfigured }

// Classify tells what kind of failure err is, looking through wrapping for
// the *oauth2.RetrieveError of a token endpoint answer, or for an error
// with a method Class() Class, which says its own class (as the errors of
// the kmsseal module do). Errors this package
// does not recognize, including the caller's own context ending, are
// Temporary.
func Classify(err error) Class {
	if err == nil {
		return NotAnError
	}
	var classed interface{ Class() Class }
	if errors.As(err, &classed) {
		return classed.Class() // an error that knows its class (kmsseal's)
	}
	var refusal *RefusedError
	if errors.As(err, &refusal) || errors.Is(err, ErrDisconnected) || errors.Is(err, ErrNotConnected) || errors.Is(err, errStartAgain) || errors.Is(err, errNoToken) || errors.Is(err, errNoRefreshToken) || errors.Is(err, errUnsendableRefreshToken) {
		return Reauthorize
	}
	var refused *refusedTokensError
	var missingKey *MissingKeyError
	if errors.As(err, &missingKey) {
		return Misconfigured
	}
	if errors.Is(err, ErrInsecureEndpoint) || errors.Is(err, errBadConfig) || errors.As(err, &refused) || errors.Is(err, ErrPlaintextToken) {
		return Misconfigured
	}
	var lost *lostRefusalError
	var unrecorded *unrecordedRefusalError
	if errors.As(err, &lost) || errors.As(err, &unrecorded) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Temporary
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return Temporary
	}
	switch re.ErrorCode {
	case "invalid_grant", "access_denied", "unauthorized":
		return Reauthorize
	case "invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope",
		"payment_required", "forbidden":
		return Misconfigured
	case "exceeded_rate":
		return RateLimited
	}
	switch status := re.Response.StatusCode; {
	case status == http.StatusTooManyRequests:
		return RateLimited
	case status == http.StatusRequestTimeout || status == http.StatusTooEarly:
		return Temporary
	case status >= 300 && status < 500:
		return Misconfigured
	default: // 5xx, or a 2xx whose body was broken
		return Temporary
	}
}
