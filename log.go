package dropboxsign

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// WithLogger makes the source (or every source of an Accounts) log what it
// does to l: one record per event (see [Event]), with the account's key,
// and attributes named for machines (event, op, class, status, error_name,
// duration, retry_in, failures, rate_limit_remaining, …). No record holds a
// secret: error texts are redacted, and tokens are never logged.
//
// The levels are meant for production at Info: a successful refresh, a
// login and a save that succeeds after failures are Info, one line each; a
// token adopted from another replica is Debug; failures a retry may fix (a
// network error, a 5xx, a rate limit, a store outage) and a 401 are Warn,
// as are an account whose user must authorize the app again and a token
// found in plain JSON in a store that seals tokens; a failure no
// retry fixes (bad client credentials, a refresh storm the API keeps
// refusing) and a token that cannot be saved are Error. A stored token
// sealed under an encryption key this replica lacks ([*MissingKeyError])
// is Error once per key ID, with the key's ID and whether it is an older
// key removed ([Sealer.Retired]) or one this fleet never had; the same
// failure for other accounts, or again, is Debug (every event still
// reaches observers and metrics). A nil l logs
// nothing. Records are written after the fact, from one goroutine per
// source configuration: a slow handler never delays a refresh.
func WithLogger(l *slog.Logger) Option {
	if l == nil {
		return nil
	}
	return WithObserver(&logObserver{l: l})
}

type logObserver struct {
	l *slog.Logger
	// missingKeys holds the IDs of the keys whose missing this logger has
	// reported at Error: once per key is enough to tell the operator what
	// to do, where every account sealed under it would repeat it at each
	// retry. Bounded, as a store's writer may plant tokens under any ID.
	mu          sync.Mutex
	missingKeys map[string]bool
}

// maxMissingKeys bounds the key IDs a logger remembers having reported;
// beyond it, each failure is reported at Error.
const maxMissingKeys = 64

func (*logObserver) RequestStarted(ctx context.Context, _, _ string) context.Context { return ctx }

func (o *logObserver) Observe(ctx context.Context, e Event) {
	level, msg := logLine(e)
	var missing *MissingKeyError
	if e.Kind == EventStoreFailed && errors.As(e.Err, &missing) {
		level, msg = o.missingKeyLine(e, missing)
	}
	if !o.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs, slog.String("event", e.Kind.String()))
	if e.Account != "" {
		attrs = append(attrs, slog.String("account", e.Account))
	}
	if e.Op != "" {
		attrs = append(attrs, slog.String("op", e.Op))
	}
	if e.Kind == EventTokenRequest {
		attrs = append(attrs, slog.Duration("duration", e.Duration))
		if e.Status != 0 {
			attrs = append(attrs, slog.Int("status", e.Status))
		}
		if e.RateLimit.Remaining >= 0 {
			attrs = append(attrs, slog.Int("rate_limit_remaining", e.RateLimit.Remaining))
		}
		if e.RateLimit.Limit >= 0 {
			attrs = append(attrs, slog.Int("rate_limit_limit", e.RateLimit.Limit))
		}
		if !e.RateLimit.Reset.IsZero() {
			attrs = append(attrs, slog.Time("rate_limit_reset", e.RateLimit.Reset))
		}
	}
	if missing != nil {
		attrs = append(attrs, slog.String("key_id", missing.KeyID), slog.Bool("key_retired", missing.Retired))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("class", e.Class.String()), slog.String("error", e.Err.Error()))
		if e.ErrorName != "" {
			attrs = append(attrs, slog.String("error_name", e.ErrorName))
		}
		if e.Failures > 0 {
			attrs = append(attrs, slog.Int("failures", e.Failures))
		}
		if !e.RetryAt.IsZero() {
			attrs = append(attrs, slog.Duration("retry_in", e.RetryAt.Sub(e.Time).Round(time.Millisecond)))
		}
	}
	if !e.Expiry.IsZero() {
		attrs = append(attrs, slog.Time("expires", e.Expiry))
	}
	o.l.LogAttrs(ctx, level, msg, attrs...)
}

