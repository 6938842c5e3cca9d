package dropboxsign

import (
	"context"
	"errors"
	"io"
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
// and is not sent; a valid token that [WithOnRefresh] failed to save is used. If the API answers 401 to a token the source thought
// valid, the client marks that token bad ([TokenSource.Invalidate]) and, when
// the request's body can be replayed (no body, or GetBody set, as
// [http.NewRequest] does for in-memory bodies), sends the request once more
// with a new token; the caller gets the second answer, whatever it is.
//
// [oauth2.NewClient] with a [TokenSource] works too, without the 401 retry.
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
	resp, err := t.base.RoundTrip(authorize(req, tok))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}

	// The API refused a token the source thought valid: revoked, or the
	// clocks disagree. Mark that token (only that one) bad, and replay the
	// request once with a new token if its body can be sent again.
	t.source.Invalidate(tok)
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if !replayable {
		return resp, nil
	}
	fresh, _ := t.source.TokenContext(req.Context())
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
	return t.base.RoundTrip(retry)
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
