package dropboxsign_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

// A token sealed under a key this replica lacks is an operator's error:
// callers get it classed Misconfigured; every failure reaches observers
// (metrics count each), but the log says it once at Error per key, naming
// the key's ID and whether it is an older key removed (Retired) or one
// this fleet never had; the other accounts' failures are Debug. A source
// with no token in memory does not claim one "keeps serving".
func TestMissingKeyIsLoggedOncePerKeyAtError(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	k1ID := dropboxsign.KeyID(oldKey)
	const accounts = 6
	for _, tc := range []struct {
		name    string
		sealer  *dropboxsign.Sealer
		retired bool
		says    string
	}{
		{"key never had", mustSealer(t, newKey), false, "a key this fleet never had"},
		{"key retired", mustSealer(t, newKey).Retired(k1ID), true, "an older key not configured any more"},
		{"no keys", nil, false, "this replica has no encryption keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			k1Files, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, oldKey)))
			if err != nil {
				t.Fatal(err)
			}
			var opts []dropboxsign.FileStoreOption
			if tc.sealer != nil {
				opts = append(opts, dropboxsign.WithSealer(tc.sealer))
			}
			files, err := dropboxsign.NewFileStore(dir, opts...)
			if err != nil {
				t.Fatal(err)
			}
			for i := range accounts {
				if err := k1Files.Save(ctx, fmt.Sprint("user", i), nil, srv.IssueToken()); err != nil {
					t.Fatal(err)
				}
			}
			rec := newRecorder()
			a := dropboxsign.NewAccounts(ctx, srv.Config(), files, rec.options()...)
			for i := range accounts {
				_, err := a.TokenSource(fmt.Sprint("user", i)).TokenContext(ctx)
				var missing *dropboxsign.MissingKeyError
				if !errors.As(err, &missing) || missing.KeyID != k1ID || missing.Retired != tc.retired {
					t.Fatalf("user%d: %v; want a MissingKeyError for %s, Retired %v", i, err, k1ID, tc.retired)
				}
				if c := dropboxsign.Classify(err); c != dropboxsign.Misconfigured {
					t.Errorf("user%d: classed %v, want misconfigured", i, c)
				}
			}
			// Every failure reaches the observers.
			events := rec.waitFor(t, dropboxsign.EventStoreFailed, accounts)
			for _, e := range events {
				if e.Class != dropboxsign.Misconfigured || e.Serving || e.Op != "load" {
					t.Errorf("event %s: op %s, class %v, serving %v; want load, misconfigured, not serving", e.Account, e.Op, e.Class, e.Serving)
				}
			}
			// The logger writes after the recorder hears each event: wait
			// for the last one's record.
			rec.record(t, dropboxsign.EventStoreFailed, len(events)-1)
			var errorLines int
			for i := range len(events) {
				r, attrs := rec.record(t, dropboxsign.EventStoreFailed, i)
				if strings.Contains(r.Message, "keeps serving") {
					t.Errorf("%s: %q: no token in memory serves", attrs["account"], r.Message)
				}
				if attrs["key_id"] != k1ID || attrs["class"] != "misconfigured" {
					t.Errorf("record %v", attrs)
				}
				switch r.Level {
				case slog.LevelError:
					errorLines++
					if !strings.Contains(r.Message, k1ID) || !strings.Contains(r.Message, tc.says) {
						t.Errorf("the Error line %q; want the key ID and %q", r.Message, tc.says)
					}
				case slog.LevelDebug:
				default:
					t.Errorf("a record at %v: %q", r.Level, r.Message)
				}
			}
			if errorLines != 1 {
				t.Errorf("%d Error lines for %d accounts sealed under one missing key, want 1", errorLines, len(events))
			}
			rec.noSecrets(t, srv.Secrets())
		})
	}
}

// A store failure says "keeps serving" only from a source that holds a
// usable token, which it does serve (Event.Serving); the missing key is
// named there too.
func TestStoreFailureKeepsServingOnlyWithAToken(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	dir := t.TempDir()
	k1Files, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, oldKey)))
	if err != nil {
		t.Fatal(err)
	}
	files, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, newKey)))
	if err != nil {
		t.Fatal(err)
	}
	tok := srv.IssueToken()
	if err := files.Save(ctx, "zed", nil, tok); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	rec := newRecorder()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), files, append(rec.options(), dropboxsign.WithClock(clk.Now))...)
	ts := a.TokenSource("zed")
	if _, err := ts.TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	// The store now holds the account's token sealed under a key this
	// replica lacks (another replica's), and the token in memory enters
	// its refresh window, still usable.
	if err := k1Files.Replace(ctx, "zed", srv.IssueToken()); err != nil {
		t.Fatal(err)
	}
	clk.Set(tok.Expiry.Add(-time.Minute))
	got, err := ts.TokenContext(ctx)
	if err != nil || got.AccessToken != tok.AccessToken {
		t.Fatalf("the token in memory does not serve: %v", err)
	}
	e := rec.waitFor(t, dropboxsign.EventStoreFailed, 1)[0]
	if !e.Serving || e.Class != dropboxsign.Misconfigured {
		t.Errorf("event: serving %v, class %v; want serving, misconfigured", e.Serving, e.Class)
	}
	r, attrs := rec.record(t, dropboxsign.EventStoreFailed, 0)
	if r.Level != slog.LevelError || !strings.Contains(r.Message, "keeps serving") || !strings.Contains(r.Message, dropboxsign.KeyID(oldKey)) {
		t.Errorf("record %v %q %v", r.Level, r.Message, attrs)
	}
}
