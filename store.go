package dropboxsign

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"golang.org/x/oauth2"
)

// ErrNotFound is returned by [Store.Load] when no token is stored under the key.
var ErrNotFound = errors.New("dropboxsign: no token stored under this key")

// ErrConflict is returned by [Store.Save] when the stored token is no longer
// the one the caller read: another process wrote in between.
var ErrConflict = errors.New("dropboxsign: the stored token changed meanwhile")

// A Store keeps tokens, one per key (an account of your choosing), where
// several token sources, in one process or many, can share them. With
// [WithStore] or [NewAccounts], a [TokenSource] loads its token from the
// store, writes every new token to it before handing the token out (if the
// write fails, the token is handed out with a [*SaveError] and written
// later), and refreshes under the store's lock, so that across a fleet one
// replica refreshes each account per expiry and no replica presents a
// refresh token that another one has already spent, as long as no lock
// holder outlives its lease, the store keeps every write it acknowledged,
// each replica that obtains a new token stores it within two minutes, and
// every replica runs a version that marks the refresh token it spends
// (docs/replicas.md says what happens otherwise). When Dropbox Sign refuses
// an account's grant for good, the source marks the account in the store,
// so that every replica learns it at its next read of the store, without a
// token request of its own. When the app disconnects an account
// ([Accounts.Disconnect]), the store replaces whatever it holds with a
// disconnection mark, which no replica's save can undo: only a new login
// (Replace) can.
//
// A key thus holds nothing, a token, a refusal mark or a disconnection
// mark. Marks hold the key and a time, never token material.
//
// Implementations must be safe for concurrent use by many goroutines and
// processes, and should honour ctx (a call that overstays its deadline is
// abandoned). [FileStore] is one for a single machine; the redisstore and
// pgstore modules have ones for many. Package internal/storetest of this
// repository checks the contract, for stores written elsewhere too;
// docs/stores.md says what each method must do and why.
type Store interface {
	// Load returns the token stored under key; ErrNotFound if there is
	// none; a *RefusedError if the key holds a refusal mark; a
	// *DisconnectedError if it holds a disconnection mark. The token
	// must be the whole of what the last Save stored (AccessToken,
	// TokenType, RefreshToken, Expiry, ExpiresIn), as of one moment:
	// never half of one save and half of another.
	Load(ctx context.Context, key string) (*oauth2.Token, error)

	// Save stores t under key if the token stored there is still prev:
	// the same AccessToken and RefreshToken, or, when prev is nil,
	// nothing or a refusal mark. Otherwise (a disconnection mark above
	// all, whatever prev) it stores nothing and returns ErrConflict. The
	// comparison and the write must be atomic with respect to every other
	// write of the key. When Save returns nil, a Load from any process
	// returns t (or a later token), and t is as durable as the store is
	// configured to make it (FileStore: fsync'd; Redis: see its
	// appendonly and appendfsync settings). An error other than
	// ErrConflict (a timeout, say) may come after the write happened.
	Save(ctx context.Context, key string, prev, t *oauth2.Token) error

	// Replace stores t, a new login's token, under key, replacing
	// anything there without comparing: a token, a refusal or
	// disconnection mark, or a record the store cannot read (corrupt, or
	// sealed with an encryption key since rotated out), which a new login
	// thus repairs. It then tells the store's watchers, if it is a
	// [Watcher], that key changed. Durability is as for Save.
	Replace(ctx context.Context, key string, t *oauth2.Token) error

	// Lock takes key's refresh lock, waiting until it is free or ctx ends
	// (then it returns ctx's error). While the lock is held no other
	// caller, in any process, gets it. The lock is a lease: if its holder
	// dies, it lapses after a bounded time (at once for a FileStore, the
	// lease's TTL for Redis), and the store keeps it alive, renewing as
	// needed, until unlock is called. A holder cut off from the store for
	// longer than the lease loses it without being told. unlock releases
	// it on a best-effort basis, promptly (if that fails, the lease still
	// lapses); calling it again does nothing. The lock serializes
	// refreshes; Save's comparison, not the lock, protects the stored
	// token.
	Lock(ctx context.Context, key string) (unlock func(), err error)

	// MarkRefused replaces the token stored under key with a refusal
	// mark, recording when (the store's clock), if the stored token is
	// still refused (the same AccessToken and RefreshToken); otherwise,
	// or if nothing or a mark is stored, it changes nothing and returns
	// ErrConflict. The comparison and the write are atomic as for Save.
	// From then on Load returns a *RefusedError for key, until a Save
	// with prev nil, or a Replace, replaces the mark.
	MarkRefused(ctx context.Context, key string, refused *oauth2.Token) error

	// Disconnect replaces whatever key holds (a token, a refusal mark, a
	// record the store cannot read, or nothing) with a disconnection
	// mark, recording when (the store's clock); if key holds one already,
	// it keeps it as it is. It holds no token material: nothing of the
	// grant is left in the store. The write is atomic as for Save and as
	// durable, and then the store tells its watchers, if it is a
	// [Watcher], that key changed; only then does Disconnect return nil.
	// From then on Load returns a *DisconnectedError for key, and Save
	// and MarkRefused return ErrConflict, whatever they compare with, so
	// that no replica writes the grant back, until Replace (a new login)
	// writes a token or Forget erases the mark.
	Disconnect(ctx context.Context, key string) error

	// Forget erases key's disconnection mark, leaving nothing under key,
	// if the mark was recorded before the time given (compared with the
	// store's clock); it returns nil if key holds nothing, and
	// ErrConflict, changing nothing, if it holds anything else (a token, a
	// refusal mark, a later disconnection mark). The comparison and the
	// write are atomic as for Save. [Accounts.Forget] says when erasing a
	// mark is safe.
	Forget(ctx context.Context, key string, before time.Time) error
}

