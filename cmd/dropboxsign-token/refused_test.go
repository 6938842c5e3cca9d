package main_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// approveLogin runs login -approve for account against srv, on a callback
// listener srv redirects to.
func approveLogin(t *testing.T, c *cli, srv *dropboxsigntest.Server, account string, args ...string) {
	t.Helper()
	listen := freeAddr(t)
	srv.SetCallbackURL("http://" + listen + "/callback")
	out, said, code := c.run(append([]string{"login", "-approve", "-account", account, "-listen", listen}, args...)...)
	if code != 0 || out != "" || strings.Contains(said, "warning") {
		t.Fatalf("login -approve: exit %d, stdout %q, stderr:\n%s", code, out, said)
	}
}

// expireOnDisk makes the stored token of path expired, so that the next
// print refreshes, and returns it.
func expireOnDisk(t *testing.T, path string) *oauth2.Token {
	t.Helper()
	rec := readStored(t, path)
	rec.Token.Expiry = time.Now().Add(-time.Minute)
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return &oauth2.Token{AccessToken: rec.Token.AccessToken, RefreshToken: rec.Token.RefreshToken}
}

// When Dropbox Sign refuses an account's grant (its user disconnected the
// app), print says which account to log in again and how, with exit code 3,
// on the run that learns it and on every run after, which make no token
// request; status lists the account as refused, since when; a new login
// replaces the refusal.
func TestPrintAfterTheGrantIsRevoked(t *testing.T) {
	t.Parallel()
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)
	approveLogin(t, c, srv, "alice")
	approveLogin(t, c, srv, "bob")
	path := filepath.Join(c.dir(), "alice.json")
	srv.Revoke(expireOnDisk(t, path))
	before := time.Now().Truncate(time.Second)

	const want = "dropboxsign-token print: account alice must be authorized again: run 'dropboxsign-token login -account alice'\n"
	for run := 1; run <= 3; run++ {
		out, errOut, code := c.run("print", "-account", "alice")
		if code != 3 || out != "" || !strings.HasPrefix(errOut, want) ||
			!strings.Contains(errOut, "(marked refused in the store on ") || !strings.Contains(errOut, ". Dropbox Sign refused its grant: the user disconnected the app") {
			t.Errorf("print run %d after the revocation: exit %d, stdout %q, stderr:\n%s", run, code, out, errOut)
		}
		for _, secret := range srv.Secrets() {
			if strings.Contains(errOut, secret) {
				t.Errorf("print run %d shows a secret: %s", run, errOut)
			}
		}
	}
	if st := srv.Stats(); st.Exchanges != 2 || st.TokenRequests != 3 {
		t.Errorf("token requests: %+v; want the two exchanges and one refused refresh, none after", st)
	}
	// Flags given to print that login needs come along in the advice.
	out, errOut, code := c.run("print", "-account", "alice", "-dir", c.dir())
	if code != 3 || out != "" || !strings.Contains(errOut, "run 'dropboxsign-token login -account alice -dir "+c.dir()+"'") {
		t.Errorf("print -dir: exit %d, stderr %q", code, errOut)
	}

	out, errOut, code = c.run("status")
	if code != 0 || errOut != "" || !regexpLine(out, `^alice +refused +- +- +-$`) || !regexpLine(out, `^bob +ok +`) ||
		!strings.Contains(out, "alice: awaits re-authorization since ") ||
		!strings.Contains(out, "Dropbox Sign refused its grant; run 'dropboxsign-token login -account alice'") {
		t.Errorf("status: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	list := statusJSON(t, c, "status", "-json")
	alice := list.Accounts[0]
	since, _ := time.Parse(time.RFC3339, stringOf(alice["refused_since"]))
	if len(list.Accounts) != 2 || alice["key"] != "alice" || since.Before(before.Add(-time.Second)) || since.After(time.Now()) ||
		alice["expires"] != nil || alice["saved_at"] != nil || alice["has_refresh_token"] != false || list.Accounts[1]["refused_since"] != nil {
		t.Errorf("status -json after the refusal: %+v", list)
	}

	// A new login replaces the refusal, without a warning.
	approveLogin(t, c, srv, "alice")
	out, errOut, code = c.run("print", "-account", "alice")
	if code != 0 || out != readStored(t, path).Token.AccessToken+"\n" || errOut != "" {
		t.Errorf("print after a new login: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if list := statusJSON(t, c, "status", "-json"); list.Accounts[0]["refused_since"] != nil {
		t.Errorf("status -json after a new login: %+v", list)
	}
}

func stringOf(v any) string { s, _ := v.(string); return s }

// print needs the app's credentials, and says which flag and environment
// variable hold them when they are missing or refused (invalid_client);
// a wrong secret never shows.
func TestPrintNamesTheCredentialsSettings(t *testing.T) {
	t.Parallel()
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)
	approveLogin(t, c, srv, "default")
	expireOnDisk(t, filepath.Join(c.dir(), "default.json"))

	const wrongSecret = "wrong-secret-5e6f7a8b9c"
	wrong := &cli{t: t, env: append(slicesWithout(c.env, "DROPBOX_SIGN_CLIENT_SECRET="), "DROPBOX_SIGN_CLIENT_SECRET="+wrongSecret)}
	for _, tc := range []struct {
		name string
		c    *cli
		args []string
		code int
		says []string
	}{
		{"no client ID", &cli{t: t, env: slicesWithout(c.env, "DROPBOX_SIGN_CLIENT_ID=")}, nil, 2,
			[]string{"missing client ID: pass -client-id or set DROPBOX_SIGN_CLIENT_ID"}},
		{"no client secret", &cli{t: t, env: slicesWithout(c.env, "DROPBOX_SIGN_CLIENT_SECRET=")}, nil, 2,
			[]string{"missing client secret: set DROPBOX_SIGN_CLIENT_SECRET (or pass -client-secret)"}},
		{"wrong secret", wrong, nil, 1,
			[]string{"credentials were refused by Dropbox Sign (invalid_client)", "-client-id or DROPBOX_SIGN_CLIENT_ID",
				"DROPBOX_SIGN_CLIENT_SECRET or -client-secret", "here they came from DROPBOX_SIGN_CLIENT_ID and DROPBOX_SIGN_CLIENT_SECRET"}},
		{"wrong secret by flag", c, []string{"-client-secret", wrongSecret}, 1,
			[]string{"invalid_client", "here they came from DROPBOX_SIGN_CLIENT_ID and -client-secret"}},
	} {
		out, errOut, code := tc.c.run(append([]string{"print"}, tc.args...)...)
		ok := code == tc.code && out == ""
		for _, s := range tc.says {
			ok = ok && strings.Contains(errOut, s)
		}
		if !ok || strings.Contains(errOut, wrongSecret) || strings.Contains(errOut, srv.ClientSecret) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.name, code, out, errOut, tc.code, tc.says)
		}
	}
	// The token is intact: the right credentials refresh it.
	if out, errOut, code := c.run("print"); code != 0 || out == "" {
		t.Errorf("print with the right credentials after refused ones: exit %d, stderr %q", code, errOut)
	}
}

