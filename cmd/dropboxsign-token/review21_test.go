package main_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// Issue 21's adversarial review of the command line: a careless operator's
// store settings and a hostile token directory.

// A PostgreSQL password can be given outside the URL's user info: pgx
// reads ?password= in a URL, and password= in a key=value connection
// string (a form the operator may copy from psql's docs). No output of
// any command may hold it: not the "cannot reach" message, not the
// "not a valid URL" one, not a directory named after the string.
func TestReview21NoPasswordOutsideTheURLsUserInfo(t *testing.T) {
	t.Parallel()
	const secret = "pg-Secret-7b3e91"
	k := newSealKey(t)
	for _, store := range []string{
		"postgres://u@127.0.0.1:1/db?password=" + secret,                   // cannot reach
		"postgres://u@127.0.0.1:1/db?sslmode=bogus&password=" + secret,     // not a valid URL
		"host=127.0.0.1 port=1 user=u password=" + secret + " dbname=toks", // a libpq key=value string
		"redis://127.0.0.1:1/0?password=" + secret,                         // not an option go-redis takes
	} {
		for _, cmd := range []string{"status", "keys", "reseal"} {
			c := storeCLI(t, "DROPBOX_SIGN_STORE="+store, "DROPBOX_SIGN_SEAL_KEYS="+k.b64)
			stdout, stderr, _ := c.run(cmd)
			if strings.Contains(stdout+stderr, secret) {
				t.Errorf("%s with DROPBOX_SIGN_STORE=%q prints the password:\n%s%s", cmd, strings.ReplaceAll(store, secret, "SECRET"), stdout, stderr)
			}
		}
	}
}

