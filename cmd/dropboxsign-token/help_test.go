package main_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// helpEnv sets every environment variable the commands read, to values
// that must not show in the help.
func helpEnv(t *testing.T) *cli {
	return &cli{t: t, env: []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"DROPBOX_SIGN_ENDPOINT=http://127.0.0.1:40715",
		"DROPBOX_SIGN_CLIENT_ID=env-client-id",
		"DROPBOX_SIGN_CLIENT_SECRET=env-client-secret",
		"DROPBOX_SIGN_TOKEN_DIR=/env/token/dir",
		"DROPBOX_SIGN_STORE=redis://:env-store-password@127.0.0.1:40716/3",
		"DROPBOX_SIGN_SEAL_KEYS=ZW52LXNlYWwta2V5LWVudi1zZWFsLWtleS1lbnYtc2U=",
		"DROPBOX_SIGN_RETIRED_KEY_IDS=0e0e0e0e0e0e0e0e",
	}}
}

const printHelp = `Usage: dropboxsign-token print [flags]

Prints a valid access token for an account on stdout, and nothing else: errors
and warnings go to stderr. A token that expires within a minute (or within
half its lifetime, if shorter) is refreshed first, and the new token, with
its rotated refresh token, is stored before it is printed. Exit code 3 means
the account must be authorized (again): stderr says with which login command.

Flags:
  -account name
    	name of the account: the key its token is stored under (default "default")
  -client-id ID
    	the API app's client ID (env DROPBOX_SIGN_CLIENT_ID)
  -client-secret secret
    	the API app's client secret; prefer env DROPBOX_SIGN_CLIENT_SECRET:
    	flags show in ps
  -dir directory
    	directory of the stored tokens (env DROPBOX_SIGN_TOKEN_DIR; default
    	dropboxsign-token in the user's config directory: ~/.config/dropboxsign-token
    	on Linux)
  -endpoint URL
    	base URL of the OAuth endpoints, to use a fake (env DROPBOX_SIGN_ENDPOINT;
    	default https://app.hellosign.com)
  -prefix prefix
    	Redis: the prefix of the store's keys (default dropboxsign:);
    	PostgreSQL: of its tables' names (default dropboxsign_)
  -schema schema
    	PostgreSQL: the schema of the store's tables (default public)
  -store store
    	the token store: file:DIR (or a directory), redis://…, rediss://… (TLS),
    	redis+cluster://HOST:PORT,HOST:PORT/… (or rediss+cluster://), postgres://…
    	(env DROPBOX_SIGN_STORE; prefer it for a URL with a password: flags show
    	in ps; default: the token directory, -dir)
  -timeout duration
    	how long to wait for a refresh (default 30s)
`

const statusFlags = `Flags:
  -dir directory
    	directory of the stored tokens (env DROPBOX_SIGN_TOKEN_DIR; default
    	dropboxsign-token in the user's config directory: ~/.config/dropboxsign-token
    	on Linux)
  -json
    	print JSON for scripts (its shape is in docs/cli.md)
  -prefix prefix
    	Redis: the prefix of the store's keys (default dropboxsign:);
    	PostgreSQL: of its tables' names (default dropboxsign_)
  -schema schema
    	PostgreSQL: the schema of the store's tables (default public)
  -show-secrets
    	also print access and refresh tokens
  -store store
    	the token store: file:DIR (or a directory), redis://…, rediss://… (TLS),
    	redis+cluster://HOST:PORT,HOST:PORT/… (or rediss+cluster://), postgres://…
    	(env DROPBOX_SIGN_STORE; prefer it for a URL with a password: flags show
    	in ps; default: the token directory, -dir)
`

