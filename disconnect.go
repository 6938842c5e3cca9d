package dropboxsign

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Disconnect ends the app's connection to the account, for good: the user
// clicked "Disconnect Dropbox Sign", or deleted their account. The store
// replaces the account's tokens with a disconnection mark, which holds the
// key and a time and no token material ([Store.Disconnect]), and no
// replica's save can undo. When Disconnect returns nil:
//   - this process has stopped using the grant: every call for the account
//     fails with a [*DisconnectedError] (errors.Is [ErrDisconnected];
//     [Classify] says Reauthorize), and a refresh under way publishes
//     nothing;
//   - every other replica stops within its watch's bound: at once where the
//     store pushes changes, within [WithWatchPoll] when the push is down,
//     and at its next read of the store in any case (its next refresh, or a
//     401), including one whose refresh is under way (its save meets the
//     mark);
//   - no replica writes the grant back: not a refresh that ends later, not
//     a save retried, not a replica that starts, not one that finds the
//     store empty (a disconnection is not data loss; see [RestoreHorizon]);
//   - the store holds none of the account's tokens.
//
// Dropbox Sign has no endpoint to revoke a grant: the access token the app
// last had stays valid there until it expires, unused, and the user can
// remove the app in Dropbox Sign's settings. A later [Accounts.Login]
// connects the account again, on every replica within the same bound.
//
// Disconnect is idempotent: nil for an account already disconnected, or
// never connected (it then records the mark anyway, so that a replica that
// holds a token it has not yet stored cannot bring it back). It refuses an
// invalid key as Login does (Misconfigured) and returns an error, never
// nil, when the store cannot say that the mark is recorded (this process
// then reads the store again at the account's next call, and the app
// should try again).
//
// The mark keeps the account's key, which may be personal data: erase it
// with [Accounts.Forget] once it is [ForgetAfter] old.
func (a *Accounts) Disconnect(ctx context.Context, account string) error {
	if !a.cfg.enter() {
		return ErrShutdown
	}
	defer a.cfg.leave()
	if err := a.checkCall(account); err != nil {
		return err
	}
	// One at a time with the account's logins and their saves, and with
	// its runs' calls of the WithOnRefresh function: none of them can land
	// after the cut below and bring the grant back here.
	mu := a.cfg.loginLock(account)
	mu.Lock()
	defer mu.Unlock()
	s := a.lookup(account)
	now := a.cfg.opts.now()
	d := &DisconnectedError{Key: account, Since: now}
	if s != nil {
		s.cut(d)
	}
	// Bounded as every store call is: the login lock is held meanwhile.
	// A call abandoned at its deadline may still land later: until it has
	// returned, the account's logins wait for it (see awaitDisconnects),
	// so that it never lands over a login that has said it succeeded.
	callCtx, cancel := context.WithTimeout(ctx, a.cfg.opts.timeout)
	defer cancel()
	ended := a.cfg.disconnecting.begin(account)
	_, err := callOut(callCtx, "Store.Disconnect", func() (struct{}, error) {
		defer ended()
		return struct{}{}, a.cfg.opts.store.Disconnect(callCtx, account)
	}, nil)
	if err == nil {
		// Again, now that the mark is there: a source made meanwhile (a
		// call that came), or a run started from the first cut (the
		// store's news of another change cut its pause short), may hold
		// the token they read before the mark. The mark stops every read
		// from now on.
		if s = a.lookup(account); s != nil {
			s.cut(d)
		}
	} else {
		if s != nil {
			s.uncut() // not known to be disconnected: the store decides at the next call
		}
		return &storeError{text: fmt.Sprintf("dropboxsign: store: disconnect %q: %s (the account may still be connected: try again)",
			account, newRedactor(a.cfg.clientSecret()).textN(err.Error(), 4*maxTextRunes)), err: err}
	}
	a.cfg.emit(ctx, account, Event{Kind: EventDisconnected, Op: "disconnect", Err: &DisconnectedError{Key: account, Since: now}})
	return nil
}

