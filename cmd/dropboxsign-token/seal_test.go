package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/pgtest"
	"github.com/dropboxsign-go/dropboxsign/internal/redistest"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

// sealKey is a fresh AES-256 key, and its base64 as an operator writes it.
type sealKey struct {
	raw []byte
	b64 string
	id  string
}

func newSealKey(t *testing.T) sealKey {
	k := make([]byte, 32)
	rand.Read(k)
	return sealKey{raw: k, b64: base64.StdEncoding.EncodeToString(k), id: dropboxsign.KeyID(k)}
}

func sealerOf(t *testing.T, keys ...sealKey) *dropboxsign.Sealer {
	t.Helper()
	var raw [][]byte
	for _, k := range keys {
		raw = append(raw, k.raw)
	}
	s, err := dropboxsign.NewSealer(raw...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storeCLI runs the binary against a store, with no other settings than
// those given: the environment holds no app, no token directory.
func storeCLI(t *testing.T, env ...string) *cli {
	return &cli{t: t, env: append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)}
}

// with returns a copy of c with more environment.
func (c *cli) with(env ...string) *cli {
	return &cli{t: c.t, env: append(append([]string(nil), c.env...), env...)}
}

// rotationStore is a store the rotation test writes tokens into with the
// library, as a fleet would have, under a Sealer of the test's choice.
type rotationStore struct {
	name     string
	storeArg string // the -store value
	env      []string
	secret   string // a password in storeArg, never to be printed; "" if none
	open     func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.Store
}

// TestRotationOnEveryStore is issue 21's "Done when", on a token directory,
// Redis, Redis Cluster and PostgreSQL: tokens sealed under K1 (written with
// the library); status with K2 alone reports each as sealed under K1's ID
// and exits 1; keys with K2,K1 counts them under K1; reseal with K2,K1
// writes them all again; then status with K2 alone exits 0 and reads every
// token, as the library does. No output holds a key, a token or the store's
// password.
func TestRotationOnEveryStore(t *testing.T) {
	stores := []func(t *testing.T) rotationStore{
		func(t *testing.T) rotationStore {
			dir := filepath.Join(t.TempDir(), "tokens")
			return rotationStore{name: "file", storeArg: "file:" + dir, open: func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.Store {
				f, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(s))
				if err != nil {
					t.Fatal(err)
				}
				return f
			}}
		},
		func(t *testing.T) rotationStore {
			srv := redistest.Start(t)
			const password = "redis-Pw-6c1f0e9a"
			admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
			if err := admin.ConfigSet(context.Background(), "requirepass", password).Err(); err != nil {
				t.Fatal(err)
			}
			admin.Close()
			client := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: password})
			t.Cleanup(func() { client.Close() })
			return rotationStore{name: "redis", storeArg: "redis://:" + password + "@" + srv.Addr + "/0", secret: password,
				open: func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.Store {
					st, err := redisstore.New(client, redisstore.Options{Sealer: s})
					if err != nil {
						t.Fatal(err)
					}
					return st
				}}
		},
		func(t *testing.T) rotationStore {
			c := redistest.StartCluster(t, 3, 0)
			client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
			t.Cleanup(func() { client.Close() })
			return rotationStore{name: "redis-cluster", storeArg: "redis+cluster://" + strings.Join(c.Addrs()[:2], ","),
				open: func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.Store {
					st, err := redisstore.New(client, redisstore.Options{Sealer: s})
					if err != nil {
						t.Fatal(err)
					}
					return st
				}}
		},
		func(t *testing.T) rotationStore {
			srv := pgtest.Start(t)
			srv.MustQuery(t, "CREATE SCHEMA cli")
			pool, err := pgxpool.New(context.Background(), srv.DSN())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			opts := pgstore.Options{Schema: "cli", TablePrefix: "tok_"}
			if err := pgstore.CreateTables(context.Background(), pool, opts); err != nil {
				t.Fatal(err)
			}
			const password = "pg-Pw-91d3b7c2"
			url := fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", password, srv.Port)
			return rotationStore{name: "postgres", storeArg: url, secret: password,
				open: func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.Store {
					o := opts
					o.Sealer = s
					st, err := pgstore.New(pool, o)
					if err != nil {
						t.Fatal(err)
					}
					return st
				}}
		},
	}
	for i, setup := range stores {
		t.Run([]string{"file", "redis", "redis-cluster", "postgres"}[i], func(t *testing.T) {
			t.Parallel()
			testRotation(t, setup(t))
		})
	}
}

