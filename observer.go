package dropboxsign

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// An Event is something a token source, or an Accounts, did or met: a
// token request and its outcome, a store failure, a token adopted from
// another replica, a failed save, a token the API refused, an account whose
// grant is gone, a token found in plain JSON in a store that seals them.
// Observers receive them (see [WithObserver]); [WithLogger] turns them into
// log records. Events never hold a secret: Err's text is redacted like
// every error the package returns.
type Event struct {
	Kind    EventKind
	Account string    // the account's key (Accounts, WithStore); "" for a source without a store
	Time    time.Time // when it happened; for a token request, when it ended

	// Op is, for a token request, "exchange" or "refresh"; for a store
	// failure, the call: "load", "lock", "save" or "mark"; "load" for a
	// token in plain JSON.
	Op       string
	Duration time.Duration // how long the token request took
	Err      error         // what went wrong; nil for a success
	Class    Class         // Classify(Err): NotAnError for a success

	// For a token request that got an answer: its HTTP status, the error
	// code it gave (invalid_grant, exceeded_rate, …; "" on success), and
	// its rate-limit headers (counts -1 and a zero Reset when absent).
	Status    int
	ErrorName string
	RateLimit RateLimit

	// RetryAt is, after a failure, when the source will try again: its
	// backoff decision. Zero when nothing is scheduled.
	RetryAt time.Time
	// Failures counts the failures in a row, this one included.
	Failures int
	// Expiry is the new token's, for a refresh, an adoption or a login.
	Expiry time.Time
	// Serving is, for a store failure, whether the source holds a token
	// it hands out meanwhile (until the token stops being usable); false
	// when it holds none, and callers get the failure.
	Serving bool
}

// EventKind says what an [Event] reports.
type EventKind int

const (
	// EventTokenRequest is an exchange or a refresh that ended: a success
	// (Err nil) or a failure, with its answer's status, error name and
	// rate limit, and the source's backoff decision.
	EventTokenRequest EventKind = iota + 1
	// EventAdopted is a token another replica had refreshed and stored,
	// taken from the store instead of refreshing.
	EventAdopted
	// EventStoreFailed is a Store call that failed (Op says which); the
	// source tries again after RetryAt, and meanwhile keeps serving the
	// token it holds if that one is usable (Serving says whether).
	EventStoreFailed
	// EventSaveFailed is a new token that could not be saved (to the store
	// or by WithOnRefresh): it is used unsaved and the save is retried
	// after RetryAt. Until one succeeds, the newest refresh token exists
	// only in this process.
	EventSaveFailed
	// EventSaved is a token saved at last, after failed saves.
	EventSaved
	// EventInvalidated is a token the API refused (a 401) although it had
	// not expired. Err is set when refusals repeat and the source backs off.
	EventInvalidated
	// EventRefused is an account whose grant Dropbox Sign refused for good:
	// its user must authorize the app again. Err is the *RefusedError. It
	// comes once per refusal from each account's source that learns of it:
	// once per replica, and again from a replica whose [Accounts] let the
	// account go and made it a new source (see [WithMaxAccounts]), so an
	// app that e-mails the user on it should remember whom it told.
	EventRefused
	// EventLogin is a new grant stored by Accounts.Login.
	EventLogin
	// EventPlaintextToken is a token loaded from a store whose Sealer has
	// keys, but stored in plain JSON: from before encryption was turned on,
	// written by a replica without keys, or planted by someone who can
	// write to the store. It is used, and sealed at its next save. It comes
	// once per account's source (see [Sealer]); none comes once the Sealer
	// refuses plaintext ([Sealer.RefusePlaintext]): the load fails instead.
	EventPlaintextToken
	// EventDisconnected is an account the app disconnected: Op is
	// "disconnect" from the process whose [Accounts.Disconnect] did it,
	// "" from a replica that learnt it from the store. Err is the
	// *DisconnectedError. Not a refusal by Dropbox Sign (EventRefused).
	EventDisconnected
	// EventWatchFailed is a failure of the watch of the store's changes
	// (see [Watcher]): until it recovers, this replica learns of
	// disconnections and logins elsewhere late (within the watch's poll
	// while the store can be read). Account is empty.
	EventWatchFailed
)

