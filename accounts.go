package dropboxsign

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"weak"

	"golang.org/x/oauth2"
)

// Accounts holds the tokens of many Dropbox Sign accounts, for a platform
// app that acts for its users: one [TokenSource] per connected account,
// made when the account is first used and loaded from the app's [Store],
// which is shared by every replica. Create it with [NewAccounts] once, at
// start-up, and keep it for the process's life; it is safe for concurrent
// use by any number of goroutines.
//
// An account is a key of the app's choosing (its own user ID, say). After
// the user's consent, [Accounts.Login] exchanges the code and stores the
// token under the key; from then on [Accounts.Client] (or
// [Accounts.TokenSource]) serves that account's requests on every replica,
// refreshing it once per expiry for the whole fleet. When Dropbox Sign
// refuses the account's grant for good, every call for it fails with a
// [*RefusedError] (on each replica from its next read of the store: see
// RefusedError), and the account is listed by [Accounts.Refused] until the
// user logs in again. When the user disconnects, [Accounts.Disconnect]
// forgets the grant on every replica (see docs/connections.md), and
// [Accounts.Connection] tells the app's settings page where an account
// stands. With a store that is a [Watcher], each replica learns of
// disconnections and logins made elsewhere as they happen: NewAccounts
// starts one goroutine that watches the store, until Shutdown.
//
// Memory is bounded: at most [WithMaxAccounts] accounts are held (10,000 by
// default, about 470 bytes each, their tokens included), however many
// goroutines bring new accounts at once. To hold one more, the least
// recently used are let go, and one that is used again costs a store read;
// only accounts that cannot be let go yet (see WithMaxAccounts) take the
// count beyond the maximum. No goroutine and no timer is kept per account:
// work happens when callers come.
type Accounts struct {
	cfg    *sourceConfig
	max    int
	seed   maphash.Seed
	shards [accountShards]accountShard
	held   atomic.Int64 // accounts held, in all shards
	evict  sync.Mutex   // one eviction at a time
	// exiting serializes Shutdowns' last saves.
	exiting sync.Mutex
	// stopWatch ends the watch of the store's changes (see
	// accounts_watch.go), and watchDone is closed once it has; nil if the
	// store is no Watcher.
	stopWatch context.CancelFunc
	watchDone chan struct{}
}

const accountShards = 64

// accountShard holds the sources of the keys that hash to it: held ones,
// and ones let go that something may still reference (a client's request
// in flight, a *TokenSource the app kept), so that an account never has two
// sources in one process.
type accountShard struct {
	mu   sync.RWMutex
	held map[string]*TokenSource
	gone map[string]weak.Pointer[TokenSource]
	_    [64]byte // keep shards' locks on cache lines of their own
}

// DefaultMaxAccounts is how many accounts an Accounts holds in memory at
// once unless [WithMaxAccounts] says otherwise.
const DefaultMaxAccounts = 10000

// WithMaxAccounts sets how many accounts an [Accounts] holds in memory at
// once (default [DefaultMaxAccounts]; n below 1 leaves it). A new account
// takes its place before it is held: with n held, the least recently used
// are let go first, down to 15/16 of n, so that choosing them is paid once
// per n/16 new accounts, and they are reloaded from the store when used
// again. So the count of accounts held ([AccountsStats].Held) is at most n
// at every moment, whatever the number of goroutines bringing new
// accounts, but for accounts that letting go could lose a token of: an
// account in the middle of a load, a refresh or a save, or whose newest
// token is not yet stored, is never let go. When every held account is
// such, a new one is held beyond n rather than wait; and one let go while a
// caller still used it is held again if its newest token then fails to be
// stored. So the count passes n only when n accounts are busy at once or
// saves fail, and the first new account to come once they are idle brings
// it back under n. Token sources made by [NewTokenSource] ignore it.
func WithMaxAccounts(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxAccounts = n
		}
	}
}

var errNoStore = &configError{"dropboxsign: NewAccounts needs a Store: it is where the app keeps its connected accounts"}

// MaxAccountKeyLen is the longest account key, in bytes. With "valid UTF-8
// without NUL", it makes every key one that every store can hold
// (PostgreSQL's text and its index entries, file names once escaped).
const MaxAccountKeyLen = 1024

// checkAccountKey refuses a key no account may have. The empty key above
// all: an empty user ID (a session that lost it, say) must not become one
// account that all such requests share.
func checkAccountKey(key string) error {
	switch {
	case key == "":
		return errNoAccountKey
	case len(key) > MaxAccountKeyLen:
		return configErrorf("account key of %d bytes: at most %d", len(key), MaxAccountKeyLen)
	case !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0:
		return configErrorf("account key %q is not valid UTF-8 without NUL bytes", key)
	}
	return nil
}

