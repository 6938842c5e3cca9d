package dropboxsign_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// A code Dropbox Sign refuses (here: used already, by another replica) is
// the user's to fix: Login's error and the exchange's event are
// Reauthorize, and the log line is a warning, so that no alert on
// "misconfigured" pages an operator for a double submit or the back
// button. Bad client credentials stay Misconfigured.
func TestLoginWithARefusedCodeIsReauthorizeNotMisconfigured(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	conf := srv.Config()
	code := authorize(t, srv, conf, "state-1")

	first := dropboxsign.NewAccounts(ctx, conf, dropboxsigntest.NewStore())
	defer first.Shutdown(ctx)
	if _, err := first.Login(ctx, "alice", code, "state-1"); err != nil {
		t.Fatal(err)
	}

	rec := newRecorder()
	replica := dropboxsign.NewAccounts(ctx, conf, dropboxsigntest.NewStore(), append(rec.options(), dropboxsign.AsAnotherProcess())...)
	defer replica.Shutdown(ctx)
	_, err := replica.Login(ctx, "alice", code, "state-1")
	var re *oauth2.RetrieveError
	if c := dropboxsign.Classify(err); c != dropboxsign.Reauthorize || !errors.As(err, &re) || re.ErrorCode != "invalid_request" {
		t.Fatalf("a used code: %v (%v), want Reauthorize with the invalid_request RetrieveError reachable", err, c)
	}
	if strings.Contains(err.Error(), code) {
		t.Errorf("the error %q holds the code", err)
	}
	events := rec.waitFor(t, dropboxsign.EventTokenRequest, 1)
	if e := events[0]; e.Op != "exchange" || e.Class != dropboxsign.Reauthorize || e.ErrorName != "invalid_request" || e.Status != 400 {
		t.Errorf("the exchange's event: op %q class %v error %q status %d, want exchange, reauthorize, invalid_request, 400", e.Op, e.Class, e.ErrorName, e.Status)
	}
	if r, a := rec.record(t, dropboxsign.EventTokenRequest, 0); r.Level != slog.LevelWarn || a["class"] != "reauthorize" {
		t.Errorf("logged at %v, class %q: %q; want WARN, reauthorize", r.Level, a["class"], r.Message)
	}

	// A wrong client secret is the operator's.
	bad := *conf
	bad.ClientSecret = "wrong"
	other := dropboxsign.NewAccounts(ctx, &bad, dropboxsigntest.NewStore(), dropboxsign.AsAnotherProcess())
	defer other.Shutdown(ctx)
	if _, err := other.Login(ctx, "bob", authorize(t, srv, conf, "state-2"), "state-2"); dropboxsign.Classify(err) != dropboxsign.Misconfigured {
		t.Errorf("a wrong client secret: %v (%v), want Misconfigured", err, dropboxsign.Classify(err))
	}
}

// A callback submitted twice in one process is one exchange at Dropbox
// Sign, and one token request in the events (and so in the metrics), not
// two.
func TestADoubleSubmittedLoginIsOneTokenRequestEvent(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	conf := srv.Config()
	code := authorize(t, srv, conf, "state-1")
	rec := newRecorder()
	a := dropboxsign.NewAccounts(ctx, conf, dropboxsigntest.NewStore(), append(rec.options(), dropboxsign.AsAnotherProcess())...)
	defer a.Shutdown(ctx)
	for range 2 {
		if _, err := a.Login(ctx, "alice", code, "state-1"); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitFor(t, dropboxsign.EventLogin, 2)
	if n, m := len(rec.of(dropboxsign.EventTokenRequest)), srv.Stats().TokenRequests; n != 1 || m != 1 {
		t.Errorf("%d token request events for %d token requests at Dropbox Sign, want 1 and 1", n, m)
	}
}