// A token sealed with the first configured key but copied under another
// account does not open. keys must not call the key that seals "not
// configured here", and must not print a negative count of tokens to
// re-seal.
func TestReview21KeysOnATokenCopiedUnderAnotherAccount(t *testing.T) {
	t.Parallel()
	k := newSealKey(t)
	dir := filepath.Join(t.TempDir(), "tokens")
	fs, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(sealerOf(t, k)))
	if err != nil {
		t.Fatal(err)
	}
	tok := &oauth2.Token{AccessToken: "at-review21-aa", RefreshToken: "rt-review21-aa", TokenType: "Bearer"}
	if err := fs.Save(context.Background(), "alice", nil, tok); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(fs.Path("alice"))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	rec["key"] = "bob"
	data, _ = json.Marshal(rec)
	if err := os.WriteFile(fs.Path("bob"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := storeCLI(t, "DROPBOX_SIGN_STORE=file:"+dir, "DROPBOX_SIGN_SEAL_KEYS="+k.b64)
	stdout, stderr, code := c.run("keys")
	t.Logf("keys (exit %d):\n%s%s", code, stdout, stderr)
	if code != 1 {
		t.Errorf("keys exits %d, want 1 (a token does not open)", code)
	}
	if strings.Contains(stdout+stderr, "to re-seal") && strings.Contains(stdout, ", -") {
		t.Errorf("keys prints a negative count:\n%s", stdout)
	}
	if strings.Contains(stderr, k.id+", not configured here") {
		t.Errorf("keys says the key that seals, %s, is not configured here:\n%s", k.id, stderr)
	}
	stdout, stderr, code = c.run("keys", "-json")
	var r struct {
		Reseal int `json:"reseal"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("keys -json (exit %d): %v\n%s%s", code, err, stdout, stderr)
	}
	if r.Reseal < 0 {
		t.Errorf("keys -json: reseal %d, a negative count", r.Reseal)
	}
}

// An operator who retires K1 may put K1 itself, not its ID, in
// DROPBOX_SIGN_RETIRED_KEY_IDS (the runbook's step 4 names both side by
// side). The error must not print it: as hex, it is the key; as base64,
// lowercased, it is the key up to the case of its letters, which the key
// ID (printed by keys) lets anyone settle offline.
func TestReview21AKeyInTheRetiredIDsIsNotPrinted(t *testing.T) {
	t.Parallel()
	k1, k2 := newSealKey(t), newSealKey(t)
	dir := filepath.Join(t.TempDir(), "tokens")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	hexK1 := hex.EncodeToString(k1.raw)
	for _, retired := range []string{k1.b64, hexK1} {
		c := storeCLI(t, "DROPBOX_SIGN_STORE=file:"+dir, "DROPBOX_SIGN_SEAL_KEYS="+k2.b64, "DROPBOX_SIGN_RETIRED_KEY_IDS="+retired)
		for _, cmd := range []string{"status", "keys", "reseal"} {
			stdout, stderr, code := c.run(cmd)
			out := strings.ToLower(stdout + stderr)
			if code == 0 {
				t.Errorf("%s with a key in DROPBOX_SIGN_RETIRED_KEY_IDS exits 0", cmd)
			}
			for _, form := range []string{strings.ToLower(strings.TrimRight(k1.b64, "=")), hexK1, hexK1[:32]} {
				if strings.Contains(out, form) {
					t.Errorf("%s prints the key given in DROPBOX_SIGN_RETIRED_KEY_IDS:\n%s%s", cmd, stdout, stderr)
					break
				}
			}
		}
	}
}

// The runbook's step 3 runs reseal with $K2,$K1 in the operator's shell.
// If $K2 there is not the key the fleet was given (made again in another
// shell, a copy-paste slip), reseal writes every token under a key no
// replica holds, and the whole fleet fails every account
// (Misconfigured) until someone finds that key. The store says so before
// the first write: a token the fleet sealed under its real new key does
// not open with the keys at hand. reseal must then write nothing.
func TestReview21ResealWithAKeyTheFleetDoesNotHaveWritesNothing(t *testing.T) {
	t.Parallel()
	k1, k2, typo := newSealKey(t), newSealKey(t), newSealKey(t)
	dir := filepath.Join(t.TempDir(), "tokens")
	ctx := context.Background()
	open := func(s *dropboxsign.Sealer) *dropboxsign.FileStore {
		fs, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(s))
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	old := open(sealerOf(t, k1))
	for _, a := range []string{"alice", "bob", "carol"} {
		if err := old.Save(ctx, a, nil, &oauth2.Token{AccessToken: "at-" + a, RefreshToken: "rt-" + a}); err != nil {
			t.Fatal(err)
		}
	}
	// Step 2 done: the fleet seals with K2; one account refreshed since.
	fleet := open(sealerOf(t, k2, k1))
	if err := fleet.Save(ctx, "alice", &oauth2.Token{AccessToken: "at-alice", RefreshToken: "rt-alice"}, &oauth2.Token{AccessToken: "at-alice2", RefreshToken: "rt-alice2"}); err != nil {
		t.Fatal(err)
	}
	c := storeCLI(t, "DROPBOX_SIGN_STORE=file:"+dir, "DROPBOX_SIGN_SEAL_KEYS="+typo.b64+","+k1.b64)
	stdout, stderr, code := c.run("reseal")
	t.Logf("reseal with the wrong new key (exit %d):\n%s%s", code, stdout, stderr)
	if code == 0 {
		t.Errorf("reseal with a new key the fleet does not hold exits 0")
	}
	for _, a := range []string{"alice", "bob", "carol"} {
		if _, err := fleet.Load(ctx, a); err != nil {
			t.Errorf("after the reseal, the fleet ([K2, K1]) cannot open %s: %v", a, err)
		}
	}
}

// An interrupted reseal prints the account to resume after (-after). The
// account keys are the app's: one with a control character (or longer
// than 200 bytes) is printed altered (printable drops control characters,
// cuts long ones with "…"), and resuming from the printed value skips the
// accounts that sort between the real key and the altered one: they stay
// under the old key.
func TestReview21ResealResumesFromWhatItPrints(t *testing.T) {
	t.Parallel()
	k1, k2 := newSealKey(t), newSealKey(t)
	dir := filepath.Join(t.TempDir(), "tokens")
	ctx := context.Background()
	old, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(sealerOf(t, k1)))
	if err != nil {
		t.Fatal(err)
	}
	accounts := []string{"a\tb", "aa", "ab0"} // bytewise order
	for _, a := range accounts {
		if err := old.Save(ctx, a, nil, &oauth2.Token{AccessToken: "at-x", RefreshToken: "rt-" + a}); err != nil {
			t.Fatal(err)
		}
	}
	onlyK2, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(sealerOf(t, k2)))
	if err != nil {
		t.Fatal(err)
	}
	c := storeCLI(t, "DROPBOX_SIGN_STORE=file:"+dir, "DROPBOX_SIGN_SEAL_KEYS="+k2.b64+","+k1.b64)
	var stdout, stderr strings.Builder
	// -force: no token is under K2 yet, and reseal's census (review 21's
	// fix for a key the fleet does not have) refuses that without it.
	cmd := c.command("reseal", "-force", "-rate", "0.01") // the second write waits 100 s
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := onlyK2.Load(ctx, accounts[0]); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the first account was not re-sealed within a minute:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	m := regexp.MustCompile(`-after (\S+|"(?:[^"\\]|\\.)*")`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no -after in the interrupted reseal's output:\n%s%s", stdout.String(), stderr.String())
	}
	after := m[1]
	if strings.HasPrefix(after, `"`) {
		after = strings.NewReplacer(`\\`, `\`, `\"`, `"`, `\$`, `$`, "\\`", "`").Replace(after[1 : len(after)-1])
	}
	stdoutR, stderrR, code := c.run("reseal", "-after", after)
	t.Logf("resumed with -after %q (exit %d):\n%s%s", after, code, stdoutR, stderrR)
	for _, a := range accounts {
		if _, err := onlyK2.Load(ctx, a); err != nil {
			t.Errorf("after the interrupted reseal and its resumption as printed, %q is still under K1: %v", a, err)
		}
	}
}