var errNoAccountKey = &configError{"dropboxsign: empty account key: each account needs a key of its own, such as your user's ID"}

// NewAccounts returns an Accounts that refreshes tokens with c's client
// credentials at c.Endpoint.TokenURL and keeps them in store, under each
// account's key. Every option applies to every account's source; store
// replaces any [WithStore]. ctx supplies values only, as for
// [NewTokenSource].
//
// A nil store, or a problem with c, is reported by the first call that
// needs it, as an error for which [Classify] says Misconfigured.
func NewAccounts(ctx context.Context, c *oauth2.Config, store Store, opts ...Option) *Accounts {
	cfg := newSourceConfig(ctx, c, opts)
	cfg.opts.store, cfg.opts.storeKey = store, ""
	if store == nil {
		cfg.configErr = errNoStore
	}
	a := &Accounts{cfg: cfg, max: cfg.opts.maxAccounts, seed: maphash.MakeSeed()}
	cfg.pin = a.pin
	for i := range a.shards {
		a.shards[i].held = map[string]*TokenSource{}
		a.shards[i].gone = map[string]weak.Pointer[TokenSource]{}
	}
	if store != nil {
		a.watch()
	}
	return a
}

// TokenSource returns the account's token source: the same one to every
// caller for as long as anything holds it, made on first use without I/O
// (its first call loads the stored token). Its calls fail with a
// [*RefusedError] for an account whose grant Dropbox Sign refused, a
// [*DisconnectedError] for one the app disconnected, and an error matching
// [ErrNotConnected] for one that has nothing stored; [Classify] says
// Reauthorize for all three.
//
// An account key is the app's identifier for the user: not empty, valid
// UTF-8 without NUL bytes, at most [MaxAccountKeyLen] bytes, so that every
// store can hold it. For any other key, the source's calls fail, as Login
// does, with an error for which Classify says Misconfigured, and touch
// neither the store nor Dropbox Sign.
func (a *Accounts) TokenSource(account string) *TokenSource {
	sh := &a.shards[maphash.String(a.seed, account)%accountShards]
	sh.mu.RLock()
	s := sh.held[account]
	sh.mu.RUnlock()
	if s != nil {
		return s
	}
	return a.hold(sh, account)
}

// hold returns the account's source, held from now on: the one let go
// earlier if something still references it, else a new one.
func (a *Accounts) hold(sh *accountShard, account string) *TokenSource {
	if err := checkAccountKey(account); err != nil {
		return a.refusedKey(err)
	}
	// The account's place is taken before it is held, and before the
	// shard's lock (letting accounts go takes the shards' locks): so no
	// number of callers taking new accounts at once makes the count pass
	// the maximum.
	a.takePlace()
	sh.mu.Lock()
	s := sh.held[account]
	if s != nil { // another caller was first
		sh.mu.Unlock()
		a.held.Add(-1)
		return s
	}
	if wp, ok := sh.gone[account]; ok {
		s = wp.Value()
		delete(sh.gone, account)
	}
	if s == nil {
		s = a.cfg.newSource(account, nil)
	}
	s.used.Store(a.cfg.opts.now().Unix())
	sh.held[account] = s
	sh.mu.Unlock()
	return s
}

// takePlace counts one more account held. With the maximum held already,
// it first lets the least recently used go; if none can be let go (each
// has work under way or a token not yet stored), the account is held
// beyond the maximum rather than wait for one.
func (a *Accounts) takePlace() {
	if a.freePlace() {
		return
	}
	// One eviction at a time: callers that come while one is under way
	// wait for it, then take the places it freed; none passes the maximum
	// meanwhile.
	a.evict.Lock()
	defer a.evict.Unlock()
	if !a.freePlace() && !a.letGo() {
		a.held.Add(1)
	}
}

// freePlace counts one more account held if fewer than the maximum are.
func (a *Accounts) freePlace() bool {
	for h := a.held.Load(); h < int64(a.max); h = a.held.Load() {
		if a.held.CompareAndSwap(h, h+1) {
			return true
		}
	}
	return false
}

