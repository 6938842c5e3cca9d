// Package oteldropboxsign reports what package dropboxsign's token sources
// and Accounts do as OpenTelemetry metrics and traces: token requests by
// operation and outcome, their duration, store errors, failed saves,
// refused tokens, refused grants, tokens found in plain JSON in a store that
// seals them, and the accounts held and awaiting a new authorization. It is fed by the core's [dropboxsign.Observer] hook, so it
// costs nothing on the path that serves a valid token.
//
// Wire it once, at start-up:
//
//	obs := oteldropboxsign.NewObserver(
//		oteldropboxsign.WithMeterProvider(mp),
//		oteldropboxsign.WithTracerProvider(tp),
//	)
//	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{
//		Transport: otelhttp.NewTransport(http.DefaultTransport), // the HTTP span nests under the token request's
//	})
//	accounts := dropboxsign.NewAccounts(ctx, conf, store, dropboxsign.WithObserver(obs))
//	obs.RegisterAccounts(accounts) // the gauges of accounts held and refused
//
// Every instrument, attribute and span is listed in docs/operating.md. No
// metric attribute names an account unless [WithAccountInMetrics] says so:
// account keys are unbounded, and a time series per account overwhelms most
// metric backends. Spans, which are not aggregated, name the account unless
// [WithoutAccountInSpans] says not to. No attribute, span status or span
// event holds a secret: the texts come from the core's events, which are
// redacted of every token and of the client secret.
package oteldropboxsign
