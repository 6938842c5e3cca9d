package dropboxsign

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// TokenSource is an [oauth2.TokenSource] for Dropbox Sign that refreshes its
// token by itself. Create it with [NewTokenSource]; the zero value is not
// usable. It is safe for concurrent use by any number of goroutines, and it
// needs no Close: the goroutines it starts serve one refresh or save retry
// each and end with it (a WithOnRefresh function that never returns keeps
// its own).
//
// A valid token is returned from memory, without locks, I/O or allocation.
// Within the expiry window (see [WithExpiryWindow]) callers still get the
// current token at once while one background refresh replaces it; only when
// the token is about to expire, or already has, do callers wait. Concurrent
// callers that need a refresh share one token request, and so do all the
// sources of the process that present the same refresh token: one made
// from the same stored token, say; a source presenting a refresh token the
// process spent less than a minute ago gets the token that brought (the
// newest, if it has been spent again since) without a request. Failed
// refreshes are
// retried with exponential backoff, never in a tight loop; while a usable
// token is in hand, a failed background refresh does not reach callers.
//
// Each refresh presents the newest refresh token the source has seen (with
// [WithStore], the one it has just read under the store's lock, or its own
// if the store has lost it), and a refresh response without one keeps the
// previous one.
type TokenSource struct {
	cfg    *sourceConfig          // shared with the other sources of one Accounts
	key    string                 // the store key, with a store
	state  atomic.Pointer[state]  // see state.go
	flying atomic.Pointer[flight] // the run under way, if any: see flight.go
	used   atomic.Int64           // with Accounts: when last used, in Unix seconds
}

var _ oauth2.TokenSource = (*TokenSource)(nil)

// NewTokenSource returns a source that starts from t and refreshes it with
// c's client credentials at c.Endpoint.TokenURL. t may be nil or lack an
// access token when only a refresh token is at hand; the source copies t, so
// later changes to it, or to c, have no effect.
//
// ctx supplies values only, such as the [*http.Client] under the
// [oauth2.HTTPClient] key used for token requests: its cancellation and
// deadline are ignored, because refreshes serve many callers long after
// ctx's creator has returned. Callers bound their own waits with the
// context they pass to [TokenSource.TokenContext].
//
// A problem with c (nil, no ClientID, an unusable or insecure TokenURL) is
// reported by the first call that needs a refresh.
func NewTokenSource(ctx context.Context, c *oauth2.Config, t *oauth2.Token, opts ...Option) *TokenSource {
	cfg := newSourceConfig(ctx, c, opts)
	return cfg.newSource(cfg.opts.storeKey, t)
}

// newSource returns a source of cfg's for key, starting from a copy of t.
func (cfg *sourceConfig) newSource(key string, t *oauth2.Token) *TokenSource {
	s := &TokenSource{cfg: cfg, key: key}
	if t != nil {
		t = slim(t)
	}
	st := newState(t, cfg.opts.window)
	st.seed = t != nil && cfg.opts.store != nil
	s.state.Store(st)
	return s
}

// slim returns a copy of t without its extras: a source keeps many tokens
// for a long time, and a map of a response's fields costs more than the
// token itself. [TokenRateLimit] works on the tokens of [Exchange] and
// [Refresh], not on a source's.
func slim(t *oauth2.Token) *oauth2.Token {
	c := &oauth2.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, RefreshToken: t.RefreshToken, Expiry: t.Expiry, ExpiresIn: t.ExpiresIn}
	if strings.EqualFold(c.TokenType, "bearer") {
		c.TokenType = "Bearer" // one string for all tokens, not one each
	}
	return c
}

// TokenContext returns a token that is valid for use now. ctx bounds only
// this caller's wait: when it ends, the call returns ctx.Err() while a shared
// refresh goes on for the others.
//
// The returned token is shared with other callers and must not be modified;
// use [TokenSource.Token] for a private copy.
//
// On error the token is nil, except for a [*SaveError]: then the token is
// valid, in use, but not yet persisted (see [WithOnRefresh]). While the source backs
// off after failed refreshes and has no usable token, the last refresh error
// comes back at once, wrapped; [errors.As] finds the [*oauth2.RetrieveError]
// of a failure the endpoint reported.
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	if s == nil || s.cfg == nil {
		return nil, errZeroSource
	}
	st := s.state.Load()
	now := s.cfg.opts.now()
	if sec := now.Unix(); s.used.Load() != sec {
		s.used.Store(sec) // for Accounts: which accounts were used last
	}
	if st.fresh(now) && !s.cfg.closed.Load() {
		return st.tok, nil
	}
	return s.slowPath(ctx, st, now)
}

