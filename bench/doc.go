// Package bench measures dropboxsign.Accounts at scale against what an app
// would otherwise write: a map of x/oauth2 ReuseTokenSources behind a
// RWMutex, and maps of the token caches of cloud.google.com/go/auth and
// aws-sdk-go-v2. It is a module of its own so that the core module needs
// none of them. Everything is in its tests and benchmarks; the figures and
// the commands that produce them are in docs/performance-accounts.md.
package bench
