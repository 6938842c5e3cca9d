package oteldropboxsign

import (
	"context"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// requestKey finds, in the context a token request's event comes with, the
// span this Observer started for it: not any span in the context (if the
// core abandoned our RequestStarted, the caller's span is there, and it is
// not ours to end), and not another Observer's.
type requestKey struct{ o *Observer }

type request struct {
	span  trace.Span
	start time.Time
}

// RequestStarted starts the token request's span, a child of ctx's span
// (the span of the caller that waits for the request, if any), and returns
// ctx with it: part of [dropboxsign.Observer]. The core makes the HTTP
// request with that context, so an otelhttp Transport's span nests under
// it. The span ends when the request's event arrives.
//
// The span is named dropboxsign.token.refresh or dropboxsign.token.exchange
// and is of kind Internal: it is the library's operation, which may make
// no request at all in some futures and whose HTTP request is the client
// span of otelhttp below it; two client spans in a row would count the call
// to Dropbox Sign twice in service maps.
func (o *Observer) RequestStarted(ctx context.Context, op, account string) context.Context {
	start := time.Now()
	kvs := make([]attribute.KeyValue, 1, 2)
	kvs[0] = operationKey.String(op)
	if o.accountSpans && account != "" {
		kvs = append(kvs, accountKey.String(account))
	}
	ctx, span := o.tracer.Start(ctx, "dropboxsign.token."+op,
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithTimestamp(start), trace.WithAttributes(kvs...))
	return context.WithValue(ctx, requestKey{o}, &request{span, start})
}

// endSpan ends a token request's span when the request ended (the event's
// Time), with its outcome. kvs are the metrics' attributes (operation,
// outcome, error.type); the answer's details follow. A failure sets the
// status to Error with the event's error text, which the core has redacted
// of every secret.
func (o *Observer) endSpan(r *request, e dropboxsign.Event, kvs []attribute.KeyValue) {
	if !r.span.IsRecording() {
		r.span.End()
		return
	}
	kvs = kvs[1:] // the operation is there since the start
	if e.Status != 0 {
		kvs = append(kvs, semconv.HTTPResponseStatusCode(e.Status))
	}
	if e.ErrorName != "" {
		kvs = append(kvs, errorNameKey.String(e.ErrorName))
	}
	if e.RateLimit.Limit >= 0 {
		kvs = append(kvs, rateLimitKey.Int(e.RateLimit.Limit))
	}
	if e.RateLimit.Remaining >= 0 {
		kvs = append(kvs, rateRemainingKey.Int(e.RateLimit.Remaining))
	}
	if !e.RateLimit.Reset.IsZero() {
		kvs = append(kvs, rateResetKey.String(e.RateLimit.Reset.UTC().Format(time.RFC3339)))
	}
	if e.Err != nil {
		kvs = append(kvs, failuresKey.Int(e.Failures))
		if !e.RetryAt.IsZero() {
			kvs = append(kvs, retryDelayKey.Float64(e.RetryAt.Sub(e.Time).Round(time.Millisecond).Seconds()))
		}
	}
	r.span.SetAttributes(kvs...)
	if e.Err != nil {
		r.span.SetStatus(codes.Error, e.Err.Error())
	}
	end := e.Time
	if end.Before(r.start) { // a source on a clock of its own (a test's)
		end = r.start.Add(e.Duration)
	}
	r.span.End(trace.WithTimestamp(end))
}
