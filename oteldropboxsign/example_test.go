package oteldropboxsign_test

import (
	"context"
	"log"
	"net/http"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/oteldropboxsign"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/oauth2"
)

// The wiring of an app with many accounts: the providers, the Observer as an
// option of NewAccounts, the Accounts registered for the gauges once it
// exists, and otelhttp as the token requests' transport, so that each
// request's HTTP span nests under its dropboxsign.token.* span.
func Example() {
	ctx := context.Background()
	// In an app: a reader of an OTLP or Prometheus exporter, and a batching
	// span processor; usually installed as the global providers instead.
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider()
	defer mp.Shutdown(ctx)
	defer tp.Shutdown(ctx)

	obs := oteldropboxsign.NewObserver(oteldropboxsign.WithMeterProvider(mp), oteldropboxsign.WithTracerProvider(tp))
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{
		Transport: otelhttp.NewTransport(http.DefaultTransport, otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp)),
	})
	conf := &oauth2.Config{ClientID: "…", ClientSecret: "…", Endpoint: dropboxsign.Endpoint}
	store, err := dropboxsign.NewFileStore("/var/lib/app/tokens") // or the Redis store
	if err != nil {
		log.Fatal(err)
	}
	accounts := dropboxsign.NewAccounts(ctx, conf, store, dropboxsign.WithObserver(obs))
	obs.RegisterAccounts(accounts)

	// Serve requests with accounts.Client(userID)…
}
