package oteldropboxsign

import (
	"context"
	"sync"

	"github.com/dropboxsign-go/dropboxsign"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the Observer's meter and
// tracer: the module's import path.
const ScopeName = "github.com/dropboxsign-go/dropboxsign/oteldropboxsign"

// An Observer is a [dropboxsign.Observer] that turns the events of token
// sources and Accounts into OpenTelemetry metrics and spans. Create it with
// [NewObserver], give it to [dropboxsign.WithObserver], and, for the gauges
// of accounts, register each Accounts with [Observer.RegisterAccounts]. One
// Observer may serve any number of sources and Accounts at once; it is safe
// for concurrent use.
type Observer struct {
	tracer         trace.Tracer
	accountMetrics bool
	accountSpans   bool

	requests      metric.Int64Counter
	duration      metric.Float64Histogram
	storeErrors   metric.Int64Counter
	saveFailures  metric.Int64Counter
	invalidations metric.Int64Counter
	refusals      metric.Int64Counter
	disconnects   metric.Int64Counter
	watchFailures metric.Int64Counter
	logins        metric.Int64Counter
	adoptions     metric.Int64Counter
	plaintext     metric.Int64Counter
	accountCount  metric.Int64ObservableUpDownCounter
	dropped       metric.Int64ObservableCounter

	mu       sync.Mutex
	accounts []*dropboxsign.Accounts // registered, for the gauges
}

var _ dropboxsign.Observer = (*Observer)(nil)

// durationBuckets are the bucket boundaries, in seconds, of
// dropboxsign.token.request.duration: those the semantic conventions give
// http.client.request.duration.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// NewObserver returns an Observer that records to the MeterProvider and
// TracerProvider its options name (the global ones by default). It creates
// its instruments at once. Telemetry never fails the app: should the
// provider refuse an instrument, the error goes to otel.Handle and that
// instrument records nothing.
func NewObserver(opts ...Option) *Observer {
	cfg := newConfig(opts)
	meter := cfg.meters.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	o := &Observer{
		tracer:         cfg.tracers.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		accountMetrics: cfg.accountMetrics,
		accountSpans:   cfg.accountSpans,
	}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			errs = append(errs, err)
			return noop.Int64Counter{}
		}
		return c
	}
	o.requests = counter("dropboxsign.token.requests", "{request}", "Token requests (code exchanges and refreshes) that ended, by operation and outcome.")
	o.storeErrors = counter("dropboxsign.store.errors", "{error}", "Store calls that failed; a usable token in memory, if any, keeps serving.")
	o.saveFailures = counter("dropboxsign.token.save.failures", "{failure}", "New tokens that could not be saved: until a retry succeeds, the newest refresh token exists only in this process.")
	o.invalidations = counter("dropboxsign.token.invalidations", "{invalidation}", "Unexpired tokens the API refused (a 401), each replaced by a refresh.")
	o.refusals = counter("dropboxsign.account.refusals", "{refusal}", "Accounts whose grant Dropbox Sign refused for good: their user must authorize the app again.")
	// A disconnection by the app is counted apart from a refusal by
	// Dropbox Sign, not as a refusal with a reason attribute: a refusal is
	// something to alert on (grants lost: spent refresh tokens, revoked
	// apps), a disconnection is the app doing what its users asked, and
	// every alert and panel already written on refusals would otherwise
	// start counting routine disconnections unless rewritten with a filter.
	o.disconnects = counter("dropboxsign.account.disconnections", "{disconnection}", "Accounts the app disconnected (Accounts.Disconnect), by origin: local where this replica's Accounts.Disconnect recorded it, store where this replica learnt it from the store. Not refusals by Dropbox Sign.")
	o.watchFailures = counter("dropboxsign.store.watch.failures", "{failure}", "Failures of the watch of the store's changes: until it recovers, this replica learns of disconnections and logins on other replicas late, at the watch's poll.")
	o.logins = counter("dropboxsign.account.logins", "{login}", "New grants stored by Accounts.Login.")
	o.adoptions = counter("dropboxsign.token.adoptions", "{token}", "Valid tokens taken from the store instead of refreshing: an account's first use in this process, or a token another replica refreshed.")
	o.plaintext = counter("dropboxsign.store.plaintext_tokens", "{token}", "Tokens loaded in plain JSON from a store that seals tokens, once per account held: not sealed since encryption was turned on, or planted. Each is sealed at its next save.")
	var err error
	if o.duration, err = meter.Float64Histogram("dropboxsign.token.request.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of token requests, by operation and outcome."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		errs, o.duration = append(errs, err), noop.Float64Histogram{}
	}
	if o.accountCount, err = meter.Int64ObservableUpDownCounter("dropboxsign.account.count",
		metric.WithUnit("{account}"), metric.WithDescription("Accounts held in memory, by state: connected, refused (awaiting a new authorization), or disconnected by the app.")); err != nil {
		errs, o.accountCount = append(errs, err), noop.Int64ObservableUpDownCounter{}
	}
	if o.dropped, err = meter.Int64ObservableCounter("dropboxsign.event.dropped",
		metric.WithUnit("{event}"), metric.WithDescription("Events observers did not get because they fell more than 4096 behind; the other metrics miss them.")); err != nil {
		errs, o.dropped = append(errs, err), noop.Int64ObservableCounter{}
	}
	if _, err := meter.RegisterCallback(o.observeAccounts, o.accountCount, o.dropped); err != nil {
		errs = append(errs, err)
	}
	for _, err := range errs {
		otel.Handle(err)
	}
	return o
}

