// Package dropboxsign makes Dropbox Sign's OAuth 2.0 work with
// golang.org/x/oauth2.
//
// Dropbox Sign (formerly HelloSign) speaks its own dialect of OAuth 2.0:
// token requests carry JSON bodies, the code exchange needs the state, a
// refresh goes to the token URL with "refresh" in its query, and errors come
// in a nested envelope. x/oauth2's Config.Exchange and Config.TokenSource
// get each of these wrong. This package keeps the rest of x/oauth2: build an
// [oauth2.Config] with [Endpoint], send users to [oauth2.Config.AuthCodeURL],
// then call [Exchange] in place of Config.Exchange and [NewTokenSource] or
// [NewClient] in place of Config.TokenSource or Config.Client.
//
// # The token source
//
// A [TokenSource] holds one account's token and refreshes it by itself. A
// valid token costs an atomic load and a clock read. Ahead of expiry (the
// expiry window, five minutes by default) one background refresh replaces
// the token while callers keep using the current one; only a token about to
// expire makes callers wait, and concurrent callers then share one token
// request. Failed refreshes back off exponentially; while the current token
// is usable they never reach callers.
//
// Dropbox Sign may rotate the refresh token on each refresh, so every new
// token may carry the only valid refresh token. The source always refreshes
// with the newest one and hands each new token to the [WithOnRefresh]
// function before any caller sees it, so that it can be persisted; a failed
// save keeps the token in use, and [TokenSource.TokenContext] reports it as
// a [*SaveError] until a retry succeeds.
//
// The source works as a plain [oauth2.TokenSource]: it can be shared by any
// number of [oauth2.NewClient] and [oauth2.ReuseTokenSource] wrappers, which
// then share its refreshes too.
//
// Each grant is spent once per process, however many sources hold it:
// sources that present the same refresh token at once share one token
// request (golang.org/x/sync/singleflight), and for a minute after, one
// that presents it again gets the token it brought. So code that builds a
// client per request from a stored token (as much x/oauth2 code does) no
// longer spends the refresh token twice; [Exchange] and [Accounts.Login]
// exchange a code submitted twice once. The memory is bounded (4096
// grants) and holds no secret as a key; across processes, a [Store] is
// what shares tokens.
//
// # Errors
//
// An error answer from the token endpoint is an [*oauth2.RetrieveError], as
// x/oauth2 returns it (other failures wrap one), whose ErrorCode and
// ErrorDescription are filled from either of Dropbox Sign's error shapes;
// [ErrorRateLimit] reads its rate-limit headers and [Classify] tells a user
// who must re-authorize from a service that should try again later. A
// rate-limited refresh waits for the reset time; errors that retrying cannot
// fix are tried again at most every five minutes (with a store, the source
// reads the store again sooner, for a new login or an operator's repair,
// without a token request). No error text contains a
// secret the call sent, held or received, even when the endpoint, a proxy or
// a store echoes one.
//
// When the API refuses a token that had not expired, the client from
// [NewClient] marks it bad with [TokenSource.Invalidate] and replays the
// request once with a new token; if the new token is refused too, the
// source backs off rather than refresh for every request. The token never
// follows a redirect to another host.
//
// # Many accounts
//
// A platform app acts for many Dropbox Sign users. [Accounts] holds their
// sources, one per account per process, made on first use from a [Store]
// under the app's own key for the user: [Accounts.Login] completes a
// user's authorization and stores the token, [Accounts.Client] gives the
// user's *http.Client, and [Accounts.Shutdown] waits for refreshes and
// saves in flight before the process exits. At most [WithMaxAccounts] are
// held in memory (more only while that many are busy or hold a token not
// yet stored); the rest are reloaded from the store when used. When
// Dropbox Sign refuses an account's grant, the account is marked refused
// in the store: from its next read of the store (its next refresh, or a
// 401), each replica fails every call for the account at once, with an
// error for which [Classify] says Reauthorize, until the user logs in
// again, and [Accounts.Refused] lists such accounts.
//
// # Connections
//
// An account's connection lives in the store: a key holds nothing (never
// connected), a token (connected), a refusal mark (Dropbox Sign refused
// the grant) or a disconnection mark (the app disconnected it), and
// [Accounts.Connection] reads which, for the app's settings page. When the
// user clicks "Disconnect" or deletes their account, [Accounts.Disconnect]
// replaces their tokens with a disconnection mark: this process stops
// using the grant at once, every other replica when the store tells it
// (see [Watcher]), and no replica writes the grant back; calls for the
// account then fail with a [*DisconnectedError] (errors.Is
// [ErrDisconnected]), and calls for one with nothing stored with an error
// matching [ErrNotConnected]; [Classify] says Reauthorize for both. The
// mark holds the key and a time, no token: [Accounts.Forget] erases it
// once it is [ForgetAfter] old, and [Accounts.Disconnected] lists the
// marks. A new [Accounts.Login] connects the account again. Dropbox Sign
// has no endpoint to revoke a grant: the last access token stays valid
// there until it expires, unused. docs/connections.md in the repository
// follows a connection from connect to erase.
//
// # Many processes
//
// With a [Store] ([WithStore] for one source; every [Accounts] has one),
// sources in any number of processes share each account's
// token: [FileStore] for one machine, or the stores of modules
// github.com/dropboxsign-go/dropboxsign/pgstore (PostgreSQL) and
// github.com/dropboxsign-go/dropboxsign/redisstore (Redis, Redis Cluster)
// for a fleet. Callers are still served from memory; around a refresh the
// source takes the store's lock, adopts a token another process stored, or
// refreshes with the stored refresh token and saves the result with a
// compare-and-swap before handing it out: one refresh per account each time
// its token nears expiry, fleet-wide. If a lock's lease lapses mid-refresh
// and two replicas present one refresh token, the refusal is checked
// against the store, and the loser adopts the winner's token; should the
// refusal come before the winner's save, the account is marked refused
// until that save replaces the mark, and replicas that read the mark
// meanwhile report a refusal until they read the store again, a second
// later.
//
// Disconnections and new logins are pushed: a store that is a [Watcher]
// (every store of this repository is one) tells every process which
// accounts changed, at once, or within [WithWatchPoll] when its push is
// down, and each replica that holds such an account reads the store again
// before serving it. docs/stores.md says what a Store written elsewhere
// must do.
//
// # Testing
//
// Package dropboxsigntest provides a fake Dropbox Sign server on loopback
// that speaks the same protocol, for this package's tests and for yours.
package dropboxsign