func testRotation(t *testing.T, st rotationStore) {
	ctx := context.Background()
	k1, k2 := newSealKey(t), newSealKey(t)
	accounts := []string{"alice", "bob", "carol", "dave", "erin"}
	want := map[string]*oauth2.Token{}
	old := st.open(t, sealerOf(t, k1))
	for _, a := range accounts {
		tok := &oauth2.Token{AccessToken: "at-" + a + "-" + rand.Text(), RefreshToken: "rt-" + a + "-" + rand.Text(), Expiry: time.Now().Add(time.Hour).Round(time.Second)}
		if err := old.Save(ctx, a, nil, tok); err != nil {
			t.Fatal(err)
		}
		want[a] = tok
	}
	// A disconnected account holds no token: no key concerns it.
	if err := old.Disconnect(ctx, "zoe"); err != nil {
		t.Fatal(err)
	}
	secrets := []string{k1.b64, k2.b64, base64.RawStdEncoding.EncodeToString(k1.raw)}
	if st.secret != "" {
		secrets = append(secrets, st.secret)
	}
	for _, tok := range want {
		secrets = append(secrets, tok.AccessToken, tok.RefreshToken)
	}
	c := storeCLI(t, append([]string{"DROPBOX_SIGN_STORE=" + st.storeArg}, st.env...)...)
	pgFlags := func(args ...string) []string {
		if st.name == "postgres" {
			return append(args, "-schema", "cli", "-prefix", "tok_")
		}
		return args
	}
	check := func(what, stdout, stderr string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(stdout+stderr, s) {
				t.Errorf("%s: a secret (%.6s…) is in the output:\n%s%s", what, s, stdout, stderr)
			}
		}
	}
	k2only := c.with("DROPBOX_SIGN_SEAL_KEYS=" + k2.b64)
	rotating := c.with("DROPBOX_SIGN_SEAL_KEYS=" + k2.b64 + "," + k1.b64)

	// Before the reseal: K2 alone opens none of them, and says under which key they are.
	stdout, stderr, code := k2only.run(pgFlags("status")...)
	check("status with K2 before the reseal", stdout, stderr)
	if code != 1 {
		t.Fatalf("status with K2 before the reseal: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	wantLine := fmt.Sprintf("5 tokens cannot be opened with the keys at hand (DROPBOX_SIGN_SEAL_KEYS): sealed with a key not configured here (5 under key %s)", k1.id)
	if !strings.Contains(stderr, wantLine) || !strings.Contains(stdout, wantLine) {
		t.Errorf("status with K2 before the reseal does not say %q:\nstdout:\n%sstderr:\n%s", wantLine, stdout, stderr)
	}
	for _, a := range accounts {
		if !regexpLine(stdout, `^`+a+` +no key +- +- +-$`) || !strings.Contains(stdout, a+": sealed with encryption key "+k1.id+", which DROPBOX_SIGN_SEAL_KEYS does not hold") {
			t.Errorf("status with K2 before the reseal: no line says %s is sealed under %s:\n%s", a, k1.id, stdout)
		}
	}
	if !regexpLine(stdout, `^zoe +disconnected `) {
		t.Errorf("status: zoe is not listed disconnected:\n%s", stdout)
	}
	var list struct {
		Accounts []struct {
			Key        string `json:"key"`
			MissingKey string `json:"missing_key"`
		} `json:"accounts"`
	}
	stdout, stderr, code = k2only.run(pgFlags("status", "-json")...)
	check("status -json with K2 before the reseal", stdout, stderr)
	if err := json.Unmarshal([]byte(stdout), &list); err != nil || code != 1 || len(list.Accounts) != 6 {
		t.Fatalf("status -json with K2: exit %d, %v:\n%s%s", code, err, stdout, stderr)
	}
	for _, a := range list.Accounts {
		if (a.Key == "zoe") != (a.MissingKey == "") || a.MissingKey != "" && a.MissingKey != k1.id {
			t.Errorf("status -json: account %s: missing_key %q, want %q", a.Key, a.MissingKey, k1.id)
		}
	}

	// The census, with both keys: 5 under K1, none under K2.
	r := keysJSON(t, rotating, pgFlags()...)
	if r.Tokens != 5 || r.Reseal != 5 || r.Current != 0 || len(r.Keys) != 2 ||
		r.Keys[0] != (keyLine{ID: k2.id, Tokens: 0, Configured: 1, Seals: true}) ||
		r.Keys[1] != (keyLine{ID: k1.id, Tokens: 5, Configured: 2}) {
		t.Errorf("keys with K2,K1 before the reseal: %+v", r)
	}

	// The reseal, as the issue gives it: no token is under K2 yet (no
	// replica runs here to refresh one), so it notes the key's ID to
	// check, and re-seals.
	stdout, stderr, code = rotating.run(pgFlags("reseal")...)
	check("reseal", stdout, stderr)
	if code != 0 || !strings.Contains(stdout, "Re-sealed 5 tokens with key "+k2.id+"; 0 already were; 0 changed meanwhile") {
		t.Fatalf("reseal: exit %d:\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "Note: no token is sealed with key "+k2.id+" yet") {
		t.Errorf("reseal with no token under K2: no note naming the key to check:\n%s", stderr)
	}
	if !strings.Contains(stderr, "  5 visited: 5 re-sealed, 0 changed meanwhile, 0 cannot be opened (last account: erin)") {
		t.Errorf("reseal: no progress on stderr:\n%s", stderr)
	}

	// After: K2 alone reads every token, as the library does.
	stdout, stderr, code = k2only.run(pgFlags("status")...)
	check("status with K2 after the reseal", stdout, stderr)
	if code != 0 {
		t.Fatalf("status with K2 after the reseal: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, a := range accounts {
		if !regexpLine(stdout, `^`+a+` +ok +`) {
			t.Errorf("status with K2 after the reseal: %s is not ok:\n%s", a, stdout)
		}
	}
	var secretsList struct {
		Accounts []struct {
			Key          string `json:"key"`
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		} `json:"accounts"`
	}
	stdout, stderr, code = k2only.run(pgFlags("status", "-json", "-show-secrets")...)
	if err := json.Unmarshal([]byte(stdout), &secretsList); err != nil || code != 0 {
		t.Fatalf("status -json -show-secrets with K2: exit %d, %v\n%s", code, err, stderr)
	}
	read := 0
	for _, a := range secretsList.Accounts {
		if w := want[a.Key]; w != nil {
			if a.AccessToken != w.AccessToken || a.RefreshToken != w.RefreshToken {
				t.Errorf("status -show-secrets with K2: account %s holds other tokens than those written", a.Key)
			}
			read++
		}
	}
	if read != len(accounts) {
		t.Errorf("status -show-secrets with K2 read %d tokens, want %d", read, len(accounts))
	}
	newStore := st.open(t, sealerOf(t, k2))
	for _, a := range accounts {
		if got, err := newStore.Load(ctx, a); err != nil || got.AccessToken != want[a].AccessToken || got.RefreshToken != want[a].RefreshToken {
			t.Errorf("the library with K2 alone: Load(%s): %v", a, err)
		}
	}
	r = keysJSON(t, k2only.with("DROPBOX_SIGN_RETIRED_KEY_IDS="+strings.ToUpper(k1.id)), pgFlags()...)
	if r.Tokens != 5 || r.Current != 5 || r.Reseal != 0 || len(r.Unopenable) != 0 || len(r.Keys) != 2 ||
		r.Keys[0] != (keyLine{ID: k2.id, Tokens: 5, Configured: 1, Seals: true}) ||
		r.Keys[1] != (keyLine{ID: k1.id, Retired: true}) {
		t.Errorf("keys with K2 (K1 retired) after the reseal: %+v", r)
	}

	// disconnect, and forget, on the same store.
	stdout, stderr, code = k2only.run(pgFlags("disconnect", "-account", "bob")...)
	check("disconnect", stdout, stderr)
	if code != 0 || !strings.Contains(stderr, "Disconnected account bob") {
		t.Errorf("disconnect -account bob: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := newStore.Load(ctx, "bob"); !strings.Contains(fmt.Sprint(err), "disconnected") {
		t.Errorf("after disconnect, the library loads bob: %v", err)
	}
	stdout, stderr, code = k2only.run(pgFlags("forget", "-account", "bob")...)
	check("forget", stdout, stderr)
	if code != 1 || !strings.Contains(stderr, "less than 48h3m0s ago: nothing erased") {
		t.Errorf("forget -account bob, a young mark: exit %d\n%s%s", code, stdout, stderr)
	}
}

// keyLine and keysReport are keys -json's shape.
type keyLine struct {
	ID         string `json:"id"`
	Tokens     int    `json:"tokens"`
	Configured int    `json:"configured"`
	Seals      bool   `json:"seals"`
	Retired    bool   `json:"retired"`
}

type keysReport struct {
	Store      string         `json:"store"`
	Tokens     int            `json:"tokens"`
	Plain      int            `json:"plain"`
	Current    int            `json:"current"`
	Reseal     int            `json:"reseal"`
	Keys       []keyLine      `json:"keys"`
	Unopenable map[string]int `json:"unopenable"`
}

func keysJSON(t *testing.T, c *cli, args ...string) keysReport {
	t.Helper()
	stdout, stderr, code := c.run(append([]string{"keys", "-json"}, args...)...)
	var r keysReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || code != 0 {
		t.Fatalf("keys -json: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	return r
}

// TestResealResumesAfterAnInterrupt: SIGINT stops a reseal (exit 1) with the
// account to resume after; resumed with -after, it re-seals the rest, and
// the census finds every token under the new key.
func TestResealResumesAfterAnInterrupt(t *testing.T) {
	k1, k2 := newSealKey(t), newSealKey(t)
	dir := filepath.Join(t.TempDir(), "tokens")
	old, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(sealerOf(t, k1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"a1", "a2", "a3", "a4"} {
		if err := old.Save(context.Background(), a, nil, &oauth2.Token{AccessToken: "at-" + a, RefreshToken: "rt-" + a}); err != nil {
			t.Fatal(err)
		}
	}
	c := storeCLI(t, "DROPBOX_SIGN_SEAL_KEYS="+k2.b64+","+k1.b64)
	// One token every 100 s: the first is written at once, the next would
	// wait; the interrupt comes meanwhile, however slow the machine.
	// -force skips the census before the first write (and its note on
	// stderr): this test reads the progress lines.
	cmd := c.command("reseal", "-store", dir, "-rate", "0.01", "-force")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderrPipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A reseal that the signal does not stop is killed, and fails below.
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	t.Cleanup(func() { timer.Stop(); cmd.Process.Kill() })
	lines := bufio.NewScanner(stderrPipe)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "Re-sealing the tokens of "+dir+" with key "+k2.id) {
		t.Fatalf("reseal's first line: %q", lines.Text())
	}
	cmd.Process.Signal(syscall.SIGINT)
	var stderr strings.Builder
	for lines.Scan() {
		stderr.WriteString(lines.Text() + "\n")
	}
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("interrupted reseal: exit %d (%v), want 1\n%s%s", code, err, stdout.String(), stderr.String())
	}
	var after []string
	switch {
	case strings.Contains(stderr.String(), "to resume, run it again with -after "):
		last := strings.TrimSpace(stderr.String()[strings.LastIndex(stderr.String(), "-after ")+len("-after "):])
		after = []string{"-after", last}
	case strings.Contains(stderr.String(), "to resume, run it again"):
	default:
		t.Fatalf("interrupted reseal names no account to resume after:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "dropboxsign-token reseal: interrupted after ") {
		t.Errorf("interrupted reseal: %s", stderr.String())
	}
	before := keysJSON(t, c, "-store", dir)
	if before.Current == 4 {
		t.Fatalf("the interrupted reseal re-sealed all 4 tokens: %+v", before)
	}
	out, errOut, code := c.run(append([]string{"reseal", "-store", dir, "-force"}, after...)...)
	if code != 0 {
		t.Fatalf("resumed reseal: exit %d\n%s%s", code, out, errOut)
	}
	r := keysJSON(t, c, "-store", dir)
	if r.Tokens != 4 || r.Current != 4 || r.Keys[0].Tokens != 4 || r.Keys[1].Tokens != 0 {
		t.Errorf("after the resumed reseal: %+v", r)
	}
}

// TestStoreAndKeyUsageErrors: a bad store or key list is a usage error
// (exit 2) that says what is wrong, and never shows the password or a key;
// an unreachable store is a failure (exit 1) that names it, password hidden.
func TestStoreAndKeyUsageErrors(t *testing.T) {
	const pw = "Secret-pw-3e8a1d"
	goodKey := newSealKey(t)
	shortKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 16))
	dir := t.TempDir()
	unreachable := "127.0.0.1:" + fmt.Sprint(redistest.FreePort(t))
	for _, tc := range []struct {
		args []string
		env  []string
		code int
		want string
	}{
		{[]string{"status", "-store", "redis://:" + pw + "@127.0.0.1:6379/0?bogus=1"}, nil, 2,
			"dropboxsign-token status: -store redis://xxxxx@127.0.0.1:6379/0?bogus=xxxxx: unexpected option: bogus"},
		{[]string{"keys"}, []string{"DROPBOX_SIGN_STORE=postgres://u:" + pw + "@127.0.0.1/db?sslmode=bogus"}, 2,
			"dropboxsign-token keys: DROPBOX_SIGN_STORE postgres://xxxxx@127.0.0.1/db?sslmode=bogus is not a valid PostgreSQL connection URL"},
		{[]string{"status", "-store", "ftp://host/x"}, nil, 2,
			`dropboxsign-token status: -store "ftp://host/x": unknown store "ftp:": use file:DIR, redis://, rediss://, redis+cluster://, rediss+cluster:// or postgres://`},
		{[]string{"status", "-store", "redis+cluster://:" + pw + "@"}, nil, 2,
			`dropboxsign-token status: -store "redis+cluster://xxxxx@": no node address: write redis+cluster://HOST:PORT[,HOST:PORT…]`},
		{[]string{"status", "-store", "redis+cluster://h1:1,h2:2/3"}, nil, 2,
			`a Redis Cluster has only database 0: no /DB in the URL`},
		{[]string{"status", "-store", "file:"}, nil, 2, `-store "file:" names no directory: write file:DIR`},
		{[]string{"status", "-store", dir, "-dir", dir}, nil, 2, "-store and -dir both name a store: give one"},
		{[]string{"status"}, []string{"DROPBOX_SIGN_STORE=" + dir, "DROPBOX_SIGN_TOKEN_DIR=" + dir}, 2,
			"DROPBOX_SIGN_STORE and DROPBOX_SIGN_TOKEN_DIR are both set: unset one (or pass -store or -dir)"},
		{[]string{"status", "-store", dir, "-schema", "x"}, nil, 2, "-schema is for a PostgreSQL store, and the store is " + dir},
		{[]string{"status", "-store", dir}, []string{"DROPBOX_SIGN_SEAL_KEYS=" + goodKey.b64 + ",not*base64"}, 2,
			"dropboxsign-token status: DROPBOX_SIGN_SEAL_KEYS: encryption key 2 of the list is not base64 (the keys are base64, 32 bytes each, separated by commas, the one that seals first)"},
		{[]string{"keys", "-store", dir}, []string{"DROPBOX_SIGN_SEAL_KEYS=" + shortKey}, 2,
			"DROPBOX_SIGN_SEAL_KEYS: encryption key 1 of the list has 16 bytes, want 32 (AES-256)"},
		{[]string{"keys", "-store", dir}, []string{"DROPBOX_SIGN_SEAL_KEYS=" + goodKey.b64, "DROPBOX_SIGN_RETIRED_KEY_IDS=" + goodKey.b64}, 2,
			"DROPBOX_SIGN_RETIRED_KEY_IDS: entry 1 of the list (44 characters) is not a key ID (16 hexadecimal digits, as 'dropboxsign-token keys' prints them): this looks like an encryption key, not a key ID (dropboxsign-token keys prints IDs)"},
		{[]string{"keys", "-store", dir}, []string{"DROPBOX_SIGN_RETIRED_KEY_IDS=0123456789abcdef"}, 2,
			"DROPBOX_SIGN_RETIRED_KEY_IDS is set but DROPBOX_SIGN_SEAL_KEYS is not"},
		{[]string{"reseal", "-store", dir}, nil, 2, "no keys: set DROPBOX_SIGN_SEAL_KEYS to the new key first"},
		{[]string{"reseal", "-store", dir, "-rate", "NaN"}, []string{"DROPBOX_SIGN_SEAL_KEYS=" + goodKey.b64}, 2, "-rate NaN: want a number of tokens per second above 0"},
		{[]string{"reseal", "-store", dir, "-rate", "0"}, []string{"DROPBOX_SIGN_SEAL_KEYS=" + goodKey.b64}, 2, "-rate 0: want a number of tokens per second above 0"},
		{[]string{"status", "-store", "redis://:" + pw + "@" + unreachable}, nil, 1,
			"dropboxsign-token status: cannot reach the Redis store redis://xxxxx@" + unreachable + ": is it the right address, and up?"},
		{[]string{"disconnect", "-store", "postgres://u:" + pw + "@" + unreachable + "/db?sslmode=disable"}, nil, 1,
			"dropboxsign-token disconnect: cannot reach the PostgreSQL store postgres://xxxxx@" + unreachable + "/db?sslmode=disable:"},
	} {
		c := storeCLI(t, tc.env...)
		stdout, stderr, code := c.run(tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("%q %q: exit %d, want %d with %q\nstdout: %s\nstderr: %s", tc.env, tc.args, code, tc.code, tc.want, stdout, stderr)
		}
		if strings.Contains(stderr, "pool.go") {
			t.Errorf("%q %q: go-redis's log is on stderr:\n%s", tc.env, tc.args, stderr)
		}
		for _, s := range []string{pw, goodKey.b64, shortKey, "not*base64"} {
			if strings.Contains(stdout+stderr, s) {
				t.Errorf("%q %q: the output shows a secret %q:\n%s", tc.env, tc.args, s, stderr)
			}
		}
	}
}
