package dropboxsign

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// Endpoint is Dropbox Sign's OAuth 2.0 endpoint. Use it as the Endpoint of an
// [oauth2.Config]: [oauth2.Config.AuthCodeURL] works with it unchanged, while
// token requests must go through [Exchange], [Refresh] or [NewTokenSource],
// which speak Dropbox Sign's JSON dialect.
//
// AuthStyle is [oauth2.AuthStyleInParams]: the client secret travels in the
// request body. x/oauth2's auto-detection would first try a Basic header and,
// on failure, send the request again, spending a rotating refresh token twice.
var Endpoint = oauth2.Endpoint{
	AuthURL:   "https://app.hellosign.com/oauth/authorize",
	TokenURL:  "https://app.hellosign.com/oauth/token",
	AuthStyle: oauth2.AuthStyleInParams,
}

// APIBaseURL is the base of Dropbox Sign's REST API, which accepts the access
// tokens this package obtains as "Authorization: Bearer" credentials.
const APIBaseURL = "https://api.hellosign.com/v3"

// ErrInsecureEndpoint is returned, before any connection is opened, when a
// token URL would send the client secret, a code or a refresh token over
// plain HTTP to a host other than a loopback address.
var ErrInsecureEndpoint = errors.New("dropboxsign: token URL must use https (plain http is allowed only for loopback hosts)")

// tokenURLs parses a token URL, checks that it is safe to send secrets to, and
// returns the exchange URL and the refresh URL: the same URL with "refresh"
// added to its query, keeping whatever query it already has.
func tokenURLs(raw string) (exchange, refresh string, err error) {
	if raw == "" {
		return "", "", configErrorf("oauth2.Config has no Endpoint.TokenURL (use dropboxsign.Endpoint)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", configErrorf("invalid token URL: %v", err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return "", "", fmt.Errorf("%w: %s", ErrInsecureEndpoint, u.Redacted())
		}
	default:
		return "", "", configErrorf("token URL %q: scheme must be https", u.Redacted())
	}
	if u.Host == "" {
		return "", "", configErrorf("token URL %q has no host", u.Redacted())
	}
	if u.User != nil {
		return "", "", configErrorf("token URL %q carries user information; the client credentials belong in oauth2.Config", u.Redacted())
	}
	// The exchange goes to the URL without "refresh" in its query, the
	// refresh to the URL with it, whichever way the URL was given.
	var kept []string
	for _, part := range strings.Split(u.RawQuery, "&") {
		if name, _, _ := strings.Cut(part, "="); part != "" && name != "refresh" {
			kept = append(kept, part)
		}
	}
	e, r := *u, *u
	e.RawQuery = strings.Join(kept, "&")
	r.RawQuery = strings.Join(append(kept, "refresh"), "&")
	return e.String(), r.String(), nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