// checkCall returns why a call for account cannot be made, or nil.
func (a *Accounts) checkCall(account string) error {
	if a.cfg.opts.store == nil {
		return errNoStore
	}
	return checkAccountKey(account)
}

// cut makes s disconnected at once, for Disconnect: a run under way
// publishes nothing over it (see publish).
func (s *TokenSource) cut(d *DisconnectedError) {
	now := s.cfg.opts.now()
	for {
		cur := s.state.Load()
		next := cur.refused(d, "", now, true)
		next.cut = true
		if s.state.CompareAndSwap(cur, next) {
			return
		}
	}
}

// uncut undoes cut when the store did not record the disconnection: the
// next call reads the store.
func (s *TokenSource) uncut() {
	for {
		cur := s.state.Load()
		if !cur.cut {
			return
		}
		next := &state{expires: true, recheck: true, tr: healthy}
		if s.state.CompareAndSwap(cur, next) {
			return
		}
	}
}

// Forget erases the account's disconnection mark from the store, if it is
// at least [ForgetAfter] old: from then on the store holds nothing of the
// account, not even its key. Earlier, a replica could still hold a token
// obtained before the disconnection, and the mark is what keeps it from
// storing it back into what would look like a store that lost its data; so
// Forget returns an error, erasing nothing, for a younger mark (its text
// says when to try again). It returns nil for an account whose store holds
// nothing, and an error for one that holds a token or a refusal mark (a
// connected or refused account is disconnected first).
//
// Run it for every mark listed by [Accounts.Disconnected] once a day, say,
// to keep no personal data longer than needed.
func (a *Accounts) Forget(ctx context.Context, account string) error {
	if !a.cfg.enter() {
		return ErrShutdown
	}
	defer a.cfg.leave()
	if err := a.checkCall(account); err != nil {
		return err
	}
	before := a.cfg.opts.now().Add(-ForgetAfter)
	ctx, cancel := context.WithTimeout(ctx, a.cfg.opts.timeout)
	defer cancel()
	_, err := callOut(ctx, "Store.Forget", func() (struct{}, error) {
		return struct{}{}, a.cfg.opts.store.Forget(ctx, account, before)
	}, nil)
	if errors.Is(err, ErrConflict) {
		return fmt.Errorf("dropboxsign: forget %q: the store holds a token, a refusal, or a disconnection less than %s old: nothing erased (disconnect first; forget a mark once it is %s old)",
			account, ForgetAfter, ForgetAfter)
	}
	if err != nil {
		return fmt.Errorf("dropboxsign: store: forget %q: %w", account, err)
	}
	return nil
}

// Disconnected yields the accounts the app has disconnected whose marks
// the store still holds (see [Accounts.Forget]), as [Accounts.Refused]
// yields the refused ones; it needs a store that is a [Lister].
func (a *Accounts) Disconnected(ctx context.Context) iter.Seq2[*DisconnectedError, error] {
	return listing(a, func(l Lister) iter.Seq2[*DisconnectedError, error] { return l.Disconnected(ctx) })
}

// ConnectionStatus is what a [Connection] says of an account.
type ConnectionStatus int

const (
	// StatusUnknown: the store could not be read (Connection.Err says
	// why). The account may be in any state.
	StatusUnknown ConnectionStatus = iota
	// StatusNeverConnected: the store holds nothing for the account: it
	// was never connected, or it was disconnected and forgotten.
	StatusNeverConnected
	// StatusConnected: the store holds a token for the account.
	StatusConnected
	// StatusDisconnected: the app disconnected the account
	// ([Accounts.Disconnect]).
	StatusDisconnected
	// StatusRefused: Dropbox Sign refused the account's grant: the user
	// must connect it again.
	StatusRefused
)

var connectionStatusNames = [...]string{"unknown", "never connected", "connected", "disconnected", "refused"}

