package dropboxsign

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// RateLimit is Dropbox Sign's rate-limit state as reported in the headers of
// a response: what its SDKs expose through their *_with_http_info calls.
// A field whose header was absent or unreadable is -1 (counts) or zero (Reset).
type RateLimit struct {
	Limit     int       // X-RateLimit-Limit: requests allowed per window
	Remaining int       // X-RateLimit-Remaining, or X-Ratelimit-Limit-Remaining
	Reset     time.Time // X-Ratelimit-Reset: when the window resets
}

// ParseRateLimit reads the rate-limit headers of any Dropbox Sign response,
// token or API. ok is false when none of them is present and readable.
func ParseRateLimit(h http.Header) (rl RateLimit, ok bool) {
	rl = RateLimit{Limit: -1, Remaining: -1}
	if n, good := headerInt(h, "X-RateLimit-Limit"); good {
		rl.Limit, ok = int(n), true
	}
	if n, good := headerInt(h, "X-RateLimit-Remaining"); good {
		rl.Remaining, ok = int(n), true
	} else if n, good := headerInt(h, "X-Ratelimit-Limit-Remaining"); good {
		rl.Remaining, ok = int(n), true
	}
	if n, good := headerInt(h, "X-Ratelimit-Reset"); good {
		rl.Reset, ok = time.Unix(n, 0), true
	}
	return rl, ok
}

// headerInt reads a non-negative integer header of plausible size.
func headerInt(h http.Header, name string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(h.Get(name)), 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return 0, false
	}
	return n, true
}

// rateLimitKey is where a token keeps the rate limit of the response that
// issued it, among its extras; it is written after the response's own fields.
const rateLimitKey = "dropboxsign.rate_limit"

// TokenRateLimit returns the rate limit reported by the response that issued
// t. ok is false for tokens not obtained by this package or when the response
// had no rate-limit headers.
func TokenRateLimit(t *oauth2.Token) (RateLimit, bool) {
	if t == nil {
		return RateLimit{}, false
	}
	rl, ok := t.Extra(rateLimitKey).(RateLimit)
	return rl, ok
}

// ErrorRateLimit returns the rate limit reported by the failed token response
// in err's chain (for example a 429 exceeded_rate). ok is false when err
// carries no response or the response had no rate-limit headers.
func ErrorRateLimit(err error) (RateLimit, bool) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return RateLimit{}, false
	}
	return ParseRateLimit(re.Response.Header)
}

// rateLimitedUntil reads when a rate-limited token request may be sent
// again: Retry-After (seconds or an HTTP date) if present, else
// X-Ratelimit-Reset.
func rateLimitedUntil(err error, now time.Time) (time.Time, bool) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return time.Time{}, false
	}
	h := re.Response.Header
	if ra := strings.TrimSpace(h.Get("Retry-After")); ra != "" {
		if secs, err := strconv.ParseInt(ra, 10, 64); err == nil && secs >= 0 && secs < 1<<31 {
			return now.Add(time.Duration(secs) * time.Second), true
		}
		if t, err := http.ParseTime(ra); err == nil {
			return t, true
		}
	}
	if rl, ok := ParseRateLimit(h); ok && !rl.Reset.IsZero() {
		return rl.Reset, true
	}
	return time.Time{}, false
}
