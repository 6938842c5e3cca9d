package dropboxsign_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// A disconnection is logged as the app's doing, at Info, once per replica:
// "disconnected by the app", op=disconnect where Accounts.Disconnect ran,
// no op on the replica that learnt it from the store. Neither replica logs
// it, nor the calls made for the account afterwards, as a refusal by
// Dropbox Sign, a 401, a failure or a retry: no record above Info, none
// that speaks of a refusal, no EventRefused or EventInvalidated.
func TestDisconnectIsLoggedAsTheAppsDoingNotARefusal(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	store := dropboxsigntest.NewStore()
	recA, recB := newRecorder(), newRecorder()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store, append(recA.options(), dropboxsign.AsAnotherProcess())...)
	b := dropboxsign.NewAccounts(ctx, srv.Config(), store, append(recB.options(), dropboxsign.AsAnotherProcess())...)
	defer a.Shutdown(context.Background())
	defer b.Shutdown(context.Background())

	tok := srv.IssueToken()
	if err := store.Save(ctx, "dana", nil, tok); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*dropboxsign.Accounts{"a": a, "b": b} {
		if got, err := r.TokenSource("dana").TokenContext(ctx); err != nil || got.AccessToken != tok.AccessToken {
			t.Fatalf("replica %s before the disconnection: %v, %v", name, got, err)
		}
	}

	if err := a.Disconnect(ctx, "dana"); err != nil {
		t.Fatal(err)
	}
	// The replica that did it fails at once; the other once the store has
	// told it (the in-memory store pushes the change; ctx bounds the wait).
	for range 3 {
		logDisconnectWant(t, a, "dana", "replica a")
	}
	for {
		_, err := b.TokenSource("dana").TokenContext(ctx)
		if errors.Is(err, dropboxsign.ErrDisconnected) {
			break
		}
		if err != nil {
			t.Fatalf("replica b before it learnt of the disconnection: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("replica b never learnt of the disconnection")
		case <-time.After(time.Millisecond):
		}
	}
	for range 3 {
		logDisconnectWant(t, b, "dana", "replica b")
	}
	// Through a client too: the request is never sent, and no 401 is
	// logged.
	before := srv.Stats()
	if _, err := accountOf(a.Client("dana"), srv.AccountURL()); !errors.Is(err, dropboxsign.ErrDisconnected) {
		t.Errorf("replica a's client: %v; want ErrDisconnected", err)
	}
	if after := srv.Stats(); after != before {
		t.Errorf("the fake saw %+v after the disconnection, %+v before: a request was sent", after, before)
	}

	// Events reach the logger in order, one Accounts' at a time: once a
	// later account's adoption is logged, every record of the calls above
	// is in.
	for _, r := range []*dropboxsign.Accounts{a, b} {
		if err := store.Save(ctx, "sentinel", nil, srv.IssueToken()); err != nil && !errors.Is(err, dropboxsign.ErrConflict) {
			t.Fatal(err)
		}
		if _, err := r.TokenSource("sentinel").TokenContext(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for name, rec := range map[string]*recorder{"a": recA, "b": recB} {
		logDisconnectAwait(t, rec, "sentinel")
		logDisconnectRecords(t, rec, name, name == "a")
		rec.noSecrets(t, srv.Secrets())
	}
}

// logDisconnectAwait waits until the recorder has the log record of
// account's adoption.
func logDisconnectAwait(t *testing.T, rec *recorder, account string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		rec.mu.Lock()
		found := false
		for _, r := range rec.records {
			at := attrs(r)
			found = found || at["event"] == dropboxsign.EventAdopted.String() && at["account"] == account
		}
		rec.mu.Unlock()
		if found {
			return
		}
		select {
		case <-rec.changed:
		case <-deadline:
			t.Fatalf("no log record of %s's adoption within 10 s", account)
		}
	}
}

// logDisconnectWant fails unless a call for account fails as disconnected
// by the app, classed Reauthorize, and not as a refusal.
func logDisconnectWant(t *testing.T, a *dropboxsign.Accounts, account, who string) {
	t.Helper()
	_, err := a.TokenSource(account).TokenContext(context.Background())
	var refused *dropboxsign.RefusedError
	if !errors.Is(err, dropboxsign.ErrDisconnected) || errors.As(err, &refused) || dropboxsign.Classify(err) != dropboxsign.Reauthorize {
		t.Fatalf("%s: a call after the disconnection: %v (class %v); want ErrDisconnected, Reauthorize, no RefusedError", who, err, dropboxsign.Classify(err))
	}
}

// logDisconnectRecords checks a replica's records: one disconnection at
// Info, and nothing else that is a warning, a refusal or a retry.
func logDisconnectRecords(t *testing.T, rec *recorder, who string, local bool) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	disconnected := 0
	for _, r := range rec.records {
		at := attrs(r)
		if at["event"] == dropboxsign.EventDisconnected.String() {
			disconnected++
			wantOp := ""
			if local {
				wantOp = "disconnect"
			}
			if r.Level != slog.LevelInfo || !strings.Contains(r.Message, "disconnected by the app") || at["account"] != "dana" || at["op"] != wantOp {
				t.Errorf("replica %s: the disconnection is logged %v %q %v; want Info, \"disconnected by the app\", account=dana, op=%q", who, r.Level, r.Message, at, wantOp)
			}
		}
		text := strings.ToLower(r.Message + " " + at["error"])
		if r.Level > slog.LevelInfo || strings.Contains(text, "refused") || strings.Contains(text, "401") ||
			strings.Contains(text, "retry") || strings.Contains(text, "attempt") || at["retry_in"] != "" ||
			at["event"] == dropboxsign.EventRefused.String() || at["event"] == dropboxsign.EventInvalidated.String() {
			t.Errorf("replica %s logs %v %q %v: a disconnection is neither a refusal, a 401, a failure nor a retry", who, r.Level, r.Message, at)
		}
	}
	if disconnected != 1 {
		t.Errorf("replica %s logs the disconnection %d times; want once", who, disconnected)
	}
	for _, e := range rec.events {
		if e.Kind == dropboxsign.EventRefused || e.Kind == dropboxsign.EventInvalidated {
			t.Errorf("replica %s: event %v %v after a disconnection", who, e.Kind, e.Err)
		}
	}
}
