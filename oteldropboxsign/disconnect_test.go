package oteldropboxsign_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/oteldropboxsign"
)

const (
	disconnectedLocal = "dropboxsign.account.disconnections{dropboxsign.disconnection.origin=local}"
	disconnectedStore = "dropboxsign.account.disconnections{dropboxsign.disconnection.origin=store}"
)

// An account the app disconnects is counted as a disconnection, not as a
// refusal: "local" on the replica whose Accounts.Disconnect recorded it,
// "store" on one that finds the mark in the store; each replica's gauge
// counts it as disconnected, neither connected nor refused. A call for it
// makes no token request, so no span.
func TestADisconnection(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	store := dropboxsigntest.NewStore()
	for _, account := range []string{"ann", "bo"} {
		if err := store.Save(ctx, account, nil, h.srv.IssueToken()); err != nil {
			t.Fatal(err)
		}
	}
	a := h.accounts(store) // this replica disconnects ann
	b := h.accounts(store) // this one loads ann only afterwards
	for _, account := range []string{"ann", "bo"} {
		if _, err := a.TokenSource(account).TokenContext(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Disconnect(ctx, "ann"); err != nil {
		t.Fatal(err)
	}
	h.rec.waitFor(t, dropboxsign.EventDisconnected, 1)
	for name, r := range map[string]*dropboxsign.Accounts{"a": a, "b": b} {
		for range 2 {
			if _, err := r.TokenSource("ann").TokenContext(ctx); !errors.Is(err, dropboxsign.ErrDisconnected) {
				t.Fatalf("replica %s after the disconnection: %v; want ErrDisconnected", name, err)
			}
		}
	}
	events := h.rec.waitFor(t, dropboxsign.EventDisconnected, 2)
	if len(events) != 2 || events[0].Op != "disconnect" || events[1].Op != "" {
		t.Fatalf("disconnection events %+v; want one from Disconnect, one from the store", events)
	}
	c := h.wantMetrics(map[string]float64{
		"dropboxsign.token.adoptions{}": 2, // ann's and bo's first loads by a
		disconnectedLocal:               1,
		disconnectedStore:               1,
		connected:                       1, refused: 0, disconnected: 2, dropped: 0,
	})
	if n := len(h.tokenSpans(0)); n != 0 {
		t.Errorf("%d token request spans", n)
	}
	if st := h.srv.Stats(); st.TokenRequests != 0 {
		t.Errorf("the fake saw %d token requests", st.TokenRequests)
	}
	h.noSecrets(c)
}

// With WithAccountInMetrics, a disconnection names its account, like the
// other per-account counters.
func TestADisconnectionWithTheAccountInMetrics(t *testing.T) {
	h := newHarness(t, oteldropboxsign.WithAccountInMetrics())
	ctx := context.Background()
	a := h.accounts(dropboxsigntest.NewStore())
	if err := a.Disconnect(ctx, "cleo"); err != nil { // never connected: the mark is recorded anyway
		t.Fatal(err)
	}
	h.rec.waitFor(t, dropboxsign.EventDisconnected, 1)
	h.wantMetrics(map[string]float64{
		"dropboxsign.account.disconnections{dropboxsign.account=cleo,dropboxsign.disconnection.origin=local}": 1,
		connected: 0, refused: 0, disconnected: 0, dropped: 0, // cleo was never held
	})
}

// watchFailingStore is a dropboxsigntest.Store whose watch of changes
// reports a failure, as a real store's does when its push channel (Redis
// pub/sub, PostgreSQL LISTEN) goes down, then goes on watching.
type watchFailingStore struct {
	*dropboxsigntest.Store
	failures int
}

func (s *watchFailingStore) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	for range s.failures {
		report(dropboxsign.Change{Err: errors.New("watch: the push connection was reset")})
	}
	s.Store.Watch(ctx, poll, report)
}

// A failure of the store's watch is counted, without an account; it is no
// store error of a refresh, and no refusal.
func TestAWatchFailure(t *testing.T) {
	h := newHarness(t)
	a := h.accounts(&watchFailingStore{Store: dropboxsigntest.NewStore(), failures: 2})
	h.rec.waitFor(t, dropboxsign.EventWatchFailed, 2)
	h.wantMetrics(map[string]float64{
		"dropboxsign.store.watch.failures{}": 2,
		connected:                            0, refused: 0, disconnected: 0, dropped: 0,
	})
	a.Shutdown(context.Background())
}
