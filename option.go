package dropboxsign

import (
	"context"
	"time"

	"golang.org/x/oauth2"
)

// DefaultExpiryWindow is how long before expiry a [TokenSource] starts
// refreshing in the background, unless [WithExpiryWindow] says otherwise.
const DefaultExpiryWindow = 5 * time.Minute

// An Option configures a [TokenSource] (and the client of [NewClient]), or
// every account's source of an [Accounts].
type Option func(*options)

type options struct {
	onRefresh func(context.Context, *oauth2.Token) error
	window    time.Duration
	timeout   time.Duration
	store     Store
	storeKey  string

	maxAccounts int           // Accounts only
	watchPoll   time.Duration // Accounts only
	observers   []Observer

	// Seams for tests (see export_test.go).
	grants   *grantTable // nil: the process's (see grants.go)
	now      func() time.Time
	afterRun func()
	kicked   func()
}

func defaultOptions() options {
	return options{window: DefaultExpiryWindow, timeout: DefaultTimeout, now: time.Now, maxAccounts: DefaultMaxAccounts, watchPoll: DefaultWatchPoll}
}

// WithOnRefresh registers fn to persist each new token. The source calls fn
// with every token it obtains (a new login's too, with [Accounts]), before
// any caller receives that token, one call at a time per account, with a
// context that carries the values of the context given to [NewTokenSource]
// and a deadline (see [WithTimeout]). A refresh that a login overtook (it
// began from the grant the login replaced) does not call it.
//
// Dropbox Sign may rotate the refresh token on every refresh, so the token
// given to fn may be the only valid credential left: store all of it.
//
// If fn returns an error (or panics), the new token is still kept in memory
// and used: its refresh token is the newest one, and API calls go on with it.
// Until a save succeeds, [TokenSource.TokenContext] returns the token
// together with a [*SaveError], so that callers can tell; [TokenSource.Token]
// and the client of [NewClient] use the token without an error, so that
// x/oauth2 code keeps working. The save is retried in the background after
// a backoff (1 s, doubling, at most 5 min, with jitter), calls or no calls
// (one goroutine per source configuration, or per [Accounts], runs while
// any save is owed), and again with each newer token; the first success
// clears the error. fn itself sees every failure first: log or alert there.
// The retries hold a source of [NewTokenSource] only as long as the
// program does: one it lets go is collected with its unsaved token (an
// [Accounts] keeps its own until their saves succeed, or Shutdown).
//
// fn's context has a deadline ([WithTimeout]); fn should honour it, since
// the source waits for fn to return. fn must not modify the token or call
// the source.
func WithOnRefresh(fn func(ctx context.Context, t *oauth2.Token) error) Option {
	return func(o *options) { o.onRefresh = fn }
}

// WithExpiryWindow sets how long before a token's expiry the source starts
// replacing it in the background (default [DefaultExpiryWindow]). While a
// refresh runs, callers keep getting the current token at once. When the
// token's lifetime is known (its ExpiresIn), the window is at most half of
// it. A window of 0 disables refresh-ahead: callers then wait for a refresh
// once the token is within min(10 s, lifetime/10) of expiry.
func WithExpiryWindow(d time.Duration) Option {
	return func(o *options) { o.window = max(d, 0) }
}

// WithTimeout bounds each token request the source makes (default
// [DefaultTimeout]), and sets the deadline of the context given to the
// [WithOnRefresh] function. It does not bound how long callers wait: their
// own contexts do that.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}
