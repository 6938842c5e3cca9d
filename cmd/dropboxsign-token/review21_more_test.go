package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A Redis password written as the user name (redis://PASSWORD@HOST, no
// colon) is a password all the same: no message shows the user info. A
// libpq key=value string is refused as such (exit 2, a hint to write a
// URL), not taken for a directory, and not echoed.
func TestReview21StoreSettingsAreShownWithoutSecrets(t *testing.T) {
	t.Parallel()
	const secret = "Redis-As-User-5c1e"
	k := newSealKey(t)
	for _, store := range []string{
		"redis://" + secret + "@127.0.0.1:1/0",
		"rediss://" + secret + "@127.0.0.1:1/0?bogus=1",
		"redis+cluster://" + secret + "@127.0.0.1:1,127.0.0.1:2",
	} { // (PostgreSQL's user name is one: pgx's error names it, as it should)
		c := storeCLI(t, "DROPBOX_SIGN_STORE="+store, "DROPBOX_SIGN_SEAL_KEYS="+k.b64)
		stdout, stderr, code := c.run("status")
		if code == 0 || strings.Contains(stdout+stderr, secret) || !strings.Contains(stderr, "://xxxxx@127.0.0.1:1") {
			t.Errorf("status with DROPBOX_SIGN_STORE=%q: exit %d, want the user info hidden:\n%s%s",
				strings.ReplaceAll(store, secret, "SECRET"), code, stdout, stderr)
		}
	}
	dir := t.TempDir()
	for _, store := range []string{
		"host=127.0.0.1 port=1 user=u password=" + "Libpq-Secret-0e4d" + " dbname=toks",
		"dbname=toks password='Libpq Secret 0e4d'",
	} {
		c := storeCLI(t, "DROPBOX_SIGN_STORE="+store, "DROPBOX_SIGN_SEAL_KEYS="+k.b64, "HOME="+dir)
		stdout, stderr, code := c.run("status")
		if code != 2 || strings.Contains(stdout+stderr, "Secret") || strings.Contains(stderr, "dbname=toks") ||
			!strings.Contains(stderr, "looks like a PostgreSQL key=value connection string") || !strings.Contains(stderr, "postgres://") {
			t.Errorf("status with a key=value string: exit %d, want 2 with a hint to write postgres://, and the string not echoed:\n%s%s", code, stdout, stderr)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a key=value string was taken for a directory: %v", entries)
	}
}

// -after reads a Go-quoted name when it starts with a double quote (as
// reseal prints a name that is not plain text); one that is not valid Go
// quoting is a usage error that does not echo it.
func TestReview21ResealAfterQuoted(t *testing.T) {
	t.Parallel()
	k := newSealKey(t)
	c := storeCLI(t, "DROPBOX_SIGN_STORE=file:"+t.TempDir(), "DROPBOX_SIGN_SEAL_KEYS="+k.b64)
	stdout, stderr, code := c.run("reseal", "-after", `"unterminated-7f3a`)
	if code != 2 || strings.Contains(stderr, "unterminated-7f3a") || !strings.Contains(stderr, "-after: a value that starts with a double quote is read as a Go-quoted string") {
		t.Errorf("reseal -after with bad quoting: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = c.run("reseal", "-after", `"a\tb"`)
	if code != 0 || !strings.Contains(stderr, `after account "\"a\\tb\""`) {
		t.Errorf("reseal -after a Go-quoted name: exit %d\n%s%s", code, stdout, stderr)
	}
}

// The runbook's step 4 checks that status exits 0 with the new key alone.
// A store directory that does not exist (a mistyped -store or -dir) holds
// no token the check could find unreadable: status must fail there, as
// keys and reseal do, not report "no accounts" and exit 0. A directory
// that exists and is empty is a store with no accounts: exit 0.
func TestReview21StatusOfAMissingStoreFails(t *testing.T) {
	t.Parallel()
	k := newSealKey(t)
	missing := filepath.Join(t.TempDir(), "no-such-tokens")
	c := storeCLI(t, "DROPBOX_SIGN_STORE=file:"+missing, "DROPBOX_SIGN_SEAL_KEYS="+k.b64)
	for _, args := range [][]string{{"status"}, {"status", "-json"}, {"keys"}, {"keys", "-json"}, {"reseal"}} {
		stdout, stderr, code := c.run(args...)
		want := "dropboxsign-token " + args[0] + ": no token store: " + missing + " does not exist\n"
		if code != 1 || stdout != "" || stderr != want {
			t.Errorf("%q on a directory that does not exist: exit %d, stdout %q, stderr %q; want exit 1 and %q", args, code, stdout, stderr, want)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a reading command created %s", missing)
	}

	empty := filepath.Join(t.TempDir(), "tokens")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	c = storeCLI(t, "DROPBOX_SIGN_STORE=file:"+empty, "DROPBOX_SIGN_SEAL_KEYS="+k.b64)
	stdout, stderr, code := c.run("status")
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "no accounts stored in "+empty) {
		t.Errorf("status of an empty directory: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if stdout, stderr, code := c.run("status", "-json"); code != 0 || !strings.Contains(stdout, `"accounts": []`) {
		t.Errorf("status -json of an empty directory: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
