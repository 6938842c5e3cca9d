package dropboxsign

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// NewClient returns an HTTP client that authorizes every request with a
// token from a new [TokenSource] built from ctx, c, t and opts. It is the
// equivalent of [oauth2.Config.Client].
//
// Each request gets its token with its own context, so a request's deadline
// or cancellation also bounds its wait for a refresh. The Authorization
// header is set on a copy of the request; the request given is not modified.
// Requests go out through the Transport of the client in ctx (the
// [oauth2.HTTPClient] key), else [http.DefaultTransport]; that client's
// CheckRedirect, Jar and Timeout carry over, as with [oauth2.NewClient].
//
// If no token can be had, the request fails with the token source's error
// and is not sent; a valid token that [WithOnRefresh] failed to save is
// used. If the API answers 401 to a token the source thought valid, the
// client marks that token bad ([TokenSource.Invalidate]) and, when the
// request's body can be replayed (no body, or GetBody set, as
// [http.NewRequest] does for in-memory bodies), sends the request once more
// with a new token; the caller gets the second answer, whatever it is. If
// the new token is refused too, the source backs off (see Invalidate):
// one refused token costs one refresh, never one per request.
//
// Redirects that the client follows carry the token only where net/http
// would carry an Authorization header set by hand: to the first request's
// host or its subdomains, and, unlike net/http, never from https to plain
// http. A 401 from a host that got no token says nothing about the token.
//
// [oauth2.NewClient] with a [TokenSource] works too, without the 401 retry
// and without the redirect rule (x/oauth2's transport sets the header on
// every hop).
func NewClient(ctx context.Context, c *oauth2.Config, t *oauth2.Token, opts ...Option) *http.Client {
	src := NewTokenSource(ctx, c, t, opts...)
	hc := contextClient(ctx)
	return &http.Client{
		Transport:     &Transport{Source: src, Base: hc.Transport},
		CheckRedirect: hc.CheckRedirect,
		Jar:           hc.Jar,
		Timeout:       hc.Timeout,
	}
}

// Transport is an [http.RoundTripper] that authorizes each request with a
// token from Source, with everything the client of [NewClient] does: the
// request's context bounds its wait for a refresh, a 401 marks the token
// bad and replays the request once with a new one, and redirects carry the
// token only where net/http would carry an Authorization header set by
// hand. Use it with a [TokenSource] of your own, as [oauth2.Transport] is
// used:
//
//	client := &http.Client{Transport: &dropboxsign.Transport{Source: src}}
//
// A Transport must not be modified while in use; it is safe for concurrent
// use.
type Transport struct {
	Source *TokenSource
	// Base sends the authorized requests; nil means http.DefaultTransport.
	Base http.RoundTripper
}

// RoundTrip authorizes req and sends it; see [Transport].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return roundTrip(t.Base, t.Source, req)
}

func roundTrip(base http.RoundTripper, source *TokenSource, req *http.Request) (*http.Response, error) {
	if base == nil {
		base = http.DefaultTransport
	}
	if source == nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("dropboxsign: Transport has no Source")
	}
	if !mayCarryToken(req) {
		// A redirect that left the first request's host: net/http drops an
		// Authorization header set by hand there, so the token stays home.
		return base.RoundTrip(req)
	}
	tok, err := source.TokenContext(req.Context())
	var saveErr *SaveError
	if errors.As(err, &saveErr) {
		err = nil // a valid token that is not yet persisted serves as well
	}
	if err != nil {
		// A RoundTripper must close the body, even when it sends nothing.
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := base.RoundTrip(authorize(req, tok))
	if err != nil {
		return resp, err
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return resp, nil
	}

	// The API refused a token the source thought valid: revoked, or the
	// clocks disagree. Mark that token (only that one) bad, and replay the
	// request once with a new token if its body can be sent again.
	source.Invalidate(tok)
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if !replayable {
		return resp, nil
	}
	fresh, _ := source.TokenContext(req.Context())
	if fresh == nil || fresh.AccessToken == tok.AccessToken {
		return resp, nil // no better token: the caller gets the API's answer
	}
	retry := authorize(req, fresh)
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	io.CopyN(io.Discard, resp.Body, 4<<10) // let the connection be reused
	resp.Body.Close()
	resp, err = base.RoundTrip(retry)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		source.Invalidate(fresh) // refused fresh: the source backs off
	}
	return resp, err
}

// authorize returns a shallow copy of req, with its own Header carrying tok;
// req itself is not modified, as a RoundTripper must not.
func authorize(req *http.Request, tok *oauth2.Token) *http.Request {
	r := new(http.Request)
	*r = *req
	r.Header = req.Header.Clone()
	if r.Header == nil {
		r.Header = make(http.Header, 1)
	}
	tok.SetAuthHeader(r)
	return r
}

// mayCarryToken reports whether req, a request or one of the redirects
// http.Client follows from it, may carry the token. It is net/http's rule
// for an Authorization header set on the first request: every hop since
// must go to that request's host or a subdomain of it (ports aside), or the
// header is gone for good. Stricter than net/http, a hop from https to plain
// http loses it too.
func mayCarryToken(req *http.Request) bool {
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	for hop := req; hop != first; hop = hop.Response.Request {
		if !isDomainOrSubdomain(hostOf(hop.URL), hostOf(first.URL)) ||
			first.URL.Scheme == "https" && hop.URL.Scheme != "https" {
			return false
		}
	}
	return true
}

func hostOf(u *url.URL) string { return strings.ToLower(u.Hostname()) }

// isDomainOrSubdomain is net/http's test: sub is parent or ends in
// "."+parent, and an IPv6 address or a zone matches only itself.
func isDomainOrSubdomain(sub, parent string) bool {
	if sub == parent {
		return true
	}
	if strings.ContainsAny(sub, ":%") || !strings.HasSuffix(sub, parent) {
		return false
	}
	return sub[len(sub)-len(parent)-1] == '.'
}
