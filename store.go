package dropboxsign

import (
	"context"
	"errors"

	"golang.org/x/oauth2"
)

// ErrNotFound is returned by [Store.Load] when no token is stored under the key.
var ErrNotFound = errors.New("dropboxsign: no token stored under this key")

// ErrConflict is returned by [Store.Save] when the stored token is no longer
// the one the caller read: another process wrote in between.
var ErrConflict = errors.New("dropboxsign: the stored token changed meanwhile")

// A Store keeps tokens, one per key (an account of your choosing), where
// several token sources, in one process or many, can share them. With
// [WithStore], a [TokenSource] loads its token from the store, writes every
// new token to it before handing the token out, and refreshes under the
// store's lock, so that across a fleet one replica refreshes each account
// per expiry and no replica presents a refresh token that another one has
// already spent.
//
// Implementations must be safe for concurrent use by many goroutines and
// processes. [FileStore] is one for a single machine; the redisstore module
// has one for many.
type Store interface {
	// Load returns the token stored under key, or ErrNotFound. The token
	// must be the whole of what the last Save stored (AccessToken,
	// TokenType, RefreshToken, Expiry, ExpiresIn), as of one moment:
	// never half of one save and half of another.
	Load(ctx context.Context, key string) (*oauth2.Token, error)

	// Save stores t under key if the token stored there is still prev:
	// the same AccessToken and RefreshToken, or, when prev is nil,
	// nothing. Otherwise it stores nothing and returns ErrConflict. The
	// comparison and the write must be atomic with respect to every
	// other Save of the key. When Save returns nil, a Load from any
	// process returns t (or a later token), and t is as durable as the
	// store is configured to make it (FileStore: fsync'd; Redis: see its
	// appendonly and appendfsync settings). An error other than
	// ErrConflict (a timeout, say) may come after the write happened.
	Save(ctx context.Context, key string, prev, t *oauth2.Token) error

	// Lock takes key's refresh lock, waiting until it is free or ctx ends
	// (then it returns ctx's error). While the lock is held no other
	// caller, in any process, gets it. The lock is a lease: if its holder
	// dies, it lapses after a bounded time (at once for a FileStore, the
	// lease's TTL for Redis), and the store keeps it alive, renewing as
	// needed, until unlock is called. A holder cut off from the store for
	// longer than the lease loses it without being told. unlock releases
	// it on a best-effort basis (if that fails, the lease still lapses);
	// calling it again does nothing. The lock serializes refreshes; Save's
	// comparison, not the lock, protects the stored token.
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

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
// another process has already refreshed it, or else refreshes with the
// stored refresh token, saves the new token with Save(prev = the token it
// read), and only then hands it out. Between refreshes no store call is
// made: callers are served from memory.
//
// Store failures are refresh failures: the source keeps serving a usable
// token, backs off, and reports the error, wrapped, when it has no usable
// token. If the save after a successful refresh fails, the new token is kept
// and used, and reported as a [*SaveError], exactly as for [WithOnRefresh]
// (which, if also given, is called after the store's Save).
func WithStore(store Store, key string) Option {
	return func(o *options) { o.store, o.storeKey = store, key }
}
