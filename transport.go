package dropboxsign

import (
	"context"
	"net/http"

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
// and is not sent. [oauth2.NewClient] with a [TokenSource] works too.
func NewClient(ctx context.Context, c *oauth2.Config, t *oauth2.Token, opts ...Option) *http.Client {
	src := NewTokenSource(ctx, c, t, opts...)
	hc := contextClient(ctx)
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	return &http.Client{
		Transport:     &transport{source: src, base: base},
		CheckRedirect: hc.CheckRedirect,
		Jar:           hc.Jar,
		Timeout:       hc.Timeout,
	}
}

// transport adds a bearer token to each request.
type transport struct {
	source *TokenSource
	base   http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.source.TokenContext(req.Context())
	if err != nil {
		// A RoundTripper must close the body, even when it sends nothing.
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	// A shallow copy with its own Header is all the change needs; the base
	// transport closes the shared body.
	authorized := new(http.Request)
	*authorized = *req
	authorized.Header = req.Header.Clone()
	if authorized.Header == nil {
		authorized.Header = make(http.Header, 1)
	}
	tok.SetAuthHeader(authorized)
	return t.base.RoundTrip(authorized)
}
