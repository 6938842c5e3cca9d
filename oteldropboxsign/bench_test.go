package oteldropboxsign_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/oteldropboxsign"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/oauth2"
)

// The hot path, as the core's BenchmarkHotPath measures it (a valid token,
// served from memory), with a logger and the Observer installed on the real
// SDKs: compare the two with benchstat (docs/operating.md).

func benchToken() *oauth2.Token {
	return &oauth2.Token{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour), ExpiresIn: 3600}
}

// observedSource is the core benchmark's source, observed: a JSON logger and
// an Observer on a MeterProvider and TracerProvider that keep everything.
func observedSource() (*dropboxsign.TokenSource, *sdkmetric.ManualReader, *tracetest.SpanRecorder) {
	reader, spans := sdkmetric.NewManualReader(), tracetest.NewSpanRecorder()
	obs := oteldropboxsign.NewObserver(
		oteldropboxsign.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))),
		oteldropboxsign.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))))
	conf := &oauth2.Config{ClientID: "id", ClientSecret: "secret", Endpoint: dropboxsign.Endpoint}
	ts := dropboxsign.NewTokenSource(context.Background(), conf, benchToken(),
		dropboxsign.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))), dropboxsign.WithObserver(obs))
	return ts, reader, spans
}

func BenchmarkHotPath(b *testing.B) {
	ctx := context.Background()
	ours, _, _ := observedSource()
	b.Run("TokenContext", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ours.TokenContext(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("TokenContextParallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ours.TokenContext(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// With a logger and the Observer installed, a valid token still costs no
// allocation, and records nothing: no metric, no span.
func TestTheHotPathCostsNothing(t *testing.T) {
	ts, reader, spans := observedSource()
	ctx := context.Background()
	if allocs := testing.AllocsPerRun(1000, func() { ts.TokenContext(ctx) }); allocs != 0 {
		t.Errorf("%v allocations per call", allocs)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			t.Errorf("metric %s for valid tokens: %+v", m.Name, m.Data)
		}
	}
	if n := len(spans.Started()); n != 0 {
		t.Errorf("%d spans for valid tokens", n)
	}
}
