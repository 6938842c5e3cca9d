package dropboxsign_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// Regression guards from the review of issue 19: behaviours checked to
// hold.

// Hostile account keys (path-like, a newline, unicode, the journal's own
// name, the longest allowed) travel through FileStore's journal: a
// disconnection made by one replica reaches the other by the store's
// watch (its poll set to an hour, so only the push can bring it).
func TestReviewGuardHostileKeysReachOtherReplicasThroughTheJournal(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	dir := t.TempDir()
	newReplica := func() *dropboxsign.Accounts {
		fs, err := dropboxsign.NewFileStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		return dropboxsign.NewAccounts(ctx, srv.Config(), fs, dropboxsign.AsAnotherProcess(), dropboxsign.WithWatchPoll(time.Hour))
	}
	a, b := newReplica(), newReplica()
	defer a.Shutdown(ctx)
	defer b.Shutdown(ctx)
	fs, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{
		"../../etc/passwd",
		"a\nb",
		"%changes",
		"*",
		"%",
		"Zoë 👩‍💻 ユーザー",
		strings.Repeat("é", dropboxsign.MaxAccountKeyLen/2),
	}
	for _, k := range keys {
		connected(t, ctx, fs, srv, k, a, b)
	}
	for _, k := range keys {
		if err := a.Disconnect(ctx, k); err != nil {
			t.Fatalf("%q: %v", k, err)
		}
	}
	for _, k := range keys {
		until(t, ctx, "replica b stops using "+k, func() bool {
			_, err := b.TokenSource(k).TokenContext(ctx)
			return err != nil
		})
		_, err := b.TokenSource(k).TokenContext(ctx)
		wantDisconnected(t, err, k)
	}
	var listed int
	for d, err := range a.Disconnected(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		listed++
		if d.Since.IsZero() {
			t.Fatalf("%q: mark without a time", d.Key)
		}
	}
	if listed != len(keys) {
		t.Fatalf("%d marks listed; want %d", listed, len(keys))
	}
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Fatalf("%d token requests; want none", n)
	}
}

// Disconnect, then a login on another replica, then Disconnect again,
// quickly: the last word is the disconnection, on both replicas, and the
// store holds the mark.
func TestReviewGuardDisconnectLoginDisconnect(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	conf := srv.Config()
	mem := dropboxsigntest.NewStore()
	a := dropboxsign.NewAccounts(ctx, conf, mem, dropboxsign.AsAnotherProcess())
	b := dropboxsign.NewAccounts(ctx, conf, mem, dropboxsign.AsAnotherProcess())
	defer a.Shutdown(ctx)
	defer b.Shutdown(ctx)
	connected(t, ctx, mem, srv, "rae", a, b)
	if err := a.Disconnect(ctx, "rae"); err != nil {
		t.Fatal(err)
	}
	if err := a.Disconnect(ctx, "rae"); err != nil { // double click
		t.Fatal(err)
	}
	code := authorize(t, srv, conf, "st-rae")
	if _, err := b.Login(ctx, "rae", code, "st-rae"); err != nil {
		t.Fatal(err)
	}
	if err := a.Disconnect(ctx, "rae"); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*dropboxsign.Accounts{"a": a, "b": b} {
		until(t, ctx, "replica "+name+" stops", func() bool {
			_, err := r.TokenSource("rae").TokenContext(ctx)
			return err != nil
		})
		_, err := r.TokenSource("rae").TokenContext(ctx)
		wantDisconnected(t, err, "replica "+name)
	}
	var d *dropboxsign.DisconnectedError
	if _, err := mem.Load(ctx, "rae"); !errors.As(err, &d) {
		t.Fatalf("the store: %v; want the mark", err)
	}
	if c := b.Connection(ctx, "rae"); c.Status != dropboxsign.StatusDisconnected {
		t.Fatalf("Connection: %v", c.Status)
	}
}
