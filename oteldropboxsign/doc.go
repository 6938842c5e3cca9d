// Package oteldropboxsign reports what package dropboxsign's token sources
// and Accounts do as OpenTelemetry metrics and traces. It is fed by the
// core's [dropboxsign.Observer] hook, so it costs nothing on the path that
// serves a valid token. The metrics:
//
//   - dropboxsign.token.requests and dropboxsign.token.request.duration:
//     token requests by operation and outcome, and how long they took;
//   - dropboxsign.store.errors, dropboxsign.token.save.failures: store calls
//     that failed, new tokens not saved;
//   - dropboxsign.token.invalidations: unexpired tokens the API refused (401);
//   - dropboxsign.account.refusals: grants Dropbox Sign refused for good;
//   - dropboxsign.account.disconnections: accounts the app disconnected
//     (Accounts.Disconnect), by dropboxsign.disconnection.origin, "local"
//     or "store"; counted apart from refusals, which are worth an alert
//     where a disconnection is a user's choice;
//   - dropboxsign.account.logins, dropboxsign.token.adoptions: grants stored
//     by logins, tokens taken from the store instead of refreshing;
//   - dropboxsign.store.plaintext_tokens: tokens found in plain JSON in a
//     store that seals them;
//   - dropboxsign.store.watch.failures: failures of the watch of the store's
//     changes (until it recovers, disconnections and logins elsewhere are
//     learnt late);
//   - dropboxsign.account.count, for registered Accounts: the accounts held,
//     by dropboxsign.account.state: connected, refused (awaiting a new
//     authorization) or disconnected (by the app);
//   - dropboxsign.event.dropped: events the observers did not get.
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
//	obs.RegisterAccounts(accounts) // the gauges of accounts held: connected, refused, disconnected
//
// Every instrument, attribute and span is listed in docs/operating.md. No
// metric attribute names an account unless [WithAccountInMetrics] says so:
// account keys are unbounded, and a time series per account overwhelms most
// metric backends. Spans, which are not aggregated, name the account unless
// [WithoutAccountInSpans] says not to. No attribute, span status or span
// event holds a secret: the texts come from the core's events, which are
// redacted of every token and of the client secret.
package oteldropboxsign
