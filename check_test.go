package dropboxsign_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

func TestCheckPassesWhenReady(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	store, err := dropboxsign.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store)
	defer a.Shutdown(ctx)
	if err := a.Check(ctx); err != nil {
		t.Errorf("Check: %v, want nil", err)
	}
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("Check made %d token requests", n)
	}
}

// An empty client secret is named as such, by Check and by the first call
// that needs it, without a request; stored tokens still serve.
func TestAnEmptyClientSecretIsNamed(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	conf := srv.Config()
	conf.ClientSecret = ""
	store := dropboxsigntest.NewStore()
	valid, stale := srv.IssueToken(), expired(srv.IssueToken())
	store.Save(ctx, "fresh", nil, valid)
	store.Save(ctx, "stale", nil, stale)
	a := dropboxsign.NewAccounts(ctx, conf, store)
	defer a.Shutdown(ctx)

	named := func(what string, err error) {
		t.Helper()
		if dropboxsign.Classify(err) != dropboxsign.Misconfigured || !strings.Contains(fmtErr(err), "empty ClientSecret") {
			t.Errorf("%s: %v (%v), want Misconfigured naming the empty client secret", what, err, dropboxsign.Classify(err))
		}
	}
	named("Check", a.Check(ctx))
	if tok, err := a.TokenSource("fresh").Token(); err != nil || tok.AccessToken != valid.AccessToken {
		t.Errorf("a valid stored token: %v, %v; want it served", tok, err)
	}
	_, err := a.TokenSource("stale").Token()
	named("a refresh", err)
	_, err = a.Login(ctx, "new", "some-code", "some-state")
	named("a login", err)
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("%d token requests without a client secret, want 0", n)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A store that does not answer makes Check fail, Temporary (it may come
// back), and says it is the store.
func TestCheckReportsAStoreThatDoesNotAnswer(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	fs, err := dropboxsign.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &failingStore{FileStore: fs}
	store.fail.Store(true)
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store)
	defer a.Shutdown(ctx)
	err = a.Check(ctx)
	if !errors.Is(err, errStoreDown) || dropboxsign.Classify(err) != dropboxsign.Temporary || !strings.Contains(err.Error(), "store is not ready") {
		t.Errorf("Check with the store down: %v (%v), want the store's error, Temporary", err, dropboxsign.Classify(err))
	}
}

// A configuration Accounts cannot use is Check's first finding.
func TestCheckReportsTheConfiguration(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	conf := srv.Config()
	conf.Endpoint.TokenURL = "http://dropbox-sign.example/oauth/token" // plain HTTP off loopback
	a := dropboxsign.NewAccounts(ctx, conf, dropboxsigntest.NewStore())
	defer a.Shutdown(ctx)
	if err := a.Check(ctx); dropboxsign.Classify(err) != dropboxsign.Misconfigured {
		t.Errorf("Check with an insecure token URL: %v, want Misconfigured", err)
	}
}

// Check fails when stored tokens are sealed under a key this replica's
// Sealer lacks (its keys differ from the fleet's), naming the key ID and
// never a key; a token that merely does not open (copied under another
// account) is the data's problem and does not fail readiness.
func TestCheckReportsTokensUnderAKeyNotConfigured(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	dir, _ := resealDir(t, []string{"alice", "bob"}, nil) // sealed under K1
	onlyK2, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, resealK2)))
	if err != nil {
		t.Fatal(err)
	}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), onlyK2)
	defer a.Shutdown(ctx)
	err = a.Check(ctx)
	var mk *dropboxsign.MissingKeyError
	if dropboxsign.Classify(err) != dropboxsign.Misconfigured || !errors.As(err, &mk) || mk.KeyID != dropboxsign.KeyID(resealK1) ||
		!strings.Contains(err.Error(), "2 of the 2") || !strings.Contains(err.Error(), dropboxsign.KeyID(resealK1)) {
		t.Errorf("Check with K2 alone over K1's tokens: %v, want Misconfigured naming %s", err, dropboxsign.KeyID(resealK1))
	}
	for _, k := range [][]byte{resealK1, resealK2} {
		if strings.Contains(err.Error(), string(k)) || strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(k)) {
			t.Error("Check's error holds a key")
		}
	}

	// With both keys: ready, even with a token copied under another
	// account among them.
	both, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, resealK2, resealK1)))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(both.Path("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(both.Path("carol"), bytes.Replace(data, []byte(`"alice"`), []byte(`"carol"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := both.Load(ctx, "carol"); err == nil {
		t.Fatal("a token copied under another account opened")
	}
	b := dropboxsign.NewAccounts(ctx, srv.Config(), both)
	defer b.Shutdown(ctx)
	if err := b.Check(ctx); err != nil {
		t.Errorf("Check with both keys and one copied token: %v, want nil", err)
	}
}
