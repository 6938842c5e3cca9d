package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// disconnect erases an account's tokens and leaves a mark that holds no
// secret, without a request; doing it again changes nothing; print then
// exits 3 without a request and without speaking of a refusal; status
// tells the disconnected account from the refused one and the connected
// one; a new login connects it again, without a warning.
func TestDisconnectErasesTheTokensForGood(t *testing.T) {
	t.Parallel()
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)
	for _, account := range []string{"alice", "bob", "carol"} {
		approveLogin(t, c, srv, account)
	}
	markRefused(t, c, "carol")
	path := filepath.Join(c.dir(), "alice.json")
	before := time.Now().Truncate(time.Second)
	requests := srv.Stats()

	out, errOut, code := c.run("disconnect", "-account", "alice")
	if code != 0 || out != "" || !strings.HasPrefix(errOut, "Disconnected account alice on ") ||
		!strings.Contains(errOut, "its tokens are erased from "+c.dir()+", replaced by a disconnection mark,\nwhich holds no secret.") ||
		!strings.Contains(errOut, "the last access token stays valid\nthere until it expires") ||
		!strings.Contains(errOut, "\nTo connect it again: dropboxsign-token login -account alice\n") ||
		!regexpLine(errOut, `^To erase the mark, and the account's name with it, from [-0-9]+ [:0-9]+ on: dropboxsign-token forget -account alice$`) {
		t.Errorf("disconnect: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	noSecretIn(t, srv, "disconnect's output", errOut)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	noSecretIn(t, srv, "the file after disconnect", string(raw))
	since := markTime(t, path)
	if since.Before(before.Add(-time.Second)) || since.After(time.Now()) {
		t.Errorf("the mark's time %v; want about %v", since, before)
	}

	// Again: nothing changes, the mark keeps its time.
	out, errOut, code = c.run("disconnect", "-account", "alice")
	want := "Account alice was already disconnected on " + since.Local().Format(time.DateTime) + ": nothing changed.\n"
	if code != 0 || out != "" || errOut != want {
		t.Errorf("disconnect again: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	if again := markTime(t, path); !again.Equal(since) {
		t.Errorf("disconnect again moved the mark from %v to %v", since, again)
	}

	// print: exit 3, the login to run, no request, no refusal.
	for run := 1; run <= 2; run++ {
		out, errOut, code = c.run("print", "-account", "alice")
		if code != 3 || out != "" ||
			!strings.HasPrefix(errOut, "dropboxsign-token print: account alice was disconnected: run 'dropboxsign-token login -account alice' to connect it again\n") ||
			!strings.Contains(errOut, "(marked disconnected in the store on "+since.Local().Format(time.DateTime)) ||
			strings.Contains(errOut, "refused") {
			t.Errorf("print run %d: exit %d, stdout %q, stderr:\n%s", run, code, out, errOut)
		}
		noSecretIn(t, srv, "print's error", errOut)
	}
	if st := srv.Stats(); st != requests {
		t.Errorf("the fake saw %+v after disconnect and print, %+v before: want no request", st, requests)
	}

	// status: three accounts, three states, each told apart.
	out, errOut, code = c.run("status")
	if code != 0 || errOut != "" ||
		!regexpLine(out, `^alice +disconnected +- +- +-$`) || !regexpLine(out, `^bob +ok +`) || !regexpLine(out, `^carol +refused +- +- +-$`) ||
		!strings.Contains(out, "alice: disconnected by the app on "+since.Local().Format(time.DateTime)+" (") ||
		!strings.Contains(out, "its tokens are erased; 'dropboxsign-token login -account alice' connects it again; "+
			"'dropboxsign-token forget -account alice' erases its mark from "+since.Add(dropboxsign.ForgetAfter).Local().Format(time.DateTime)+"\n") ||
		!strings.Contains(out, "carol: awaits re-authorization since ") || regexpLine(out, `^alice: awaits`) {
		t.Errorf("status: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	noSecretIn(t, srv, "status", out)
	list := statusJSON(t, c, "status", "-json")
	byKey := map[string]map[string]any{}
	for _, a := range list.Accounts {
		byKey[stringOf(a["key"])] = a
	}
	alice, bob, carol := byKey["alice"], byKey["bob"], byKey["carol"]
	if got, _ := time.Parse(time.RFC3339, stringOf(alice["disconnected_since"])); len(list.Accounts) != 3 || !got.Equal(since.Truncate(time.Second)) ||
		alice["refused_since"] != nil || alice["expires"] != nil || alice["saved_at"] != nil || alice["has_refresh_token"] != false ||
		bob["disconnected_since"] != nil || bob["refused_since"] != nil ||
		carol["disconnected_since"] != nil || carol["refused_since"] == nil {
		t.Errorf("status -json: %+v", list)
	}

	// A new login connects the account again (approveLogin fails on a
	// warning), and print serves its token.
	approveLogin(t, c, srv, "alice")
	out, errOut, code = c.run("print", "-account", "alice")
	if code != 0 || out != readStored(t, path).Token.AccessToken+"\n" || errOut != "" {
		t.Errorf("print after a new login: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if list := statusJSON(t, c, "status", "-json"); list.Accounts[0]["key"] != "alice" || list.Accounts[0]["disconnected_since"] != nil {
		t.Errorf("status -json after a new login: %+v", list)
	}
}

// A print whose refresh is in flight when the account is disconnected
// stores nothing over the mark and prints no token: it exits 3, as for an
// account disconnected before it started.
func TestDisconnectDuringAPrintsRefresh(t *testing.T) {
	t.Parallel()
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)
	approveLogin(t, c, srv, "alice")
	path := filepath.Join(c.dir(), "alice.json")
	expireOnDisk(t, path)
	requests := srv.Stats().TokenRequests

	release := srv.HoldTokenResponses()
	defer release()
	type result struct {
		out, errOut string
		code        int
	}
	done := make(chan result, 1)
	go func() {
		out, errOut, code := c.run("print", "-account", "alice")
		done <- result{out, errOut, code}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.WaitTokenRequests(ctx, requests+1); err != nil {
		t.Fatalf("print's refresh never reached the fake: %v", err)
	}
	if _, errOut, code := c.run("disconnect", "-account", "alice"); code != 0 {
		t.Fatalf("disconnect during print's refresh: exit %d, stderr %q", code, errOut)
	}
	since := markTime(t, path)
	release()
	r := <-done
	if r.code != 3 || r.out != "" || !strings.HasPrefix(r.errOut, "dropboxsign-token print: account alice was disconnected: run 'dropboxsign-token login -account alice'") {
		t.Errorf("print whose refresh the disconnection overtook: exit %d, stdout %q, stderr:\n%s", r.code, r.out, r.errOut)
	}
	if st := srv.Stats(); st.Refreshes != 1 {
		t.Errorf("the fake's stats %+v: want the held refresh answered", st)
	}
	if again := markTime(t, path); !again.Equal(since) {
		t.Errorf("the mark moved from %v to %v", since, again)
	}
	raw, _ := os.ReadFile(path)
	noSecretIn(t, srv, "the file after print's refresh", string(raw))
	noSecretIn(t, srv, "print's error", r.errOut)
}

// disconnect marks an account that has nothing stored too (a process may
// hold a token it has not stored yet), and says so; with no token
// directory it does nothing, and creates none. Its usage errors exit 2.
func TestDisconnectWithNothingStored(t *testing.T) {
	t.Parallel()
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)

	out, errOut, code := c.run("disconnect", "-account", "dan")
	want := "Nothing stored for account dan: " + c.dir() + " does not exist; nothing to disconnect.\n"
	if code != 0 || out != "" || errOut != want {
		t.Errorf("disconnect without a token directory: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	if _, err := os.Stat(c.dir()); !os.IsNotExist(err) {
		t.Errorf("disconnect created %s", c.dir())
	}

	approveLogin(t, c, srv, "bob")
	out, errOut, code = c.run("disconnect", "-account", "dan")
	if code != 0 || out != "" || !strings.HasPrefix(errOut, "Account dan had nothing stored in "+c.dir()+"; it is marked disconnected on ") ||
		!strings.Contains(errOut, "'dropboxsign-token status' lists the accounts") {
		t.Errorf("disconnect of an account never stored: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	markTime(t, filepath.Join(c.dir(), "dan.json"))
	if out, _, code := c.run("print", "-account", "bob"); code != 0 || out == "" {
		t.Errorf("bob after dan's disconnection: exit %d", code)
	}

	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"disconnect", "-account", ""}, "dropboxsign-token disconnect: -account is empty: name the account"},
		{[]string{"disconnect", "-json"}, "dropboxsign-token disconnect: flag provided but not defined: -json (disconnect takes -account, -dir, -prefix, -schema, -store)\n"},
		{[]string{"disconnect", "alice"}, "dropboxsign-token disconnect: unexpected argument \"alice\"\n"},
		{[]string{"forget", "-client-id", "x"}, "dropboxsign-token forget: flag provided but not defined: -client-id (forget takes -account, -dir, -prefix, -schema, -store)\n"},
	} {
		out, errOut, code := c.run(tc.args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, tc.says) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errOut, tc.says)
		}
	}
	// A token "directory" that is a file: a failure, exit 1.
	file := filepath.Join(t.TempDir(), "not-a-dir")
	os.WriteFile(file, nil, 0o600)
	if out, errOut, code := c.run("disconnect", "-account", "bob", "-dir", file); code != 1 || out != "" || errOut == "" {
		t.Errorf("disconnect -dir FILE: exit %d, stdout %q, stderr %q; want exit 1 and why", code, out, errOut)
	}
}

// forget erases a disconnection mark only once it is
// dropboxsign.ForgetAfter old, and then leaves nothing of the account;
// it touches neither a connected nor a refused account, and is a no-op
// for an account with nothing stored.
func TestForgetErasesOnlyAnOldMark(t *testing.T) {
	t.Parallel()
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)

	out, errOut, code := c.run("forget", "-account", "alice")
	if want := "Nothing stored for account alice: " + c.dir() + " does not exist; nothing to forget.\n"; code != 0 || out != "" || errOut != want {
		t.Errorf("forget without a token directory: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	if _, err := os.Stat(c.dir()); !os.IsNotExist(err) {
		t.Errorf("forget created %s", c.dir())
	}
	for _, account := range []string{"alice", "bob", "carol"} {
		approveLogin(t, c, srv, account)
	}
	markRefused(t, c, "carol")
	if _, errOut, code := c.run("disconnect", "-account", "alice"); code != 0 {
		t.Fatalf("disconnect: exit %d, stderr %q", code, errOut)
	}
	path := filepath.Join(c.dir(), "alice.json")
	since := markTime(t, path)

	// Too young: nothing erased, and when to try again.
	out, errOut, code = c.run("forget", "-account", "alice")
	want := "dropboxsign-token forget: account alice was disconnected on " + since.Local().Format(time.DateTime) + ", less than " +
		dropboxsign.ForgetAfter.String() + " ago: nothing erased; try again from " + since.Add(dropboxsign.ForgetAfter).Local().Format(time.DateTime) + " on\n"
	if code != 1 || out != "" || !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, "the mark is what keeps it from storing it back") {
		t.Errorf("forget of a young mark: exit %d, stdout %q, stderr:\n%s\nwant first:\n%s", code, out, errOut, want)
	}
	if again := markTime(t, path); !again.Equal(since) {
		t.Errorf("forget of a young mark changed it: %v, was %v", again, since)
	}

	// Neither a connected account nor a refused one is touched.
	for _, tc := range []struct{ account, holds string }{
		{"bob", "is connected (a token is stored)"},
		{"carol", "is refused by Dropbox Sign"},
	} {
		file := filepath.Join(c.dir(), tc.account+".json")
		was, _ := os.ReadFile(file)
		out, errOut, code := c.run("forget", "-account", tc.account)
		want := "dropboxsign-token forget: account " + tc.account + " " + tc.holds + ", not disconnected: run 'dropboxsign-token disconnect -account " +
			tc.account + "' first, then forget it once its mark is " + dropboxsign.ForgetAfter.String() + " old; nothing erased\n"
		if code != 1 || out != "" || errOut != want {
			t.Errorf("forget %s: exit %d, stdout %q, stderr %q; want %q", tc.account, code, out, errOut, want)
		}
		if now, _ := os.ReadFile(file); string(now) != string(was) {
			t.Errorf("forget %s changed its file", tc.account)
		}
		noSecretIn(t, srv, "forget's error", errOut)
	}

	// Old enough: status says it may go, and forget erases it, leaving
	// nothing that names the account.
	old := time.Now().Add(-dropboxsign.ForgetAfter - time.Minute).Truncate(time.Second)
	ageMark(t, path, old)
	out, _, _ = c.run("status")
	if !strings.Contains(out, "alice: disconnected by the app on "+old.Local().Format(time.DateTime)) ||
		!strings.Contains(out, "its mark may be erased now: run 'dropboxsign-token forget -account alice'\n") {
		t.Errorf("status of an old mark:\n%s", out)
	}
	out, errOut, code = c.run("forget", "-account", "alice")
	want = "Forgot account alice: its disconnection mark on " + old.Local().Format(time.DateTime) + " is erased; " + c.dir() + " holds nothing of it.\n"
	if code != 0 || out != "" || errOut != want {
		t.Errorf("forget of an old mark: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	entries, err := os.ReadDir(c.dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(c.dir(), e.Name()))
		if strings.Contains(e.Name(), "alice") || strings.Contains(string(b), "alice") {
			t.Errorf("after forget, %s names alice", e.Name())
		}
	}
	list := statusJSON(t, c, "status", "-json")
	if len(list.Accounts) != 2 || list.Accounts[0]["key"] != "bob" {
		t.Errorf("status -json after forget: %+v", list)
	}
	// Again: nothing to forget.
	out, errOut, code = c.run("forget", "-account", "alice")
	if want := "Nothing stored for account alice in " + c.dir() + ": nothing to forget.\n"; code != 0 || out != "" || errOut != want {
		t.Errorf("forget again: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
}

// markRefused marks account refused in c's token directory, as print does
// when Dropbox Sign refuses its grant.
func markRefused(t *testing.T, c *cli, account string) {
	t.Helper()
	store, err := dropboxsign.NewFileStore(c.dir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok, err := store.Load(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.MarkRefused(ctx, account, tok); err != nil {
		t.Fatal(err)
	}
}

// markTime returns the time of the disconnection mark in the token file
// path, failing if it holds none.
func markTime(t *testing.T, path string) time.Time {
	t.Helper()
	store, err := dropboxsign.NewFileStore(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Load(context.Background(), strings.TrimSuffix(filepath.Base(path), ".json"))
	var mark *dropboxsign.DisconnectedError
	if !errors.As(err, &mark) || mark.Since.IsZero() {
		t.Fatalf("%s holds %v; want a disconnection mark with its time", path, err)
	}
	return mark.Since
}

// ageMark dates the disconnection mark in path at when, as if it had been
// made then.
func ageMark(t *testing.T, path string, when time.Time) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil || rec["disconnected_at"] == nil {
		t.Fatalf("%s: %v, %s; want a disconnection mark", path, err, b)
	}
	rec["disconnected_at"] = when.UTC().Format(time.RFC3339Nano)
	if b, err = json.Marshal(rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// noSecretIn fails if text shows a secret the fake knows.
func noSecretIn(t *testing.T, srv *dropboxsigntest.Server, what, text string) {
	t.Helper()
	for _, s := range srv.Secrets() {
		if len(s) >= 4 && strings.Contains(text, s) {
			t.Errorf("%s shows a secret:\n%s", what, text)
		}
	}
}