// letGo, called by takePlace with a.evict locked and the maximum held,
// lets the least recently used accounts go, down to 15/16 of the maximum,
// so that the cost of choosing them (a visit of every held account) is
// spread over many new accounts; the first place it frees is the caller's.
// It skips accounts with work under way or a token not yet stored: letting
// them go could lose it. It reports whether it freed a place.
func (a *Accounts) letGo() bool {
	type candidate struct {
		used  int64
		key   string
		shard *accountShard
	}
	var all []candidate
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.RLock()
		for key, s := range sh.held {
			if idle(s) {
				all = append(all, candidate{s.used.Load(), key, sh})
			}
		}
		sh.mu.RUnlock()
	}
	if a.freePlace() { // accounts went meanwhile (callers that found theirs held)
		return true
	}
	// What goes beyond 15/16 of the maximum, counting the caller's place.
	excess := int(a.held.Load()) + 1 - (a.max - a.max/16)
	slices.SortFunc(all, func(x, y candidate) int { return cmp.Compare(x.used, y.used) })
	freed := 0
	for _, c := range all {
		if freed >= excess {
			break
		}
		c.shard.mu.Lock()
		if s := c.shard.held[c.key]; s != nil && idle(s) {
			delete(c.shard.held, c.key)
			c.shard.gone[c.key] = weak.Make(s)
			if freed++; freed > 1 { // the first is the caller's place
				a.held.Add(-1)
			}
			runtime.AddCleanup(s, forget, goneEntry{c.shard, c.key})
		}
		c.shard.mu.Unlock()
	}
	return freed > 0
}

// idle reports whether s may be let go: no run under way (a load, a
// refresh, a save) and no token awaiting a save.
func idle(s *TokenSource) bool {
	return s.flying.Load() == nil && s.state.Load().tr.saveErr == nil
}

// refusedKey returns a source, held by nobody, whose every call fails
// with err and reads or writes nothing: the source of a key no account may
// have (such keys are rare, and never on the hot path: they are never
// held).
func (a *Accounts) refusedKey(err error) *TokenSource {
	cfg := &sourceConfig{ctx: a.cfg.ctx, opts: a.cfg.opts, events: a.cfg.events, configErr: err}
	cfg.opts.store = nil
	cfg.closed.Store(a.cfg.closed.Load())
	return cfg.newSource("", nil)
}

// pin holds s again if it was let go: it now has a token not yet stored,
// which would be lost if s were collected (a caller kept s, or a request
// through Client was under way, when it was let go).
func (a *Accounts) pin(s *TokenSource) {
	sh := &a.shards[maphash.String(a.seed, s.key)%accountShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.held[s.key] == s {
		return
	}
	if wp, ok := sh.gone[s.key]; ok && wp.Value() == s {
		delete(sh.gone, s.key)
		sh.held[s.key] = s
		a.held.Add(1)
	}
}

type goneEntry struct {
	shard *accountShard
	key   string
}

// forget removes a let-go source's entry once the source is collected
// (unless the key has a live one again).
func forget(g goneEntry) {
	g.shard.mu.Lock()
	if wp, ok := g.shard.gone[g.key]; ok && wp.Value() == nil {
		delete(g.shard.gone, g.key)
		if len(g.shard.gone) == 0 {
			// Go maps never shrink: one that held every source let go
			// between two collections would keep its size for good.
			g.shard.gone = map[string]weak.Pointer[TokenSource]{}
		}
	}
	g.shard.mu.Unlock()
}

// Client returns an HTTP client that authorizes each request with the
// account's token, as the client of [NewClient] does: a request's context
// bounds its wait for a refresh; a 401 marks the token bad and replays the
// request once with a new one; redirects carry the token only where
// net/http would carry an Authorization header. The client keeps working
// however long it is kept, across the account being let go and reloaded;
// it is cheap enough to make per request, too. Requests go out through the
// Transport of the client in the NewAccounts context (the
// [oauth2.HTTPClient] key), else [http.DefaultTransport].
func (a *Accounts) Client(account string) *http.Client {
	hc := contextClient(a.cfg.ctx)
	return &http.Client{
		Transport:     &accountTransport{accounts: a, account: account, base: hc.Transport},
		CheckRedirect: hc.CheckRedirect,
		Jar:           hc.Jar,
		Timeout:       hc.Timeout,
	}
}

// accountTransport finds the account's source for each request, so that a
// client outlives the account's stay in memory.
type accountTransport struct {
	accounts *Accounts
	account  string
	base     http.RoundTripper
}

func (t *accountTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return roundTrip(t.base, t.accounts.TokenSource(t.account), req)
}

// AccountsStats is what an [Accounts] holds, as of one moment.
type AccountsStats struct {
	Held int // accounts held in memory
	// Refused counts the held accounts whose grant this process knows to
	// be refused: they await a new authorization. Accounts.Refused lists
	// every one the store holds.
	Refused int
	// Disconnected counts the held accounts this process knows the app
	// disconnected. Accounts.Disconnected lists every one the store holds.
	Disconnected int
	// DroppedEvents counts the events observers did not get because they
	// had fallen more than 4096 behind.
	DroppedEvents int64
}

// Stats returns what a holds now. It visits every held account: call it
// for metrics, every few seconds, not per request. It still reports after
// [Accounts.Shutdown], for the metrics of a process that is ending.
func (a *Accounts) Stats() AccountsStats {
	st := AccountsStats{Held: int(a.held.Load())}
	if a.cfg.events != nil {
		st.DroppedEvents = a.cfg.events.dropped.Load()
	}
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.RLock()
		for _, s := range sh.held {
			var refused *RefusedError
			err := s.state.Load().tr.err
			if errors.As(err, &refused) {
				st.Refused++
			} else if errors.Is(err, ErrDisconnected) {
				st.Disconnected++
			}
		}
		sh.mu.RUnlock()
	}
	return st
}