// Help goes to stderr, once, exit code 0, with each flag once and its one
// default, whatever the environment sets; `help CMD` is `CMD -h`.
func TestHelpShowsEachFlagOnceWithOneDefault(t *testing.T) {
	t.Parallel()
	c := helpEnv(t)
	for _, args := range [][]string{{"print", "-h"}, {"print", "--help"}, {"help", "print"}} {
		out, errOut, code := c.run(args...)
		if code != 0 || out != "" || errOut != printHelp {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s\nwant:\n%s", args, code, out, errOut, printHelp)
		}
	}
	if _, errOut, _ := c.run("status", "-h"); !strings.HasSuffix(errOut, "\n\n"+statusFlags) {
		t.Errorf("status -h: the flags are not exactly -dir, -json, -prefix, -schema, -show-secrets, -store:\n%s", errOut)
	}
	flagLine := regexp.MustCompile(`^  -([a-z-]+)`)
	for _, cmd := range []string{"login", "print", "status", "keys", "reseal", "disconnect", "forget", "fake", "demo"} {
		out, errOut, code := c.run(cmd, "-h")
		if code != 0 || out != "" || !strings.HasPrefix(errOut, "Usage: dropboxsign-token "+cmd+" [flags]\n\n") {
			t.Errorf("%s -h: exit %d, stdout %q, stderr:\n%s", cmd, code, out, errOut)
		}
		seen := map[string]bool{}
		for _, line := range strings.Split(errOut, "\n") {
			if m := flagLine.FindStringSubmatch(line); m != nil {
				if seen[m[1]] {
					t.Errorf("%s -h shows -%s twice", cmd, m[1])
				}
				seen[m[1]] = true
			}
			if strings.Count(line, "(default") > 1 {
				t.Errorf("%s -h: two defaults on one line: %q", cmd, line)
			}
		}
		for _, leaked := range []string{"40715", "env-client", "/env/token/dir", "40716", "env-store", "ZW52", "0e0e0e"} {
			if strings.Contains(errOut, leaked) {
				t.Errorf("%s -h shows a value from the environment (%s):\n%s", cmd, leaked, errOut)
			}
		}
	}
	out, errOut, code := c.run("-h")
	if code != 0 || out != "" || !strings.HasPrefix(errOut, "Usage: dropboxsign-token <command> [flags]\n") ||
		!regexpLine(errOut, `^  fake +serve a fake Dropbox Sign`) || !regexpLine(errOut, `^  disconnect +disconnect an account`) ||
		!regexpLine(errOut, `^  keys +count the tokens by the encryption key`) || !regexpLine(errOut, `^  reseal +seal every token with the first key`) || !strings.Contains(errOut, "Exit codes: 0 success, 1 failure, 2 usage error, 3 ") {
		t.Errorf("-h: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
}

// A bad flag's error shows once, with the command's flags and where to
// find its usage, and nothing on stdout: exit code 2.
func TestUnknownFlagErrorShowsOnce(t *testing.T) {
	t.Parallel()
	c := helpEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"print", "-nope"}, "dropboxsign-token print: flag provided but not defined: -nope " +
			"(print takes -account, -client-id, -client-secret, -dir, -endpoint, -prefix, -schema, -store, -timeout)\n" +
			"Run 'dropboxsign-token print -h' for usage.\n"},
		{[]string{"status", "-account", "nobody"}, "dropboxsign-token status: flag provided but not defined: -account " +
			"(status takes -dir, -json, -prefix, -schema, -show-secrets, -store)\n" +
			"Run 'dropboxsign-token status -h' for usage.\n"},
		{[]string{"status", "-endpoint", "http://127.0.0.1:1"}, "dropboxsign-token status: flag provided but not defined: -endpoint " +
			"(status takes -dir, -json, -prefix, -schema, -show-secrets, -store)\n" +
			"Run 'dropboxsign-token status -h' for usage.\n"},
		{[]string{"print", "-timeout", "soon"}, "dropboxsign-token print: invalid value \"soon\" for flag -timeout: parse error\n" +
			"Run 'dropboxsign-token print -h' for usage.\n"},
		{[]string{"print", "alice"}, "dropboxsign-token print: unexpected argument \"alice\"\n" +
			"Run 'dropboxsign-token print -h' for usage.\n"},
	} {
		out, errOut, code := c.run(tc.args...)
		if code != 2 || out != "" || errOut != tc.want {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s\nwant:\n%s", tc.args, code, out, errOut, tc.want)
		}
	}
}

// regexpLine reports whether a line of text matches pattern.
func regexpLine(text, pattern string) bool {
	return regexp.MustCompile("(?m)" + pattern).MatchString(text)
}