// logLine chooses the level and the message of an event's record.
func logLine(e Event) (slog.Level, string) {
	failure := slog.LevelWarn
	if e.Class == Misconfigured {
		failure = slog.LevelError
	}
	switch e.Kind {
	case EventTokenRequest:
		if e.Err == nil {
			if e.Op == "exchange" {
				return slog.LevelInfo, "dropboxsign: code exchanged"
			}
			return slog.LevelInfo, "dropboxsign: token refreshed"
		}
		return failure, "dropboxsign: token " + e.Op + " failed"
	case EventAdopted:
		return slog.LevelDebug, "dropboxsign: token adopted from the store"
	case EventStoreFailed:
		if e.Serving {
			return failure, "dropboxsign: store call failed; the token in memory keeps serving"
		}
		return failure, "dropboxsign: store call failed; no usable token in memory to serve meanwhile"
	case EventSaveFailed:
		return slog.LevelError, "dropboxsign: new token not saved; in use unsaved, save retried"
	case EventSaved:
		return slog.LevelInfo, "dropboxsign: token saved after failed saves"
	case EventInvalidated:
		if e.Err != nil {
			return slog.LevelError, "dropboxsign: the API keeps refusing fresh tokens (401); backing off"
		}
		return slog.LevelWarn, "dropboxsign: the API refused a token (401); refreshing"
	case EventRefused:
		return slog.LevelWarn, "dropboxsign: account must be authorized again: its grant was refused"
	case EventLogin:
		return slog.LevelInfo, "dropboxsign: account connected"
	case EventDisconnected:
		return slog.LevelInfo, "dropboxsign: account disconnected by the app; its tokens are forgotten"
	case EventWatchFailed:
		return slog.LevelWarn, "dropboxsign: watch of the store's changes failed; disconnections and logins elsewhere are learnt late, by polling"
	case EventPlaintextToken:
		return slog.LevelWarn, "dropboxsign: token stored in plain JSON though the store seals tokens; sealed at its next save (planted? see Sealer.RefusePlaintext)"
	}
	return slog.LevelInfo, "dropboxsign: " + e.Kind.String()
}

// missingKeyLine chooses the level and the message of a store failure for
// a token sealed under a key this replica lacks: Error the first time the
// logger meets the key, Debug after.
func (o *logObserver) missingKeyLine(e Event, missing *MissingKeyError) (slog.Level, string) {
	level := slog.LevelDebug
	o.mu.Lock()
	if !o.missingKeys[missing.KeyID] {
		level = slog.LevelError
		if len(o.missingKeys) < maxMissingKeys {
			if o.missingKeys == nil {
				o.missingKeys = map[string]bool{}
			}
			o.missingKeys[missing.KeyID] = true
		}
	}
	o.mu.Unlock()
	var msg string
	switch {
	case missing.noKeys:
		msg = "dropboxsign: stored token sealed with encryption key " + missing.KeyID + ", and this replica has no encryption keys: give it the keys (to turn encryption on, deploy Sealer.OpenOnly to every replica first)"
	case missing.Retired:
		msg = "dropboxsign: stored token sealed with encryption key " + missing.KeyID + ", an older key not configured any more (retired before every token was sealed again): configure it again as a second key and re-seal"
	default:
		msg = "dropboxsign: stored token sealed with encryption key " + missing.KeyID + ", a key this fleet never had as far as this replica knows (another environment's, or a new key not yet given to this replica; an older key removed is named with Sealer.Retired)"
	}
	if e.Serving {
		msg += "; the token in memory keeps serving"
	} else {
		msg += "; no usable token in memory to serve meanwhile"
	}
	if level == slog.LevelDebug {
		msg += " (reported at Error once per key)"
	}
	return level, msg
}