// Token returns a token for use now, as [TokenSource.TokenContext] with a
// background context does, but as a private copy, so that x/oauth2's wrappers
// ([oauth2.ReuseTokenSource], [oauth2.NewClient]) may modify it.
//
// A token that is valid but not yet persisted comes without the [*SaveError]
// that TokenContext reports: x/oauth2 code treats any error as a failed
// request, and an unsaved token serves requests as well as any.
//
// x/oauth2's wrappers cache a token until 10 s before its Expiry. So that
// they come back in time for the source to refresh ahead, rather than at the
// last moment, the copy's Expiry is moved up to 11 s after the later of now
// and the start of the refresh-ahead window, never past the real expiry: in
// the window, wrappers ask again about once a second, and the copy is still
// Valid. The real expiry is in the token from TokenContext.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	tok, err := s.TokenContext(context.Background())
	if tok == nil {
		return nil, err
	}
	copied := *tok
	if expires, askAgain, _ := schedule(tok, s.cfg.opts.window); expires {
		if now := s.cfg.opts.now(); now.After(askAgain) {
			askAgain = now
		}
		if askAgain = askAgain.Add(11 * time.Second); askAgain.Before(copied.Expiry) {
			copied.Expiry = askAgain
		}
	}
	if _, unsaved := err.(*SaveError); unsaved {
		err = nil
	}
	return &copied, err
}

func (s *TokenSource) slowPath(ctx context.Context, st *state, now time.Time) (*oauth2.Token, error) {
	if s.cfg.closed.Load() {
		return nil, ErrShutdown
	}
	if !st.usable(now) {
		return s.wait(ctx, st, now)
	}
	// Static stability: the caller leaves with the token in hand and any
	// work due runs in the background.
	if st.refreshDue(now) || st.saveDue(now) {
		s.kick()
	}
	if st.tr.saveErr != nil {
		return st.tok, st.tr.saveErr
	}
	return st.tok, nil
}

// Invalidate reports that the API refused t although it had not expired (it
// was revoked, or the clocks disagree). If t is still the source's token,
// callers stop getting it and the next call waits for a refresh; if the
// source has already moved on to a newer token, nothing happens, so any
// number of callers may report the same refused token and it costs one
// refresh. The client from [NewClient] calls it by itself on a 401.
//
// If the API also refuses the token that replaced a refused one, within a
// minute of its arrival, refreshing again at once would not help (a proxy
// that drops the Authorization header, an app whose API access is gone):
// the source backs off as after a failed refresh (1 s, doubling, at most 5
// min), and meanwhile callers get an error for which [Classify] says
// Misconfigured. A refused token that had served for longer, or a refresh
// for expiry, starts afresh.
func (s *TokenSource) Invalidate(t *oauth2.Token) {
	if s == nil || s.cfg == nil {
		return
	}
	for {
		st := s.state.Load()
		if st.rejected || t == nil || !sameToken(st.tok, t) {
			return
		}
		now := s.cfg.opts.now()
		next := *st
		next.rejected = true
		t := next.edit()
		t.rejections = 1
		if st.tr.rejections > 0 && now.Sub(st.tr.arrived) < streakWindow {
			t.rejections = st.tr.rejections + 1
		}
		if t.rejections > 1 {
			t.err = &refusedTokensError{n: t.rejections}
			t.retryAt = now.Add(backoff(t.rejections - 1))
		}
		if s.state.CompareAndSwap(st, &next) {
			e := Event{Kind: EventInvalidated, Failures: t.rejections}
			if t.rejections > 1 {
				e.Err, e.RetryAt = t.err, t.retryAt
			}
			s.emit(s.cfg.ctx, e)
			return
		}
	}
}

var errZeroSource = &configError{"dropboxsign: a nil or zero TokenSource: make one with NewTokenSource or Accounts.TokenSource"}

// streakWindow is how soon after its arrival a replacement for a refused
// token must be refused too for the refusals to count as one streak.
const streakWindow = time.Minute

func (s *TokenSource) clientSecret() string {
	if s.cfg.client == nil {
		return ""
	}
	return s.cfg.client.clientSecret
}

func sameToken(a, b *oauth2.Token) bool {
	return a != nil && b != nil && a.AccessToken == b.AccessToken
}
