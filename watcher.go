package dropboxsign

import (
	"context"
	"time"
)

// A Watcher is a [Store] that tells the processes using it which accounts
// were disconnected or connected anew elsewhere, so that [Accounts] on
// every replica stops using a disconnected grant, and serves a new login's,
// within a bound instead of at its next refresh. NewAccounts watches a
// store that is a Watcher for as long as the Accounts lives (until
// [Accounts.Shutdown], or until it is garbage); FileStore and the stores
// of the redisstore and pgstore modules are Watchers.
type Watcher interface {
	Store

	// Watch reports, by calling report one call at a time, every key
	// that a Disconnect or a Replace of any process changed from the
	// moment Watch is called until ctx ends; then it returns. Reports
	// come promptly where the store can push them (a file check, Redis
	// pub/sub, PostgreSQL's NOTIFY), and in any case within poll of the
	// change while the store can be read, by a check of a log of changes
	// that covers what a push lost. A key may be reported more than once,
	// or when nothing changed in the end; never not at all, but for what
	// Watch reports with All (it cannot tell which keys changed: its log
	// lost track, or it started over). Failures (the store unreachable,
	// the push channel down) it retries by itself, reporting each with
	// Err, and keeps checking every poll meanwhile. Once it watches, it
	// reports All, or the changes its log holds from before it was called
	// (a minute back, say): its caller may have read the store before the
	// call, and a change in between would otherwise go unreported.
	Watch(ctx context.Context, poll time.Duration, report func(Change))
}

// A Change is what a [Watcher] reports.
type Change struct {
	// Key is the account whose grant was disconnected or replaced by a
	// new login, in some process; empty with All or Err.
	Key string
	// All says that changes may have been missed: every account's grant
	// may have changed.
	All bool
	// Err is a failure of the watch, which goes on trying: until it
	// recovers, changes come late (Watch says how late).
	Err error
}

// DefaultWatchPoll is how often, unless [WithWatchPoll] says otherwise,
// [Accounts] has its [Watcher] store check its log of changes, which
// bounds how late a replica learns of a disconnection or a new login when
// the store's push is down or lost a message.
const DefaultWatchPoll = 30 * time.Second

// WithWatchPoll sets how often [Accounts] has its [Watcher] store check
// its log of changes (default [DefaultWatchPoll]; d below 10 ms leaves
// it): with the push channel down, a replica stops using a disconnected
// grant, or serves a new login, within d plus a store read of the change.
// Checks are one small read each; a fleet of r replicas makes r of them
// per d.
func WithWatchPoll(d time.Duration) Option {
	return func(o *options) {
		if d >= 10*time.Millisecond {
			o.watchPoll = d
		}
	}
}