var eventKindNames = [...]string{"", "token_request", "adopted", "store_failed", "save_failed", "saved", "invalidated", "refused", "login", "plaintext_token", "disconnected", "watch_failed"}

// String returns the kind's name, as used in logs and metrics:
// "token_request", "adopted", "store_failed", "save_failed", "saved",
// "invalidated", "refused", "login", "plaintext_token", "disconnected" or
// "watch_failed".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return "unknown"
}

// An Observer hears what token sources and Accounts do, to count it, trace
// it, log it or act on it (send a user a "reconnect your account" e-mail on
// EventRefused, say), without parsing logs.
//
// Observe receives every event. It is called from one goroutine at a time
// per source configuration (one for an Accounts), in order, after the
// fact: a slow observer delays only the events behind it, never a refresh.
// If it falls more than 4096 events behind, the newest are dropped, and
// counted ([Accounts.Stats]). A panic in Observe is recovered; that event is
// lost, the next ones are delivered.
//
// RequestStarted is called as a token request starts, with the context of
// the caller that waited for it (or of the source, for a refresh in the
// background): the request is made with the context it returns, so that a
// tracing span started there is the parent of the HTTP client's span, and
// the request's EventTokenRequest reaches Observe with that context. It
// must return at once; one that takes longer than the source's timeout is
// abandoned, and one that panics is ignored.
type Observer interface {
	RequestStarted(ctx context.Context, op, account string) context.Context
	Observe(ctx context.Context, e Event)
}

// WithObserver makes the source (or every source of an Accounts) report
// what it does to o. It may be given more than once; each observer gets
// every event. A source without observers builds no events.
func WithObserver(o Observer) Option {
	return func(opts *options) {
		if o != nil {
			opts.observers = append(opts.observers, o)
		}
	}
}

// maxQueued bounds the events waiting for a slow observer.
const maxQueued = 4096

// eventQueue delivers events to the observers, in order, from a goroutine
// that runs only while events are waiting.
type eventQueue struct {
	observers []Observer
	mu        sync.Mutex
	queue     []queued
	draining  bool
	dropped   atomic.Int64
}

type queued struct {
	ctx context.Context
	e   Event
}

func (q *eventQueue) push(ctx context.Context, e Event) {
	q.mu.Lock()
	if len(q.queue) >= maxQueued {
		q.mu.Unlock()
		q.dropped.Add(1)
		return
	}
	q.queue = append(q.queue, queued{ctx, e})
	start := !q.draining
	q.draining = true
	q.mu.Unlock()
	if start {
		go q.drain()
	}
}

func (q *eventQueue) drain() {
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.draining = false
			q.mu.Unlock()
			return
		}
		batch := q.queue
		q.queue = nil
		q.mu.Unlock()
		for _, item := range batch {
			for _, o := range q.observers {
				observe(o, item.ctx, item.e)
			}
		}
	}
}

// observe calls o, surviving a panic in it.
func observe(o Observer, ctx context.Context, e Event) {
	defer func() { recover() }()
	o.Observe(ctx, e)
}

// emit reports e for the source, if anyone listens.
func (s *TokenSource) emit(ctx context.Context, e Event) {
	s.cfg.emit(ctx, s.key, e)
}

// emit reports e, about account (or about none: ""), to the observers.
func (cfg *sourceConfig) emit(ctx context.Context, account string, e Event) {
	q := cfg.events
	if q == nil {
		return
	}
	e.Account = account
	if e.Time.IsZero() {
		e.Time = cfg.opts.now()
	}
	if e.Err != nil && e.Class == NotAnError {
		e.Class = Classify(e.Err)
	}
	q.push(ctx, e)
}

// requestStarted lets the observers see a token request start and returns
// the context to make it with.
func (cfg *sourceConfig) requestStarted(ctx context.Context, op, account string) context.Context {
	if cfg.events == nil {
		return ctx
	}
	for _, o := range cfg.events.observers {
		bounded, cancel := context.WithTimeout(context.Background(), cfg.opts.timeout)
		next, err := callOut(bounded, "Observer.RequestStarted", func() (context.Context, error) {
			return o.RequestStarted(ctx, op, account), nil
		}, nil)
		cancel()
		if err == nil && next != nil {
			ctx = next
		}
	}
	return ctx
}