// Observe records e: part of [dropboxsign.Observer]. The core calls it after
// the fact, from one goroutine per source configuration.
func (o *Observer) Observe(ctx context.Context, e dropboxsign.Event) {
	switch e.Kind {
	case dropboxsign.EventTokenRequest:
		o.tokenRequest(ctx, e)
	case dropboxsign.EventStoreFailed:
		o.storeErrors.Add(ctx, 1, o.attrs(e, storeOperationKey.String(e.Op)))
	case dropboxsign.EventSaveFailed:
		o.saveFailures.Add(ctx, 1, o.attrs(e))
	case dropboxsign.EventInvalidated:
		if e.Err != nil { // fresh tokens refused too: the source backs off
			o.invalidations.Add(ctx, 1, o.attrs(e, semconv.ErrorTypeKey.String("fresh_token_refused")))
		} else {
			o.invalidations.Add(ctx, 1, o.attrs(e))
		}
	case dropboxsign.EventRefused:
		o.refusals.Add(ctx, 1, o.attrs(e))
	case dropboxsign.EventDisconnected:
		origin := "store"
		if e.Op == "disconnect" {
			origin = "local"
		}
		o.disconnects.Add(ctx, 1, o.attrs(e, disconnectionOriginKey.String(origin)))
	case dropboxsign.EventWatchFailed:
		o.watchFailures.Add(ctx, 1, o.attrs(e))
	case dropboxsign.EventLogin:
		o.logins.Add(ctx, 1, o.attrs(e))
	case dropboxsign.EventAdopted:
		o.adoptions.Add(ctx, 1, o.attrs(e))
		// The token another source of the process had just obtained for
		// the same grant: the request this span was started for was never
		// made. The span ends, marked so.
		if r, ok := ctx.Value(requestKey{o}).(*request); ok {
			r.span.SetAttributes(sharedKey.Bool(true))
			r.span.End()
		}
	case dropboxsign.EventPlaintextToken:
		o.plaintext.Add(ctx, 1, o.attrs(e))
	}
}

// tokenRequest counts a token request, records its duration, and ends its
// span. The metrics are recorded first, with the span's context, so that an
// exemplar points at the span.
func (o *Observer) tokenRequest(ctx context.Context, e dropboxsign.Event) {
	kvs := []attribute.KeyValue{operationKey.String(e.Op), outcomeKey.String(outcome(e.Class))}
	if e.Err != nil {
		kvs = append(kvs, semconv.ErrorTypeKey.String(errorType(e)))
	}
	set := o.attrs(e, kvs...)
	o.requests.Add(ctx, 1, set)
	o.duration.Record(ctx, e.Duration.Seconds(), set)
	if r, ok := ctx.Value(requestKey{o}).(*request); ok {
		o.endSpan(r, e, kvs)
	}
}

// attrs is the measurement option for kvs, with the account's key if the
// Observer was told to add it.
func (o *Observer) attrs(e dropboxsign.Event, kvs ...attribute.KeyValue) metric.MeasurementOption {
	if o.accountMetrics && e.Account != "" {
		kvs = append(kvs[:len(kvs):len(kvs)], accountKey.String(e.Account)) // a copy: the caller keeps kvs
	}
	return metric.WithAttributes(kvs...)
}