// An expired token without a refresh token cannot be refreshed: status
// says so, and print exits 3 with the login to run, naming the cause on
// the run that finds it.
func TestPrintWithoutARefreshToken(t *testing.T) {
	t.Parallel()
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)
	store, err := dropboxsign.NewFileStore(c.dir())
	if err != nil {
		t.Fatal(err)
	}
	tok := srv.IssueToken()
	tok.RefreshToken, tok.Expiry = "", time.Now().Add(-time.Minute)
	if err := store.Save(context.Background(), "carol", nil, tok); err != nil {
		t.Fatal(err)
	}
	out, _, code := c.run("status")
	if code != 0 || !regexpLine(out, `^carol +expired +.* no$`) ||
		!strings.Contains(out, "carol: expired and has no refresh token; run 'dropboxsign-token login -account carol'") {
		t.Errorf("status: exit %d:\n%s", code, out)
	}
	const want = "dropboxsign-token print: account carol must be authorized again: run 'dropboxsign-token login -account carol'\n"
	for run, cause := range []string{"has no refresh token", "Dropbox Sign refused its grant"} {
		out, errOut, code := c.run("print", "-account", "carol")
		if code != 3 || out != "" || !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, cause) {
			t.Errorf("print run %d: exit %d, stdout %q, stderr:\n%s", run+1, code, out, errOut)
		}
	}
	if st := srv.Stats(); st.TokenRequests != 0 {
		t.Errorf("%d token requests for a token without a refresh token", st.TokenRequests)
	}
}
