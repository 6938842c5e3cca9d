package oteldropboxsign

import (
	"context"
	"slices"

	"github.com/dropboxsign-go/dropboxsign"
	"go.opentelemetry.io/otel/metric"
)

var (
	connected    = metric.WithAttributes(accountStateKey.String("connected"))
	refused      = metric.WithAttributes(accountStateKey.String("refused"))
	disconnected = metric.WithAttributes(accountStateKey.String("disconnected"))
)

// RegisterAccounts makes the Observer report a's accounts, from
// [dropboxsign.Accounts.Stats] at each collection: dropboxsign.account.count
// (held accounts: connected, refused by Dropbox Sign, or disconnected by
// the app) and dropboxsign.event.dropped. The
// Observer is given to NewAccounts as an option, before the Accounts
// exists; register the Accounts once NewAccounts has returned it. With
// several Accounts registered, the figures are their sums. The returned
// function unregisters a; registering an Accounts that is already
// registered does nothing more.
func (o *Observer) RegisterAccounts(a *dropboxsign.Accounts) (unregister func()) {
	if a == nil {
		return func() {}
	}
	o.mu.Lock()
	if !slices.Contains(o.accounts, a) {
		o.accounts = append(o.accounts, a)
	}
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		o.accounts = slices.DeleteFunc(o.accounts, func(x *dropboxsign.Accounts) bool { return x == a })
		o.mu.Unlock()
	}
}

// observeAccounts is the callback of the accounts' instruments. Stats visits
// every held account, so it runs once per collection, not per request.
func (o *Observer) observeAccounts(_ context.Context, obs metric.Observer) error {
	o.mu.Lock()
	all := slices.Clone(o.accounts)
	o.mu.Unlock()
	if len(all) == 0 {
		return nil
	}
	var held, refusedN, disconnectedN int
	var dropped int64
	for _, a := range all {
		st := a.Stats()
		held, refusedN, disconnectedN = held+st.Held, refusedN+st.Refused, disconnectedN+st.Disconnected
		dropped += st.DroppedEvents
	}
	obs.ObserveInt64(o.accountCount, int64(max(held-refusedN-disconnectedN, 0)), connected)
	obs.ObserveInt64(o.accountCount, int64(refusedN), refused)
	obs.ObserveInt64(o.accountCount, int64(disconnectedN), disconnected)
	obs.ObserveInt64(o.dropped, dropped)
	return nil
}
