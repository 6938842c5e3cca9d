package oteldropboxsign

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// An Option configures an [Observer].
type Option func(*config)

type config struct {
	meters         metric.MeterProvider
	tracers        trace.TracerProvider
	accountMetrics bool
	accountSpans   bool
}

func newConfig(opts []Option) config {
	c := config{accountSpans: true}
	for _, opt := range opts {
		if opt != nil {
			opt(&c)
		}
	}
	if c.meters == nil {
		c.meters = otel.GetMeterProvider()
	}
	if c.tracers == nil {
		c.tracers = otel.GetTracerProvider()
	}
	return c
}

// WithMeterProvider makes the Observer create its instruments with mp
// instead of the global MeterProvider (otel.GetMeterProvider() at
// [NewObserver]). A nil mp is ignored.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) {
		if mp != nil {
			c.meters = mp
		}
	}
}

// WithTracerProvider makes the Observer start its spans with tp instead of
// the global TracerProvider (otel.GetTracerProvider() at [NewObserver]). A
// nil tp is ignored.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp != nil {
			c.tracers = tp
		}
	}
}

// WithAccountInMetrics adds the account's key, as the dropboxsign.account
// attribute, to every metric an account's events record. This is high
// cardinality: one time series per account per attribute set, thousands for
// a platform app. Use it only with a backend that is built for it, or with
// few accounts.
func WithAccountInMetrics() Option {
	return func(c *config) { c.accountMetrics = true }
}

// WithoutAccountInSpans leaves the account's key out of spans, where it is
// otherwise the dropboxsign.account attribute: for apps whose keys are
// personal data (an e-mail address, say) that must not reach the tracing
// backend.
func WithoutAccountInSpans() Option {
	return func(c *config) { c.accountSpans = false }
}