// String returns the status's name: "unknown", "never connected",
// "connected", "disconnected" or "refused".
func (c ConnectionStatus) String() string {
	if c >= 0 && int(c) < len(connectionStatusNames) {
		return connectionStatusNames[c]
	}
	return "unknown"
}

// A Connection is an account's connection as the store records it, for
// the app's settings page ("Connected to Dropbox Sign · Disconnect").
type Connection struct {
	Account string
	Status  ConnectionStatus
	// Since is, for StatusDisconnected and StatusRefused, when it was
	// recorded. Stores do not record when an account connected: for
	// StatusConnected it is zero.
	Since time.Time
	// Expiry is, for StatusConnected, when the stored access token
	// expires (replicas refresh it before then); zero if it does not say.
	Expiry time.Time
	// Err is, for StatusRefused, the *RefusedError; for StatusUnknown,
	// why the store could not be read.
	Err error
}

// Connection reads the account's connection from the store (one Load; no
// token request). For an invalid key it returns StatusUnknown with an error
// for which [Classify] says Misconfigured.
func (a *Accounts) Connection(ctx context.Context, account string) Connection {
	c := Connection{Account: account}
	if !a.cfg.enter() {
		c.Err = ErrShutdown
		return c
	}
	defer a.cfg.leave()
	if c.Err = a.checkCall(account); c.Err != nil {
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.opts.timeout)
	defer cancel()
	tok, err := callOut(ctx, "Store.Load", func() (*oauth2.Token, error) {
		return a.cfg.opts.store.Load(ctx, account)
	}, nil)
	var refused *RefusedError
	var disconnected *DisconnectedError
	switch {
	case errors.Is(err, ErrNotFound):
		c.Status = StatusNeverConnected
	case errors.As(err, &disconnected):
		c.Status, c.Since = StatusDisconnected, disconnected.Since
	case errors.As(err, &refused):
		c.Status, c.Since, c.Err = StatusRefused, refused.Since, refused
	case err != nil:
		c.Err = fmt.Errorf("dropboxsign: store: load %q: %w", account, err)
	case tok == nil:
		c.Err = fmt.Errorf("dropboxsign: store: load %q: Store.Load returned neither a token nor an error", account)
	default:
		t, _ := readSpendMark(tok)
		c.Status, c.Expiry = StatusConnected, t.Expiry
	}
	return c
}

// clientSecret is the configuration's client secret, or "" without one.
func (cfg *sourceConfig) clientSecret() string {
	if cfg.client == nil {
		return ""
	}
	return cfg.client.clientSecret
}

// inflight counts, per account, the Store.Disconnect calls that have not
// returned.
type inflight struct {
	mu    sync.Mutex
	calls map[string]*inflightCalls
}

type inflightCalls struct {
	n    int
	done chan struct{} // closed when n drops to 0
}

// begin records a call for account; the function it returns records its
// end, once.
func (f *inflight) begin(account string) (ended func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]*inflightCalls{}
	}
	c := f.calls[account]
	if c == nil {
		c = &inflightCalls{done: make(chan struct{})}
		f.calls[account] = c
	}
	c.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if c.n--; c.n == 0 {
				close(c.done)
				delete(f.calls, account)
			}
		})
	}
}

// wait returns once no call for account is in flight, or ctx's error.
func (f *inflight) wait(ctx context.Context, account string) error {
	f.mu.Lock()
	c := f.calls[account]
	f.mu.Unlock()
	if c == nil {
		return nil
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return errDisconnectInFlight
	}
}

// errDisconnectInFlight is a login's save put off because a Disconnect of
// the account, abandoned at its deadline, may still land: the login is
// saved once it has (or it gives way to the disconnection, if that landed
// after the login; see writeLogin).
var errDisconnectInFlight = errors.New("dropboxsign: a disconnection of the account is still under way in the store (its call overran its deadline): the login is saved once it ends")