// A Lister is a Store that can list what it holds: for operators, and for
// the app's page of accounts to reconnect. FileStore and the stores of the
// redisstore and pgstore modules are Listers.
type Lister interface {
	Store

	// Keys yields every key that holds a token or a mark, in no
	// particular order, each once; an error ends the sequence. A key
	// written or removed while the listing runs may or may not be
	// yielded. Something the store finds where it keeps its records but
	// does not recognize as one (another application's data under its
	// prefix, say) is neither a key nor an error: the store skips it, goes
	// on, and may report it by its own means (redisstore:
	// Options.Skipped).
	Keys(ctx context.Context) iter.Seq2[string, error]

	// Refused yields a *RefusedError for every key that holds a refusal
	// mark, in no particular order, each once; an error ends the
	// sequence. It skips what Keys skips.
	Refused(ctx context.Context) iter.Seq2[*RefusedError, error]

	// Disconnected yields a *DisconnectedError for every key that holds
	// a disconnection mark, in no particular order, each once; an error
	// ends the sequence. It skips what Keys skips.
	Disconnected(ctx context.Context) iter.Seq2[*DisconnectedError, error]
}

// A RefusedError reports that Dropbox Sign refused an account's grant for
// good (its user removed the app in Dropbox Sign, or the refresh token was
// spent), so that only a new authorization brings a token again:
// [Accounts.Login], or a Save of a new token. [Classify] returns
// Reauthorize for it. It is not the app's own disconnection
// ([*DisconnectedError]).
//
// A Store's Load returns one for a key marked with MarkRefused. Each
// replica reads the mark at its next read of the store (its next refresh,
// or after the API refuses the token it holds); from then on every call for
// the account there fails with one at once, without a token request, until
// a new token replaces the mark: a new login's, or that of a replica that
// had failed to store it.
type RefusedError struct {
	Key   string    // the account
	Since time.Time // when the refusal was recorded
	// Err is the refusal itself (an *oauth2.RetrieveError, invalid_grant),
	// when this process received it; nil when read from a store.
	Err error
}

// Error says which account must be authorized again.
func (e *RefusedError) Error() string {
	s := fmt.Sprintf("dropboxsign: account %q must be authorized again: Dropbox Sign refused its grant", e.Key)
	if !e.Since.IsZero() {
		s += " (" + e.Since.UTC().Format(time.RFC3339) + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns Err.
func (e *RefusedError) Unwrap() error { return e.Err }

// WithStore makes the source keep its token in store under key, shared with
// every other source, in any process, that uses the same store and key.
//
// The store is the source of truth. Pass t = nil to [NewTokenSource] and the
// source loads the stored token. A t given anyway seeds an empty store (it
// is stored before it is handed out); if the store already holds a token,
// the stored one wins. So after a new login ([Exchange]), save the token to
// the store yourself, with Save(prev = what you read), as the
// dropboxsign-token CLI does, before sources read it.
//
// Around each refresh it takes the
// store's lock, re-reads the stored token, adopts it without any request if
// another process has already refreshed it, or else marks it as being spent
// (a Save), refreshes with the stored refresh token, saves the new token
// with Save(prev = the token it read), and only then hands it out. Between
// refreshes (and retries of a failed save) no store call is made: callers
// are served from memory.
//
// Store failures are refresh failures: the source keeps serving a usable
// token, backs off, and reports the error, wrapped, when it has no usable
// token. If the save after a successful refresh fails, the new token is kept
// and used, and reported as a [*SaveError], exactly as for [WithOnRefresh]
// (which, if also given, is called after the store's Save).
func WithStore(store Store, key string) Option {
	return func(o *options) { o.store, o.storeKey = store, key }
}