// Shutdown stops the watch of the store's changes, and new refreshes and
// logins, and waits until those under way have ended and their tokens are
// stored, or until ctx ends (it then returns ctx's error). A token whose save failed earlier and awaits its
// retry is saved once more, at once: if that fails too, Shutdown returns
// an error naming each such account (a [*SaveError] for each), since the
// token, whose refresh token may be the only valid one, dies with the
// process. Every call after Shutdown begins, of the Accounts and of its
// sources and clients, fails with [ErrShutdown] and touches neither the
// store nor Dropbox Sign, but for [Accounts.Stats], which still reports,
// and Shutdown itself: called again (after its ctx ended, say), it waits
// again and retries the saves still owed. Call it once the server
// has stopped taking requests, so that a deploy's SIGTERM never loses a
// refresh token that Dropbox Sign has just rotated:
//
//	srv.Shutdown(ctx)      // http.Server: no new requests, wait for those in flight
//	accounts.Shutdown(ctx) // then: no new refreshes, wait for those in flight
func (a *Accounts) Shutdown(ctx context.Context) error {
	if a.stopWatch != nil {
		a.stopWatch()
	}
	if err := a.cfg.shutdown(ctx); err != nil {
		return err
	}
	// Two Shutdowns at once must not retry one source's save twice at
	// once (a WithOnRefresh function is called one call at a time).
	a.exiting.Lock()
	defer a.exiting.Unlock()
	var errs []error
	for i := range a.shards {
		sh := &a.shards[i]
		var owed []*TokenSource
		sh.mu.RLock()
		for _, s := range sh.held {
			if s.state.Load().tr.saveErr != nil {
				owed = append(owed, s)
			}
		}
		sh.mu.RUnlock()
		for _, s := range owed {
			if err := s.saveBeforeExit(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Last, so that a Watch that ignores its context delays no save.
	if err := a.waitWatch(ctx); err != nil {
		errs = append(errs, fmt.Errorf("dropboxsign: the store's Watch has not returned: %w", err))
	}
	return errors.Join(errs...)
}

// Refused yields the accounts whose grant Dropbox Sign has refused, which
// await a new authorization (see [Accounts.Login]), as recorded in the
// store: the app's page of accounts to reconnect. It needs a store that is
// a [Lister]; with another, it yields an error for which [Classify] says
// Misconfigured. A listing walked after [Accounts.Shutdown] has begun
// yields [ErrShutdown] alone and reads nothing.
func (a *Accounts) Refused(ctx context.Context) iter.Seq2[*RefusedError, error] {
	return listing(a, func(l Lister) iter.Seq2[*RefusedError, error] { return l.Refused(ctx) })
}

// listing yields what list yields from a's store, or, before reading
// anything, why it cannot: Shutdown has begun, no store, or a store that is
// not a Lister.
func listing[T any](a *Accounts, list func(Lister) iter.Seq2[T, error]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		l, ok := a.cfg.opts.store.(Lister)
		switch {
		case a.cfg.closed.Load():
			yield(zero, ErrShutdown)
		case a.cfg.opts.store == nil:
			yield(zero, errNoStore)
		case !ok:
			yield(zero, configErrorf("the store %T cannot list its accounts (it is not a Lister)", a.cfg.opts.store))
		default:
			for v, err := range list(l) {
				if !yield(v, err) {
					return
				}
			}
		}
	}
}
