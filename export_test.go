package dropboxsign

import "time"

// WithClock replaces the source's clock, for tests that move time by hand.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithAfterRun registers fn to be called when each background or shared run
// (a refresh or a save retry) has published its outcome.
func WithAfterRun(fn func()) Option {
	return func(o *options) { o.afterRun = fn }
}

// Backoff exposes the backoff schedule.
var Backoff = backoff

// WithKicked registers fn to be called, synchronously in the caller, each
// time a call starts a background run.
func WithKicked(fn func()) Option {
	return func(o *options) { o.kicked = fn }
}

// HeldCount returns how many accounts a counts as held, and how many its
// shards' maps hold: the two agree once no call is under way.
func (a *Accounts) HeldCount() (counted, entries int) {
	counted = int(a.held.Load())
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.RLock()
		entries += len(sh.held)
		sh.mu.RUnlock()
	}
	return counted, entries
}
