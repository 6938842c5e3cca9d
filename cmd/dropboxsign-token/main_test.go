package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dropboxsign-token-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "dropboxsign-token")
	if out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the binary: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs the binary with a clean environment of its own.
type cli struct {
	t   *testing.T
	env []string
}

func newCLI(t *testing.T, srv *dropboxsigntest.Server) *cli {
	return &cli{t: t, env: []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"DROPBOX_SIGN_TOKEN_DIR=" + filepath.Join(t.TempDir(), "tokens"),
		"DROPBOX_SIGN_ENDPOINT=" + srv.URL,
		"DROPBOX_SIGN_CLIENT_ID=" + srv.ClientID,
		"DROPBOX_SIGN_CLIENT_SECRET=" + srv.ClientSecret,
	}}
}

func (c *cli) dir() string {
	for _, e := range c.env {
		if v, ok := strings.CutPrefix(e, "DROPBOX_SIGN_TOKEN_DIR="); ok {
			return v
		}
	}
	return ""
}

func (c *cli) command(args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = c.env
	return cmd
}

// run runs a command to its end and returns stdout, stderr and exit code.
func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := c.command(args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// login is a running `login` command.
type login struct {
	t       *testing.T
	cmd     *exec.Cmd
	authURL string      // the authorize URL it printed
	lines   chan string // what it says on stderr after "Waiting", closed at its end
	said    strings.Builder
}

// startLogin starts `login` and reads its stderr up to the "Waiting" line.
func (c *cli) startLogin(listen string, args ...string) *login {
	c.t.Helper()
	cmd := c.command(append([]string{"login", "-listen", listen, "-timeout", "20s"}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cmd.Process.Kill() }) // if the test ends before it does
	l := &login{t: c.t, cmd: cmd, lines: make(chan string, 16)}
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		l.said.WriteString(lines.Text() + "\n")
		if u, ok := strings.CutPrefix(strings.TrimSpace(lines.Text()), "http"); ok && l.authURL == "" {
			l.authURL = "http" + u
		}
		if strings.HasPrefix(lines.Text(), "Waiting") {
			break
		}
	}
	go func() {
		defer close(l.lines)
		for lines.Scan() {
			l.lines <- lines.Text()
		}
	}()
	return l
}

// nextLine returns the next line login says, failing if it ends first or
// says nothing for long.
func (l *login) nextLine() string {
	l.t.Helper()
	select {
	case line, ok := <-l.lines:
		if !ok {
			l.t.Fatalf("login ended; it said:\n%s", l.said.String())
		}
		l.said.WriteString(line + "\n")
		return line
	case <-time.After(15 * time.Second):
		l.t.Fatalf("login said nothing more; it said:\n%s", l.said.String())
		return ""
	}
}

// wait waits for login to exit and returns all it said and its exit code.
func (l *login) wait() (string, int) {
	for line := range l.lines {
		l.said.WriteString(line + "\n")
	}
	l.cmd.Wait()
	return l.said.String(), l.cmd.ProcessState.ExitCode()
}

func TestLoginThenPrintAfterExpiry(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)
	listen := freeAddr(t)
	srv.SetCallbackURL("http://" + listen + "/callback")

	l := c.startLogin(listen, "-account", "alice")
	if !strings.HasPrefix(l.authURL, srv.URL+"/oauth/authorize?") || !strings.Contains(l.authURL, "state=") {
		t.Fatalf("authorize URL %q", l.authURL)
	}
	// The browser: consent, then the redirect to the CLI's callback.
	resp, err := http.Get(l.authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Authorized") {
		t.Errorf("callback page: %d %s", resp.StatusCode, body)
	}
	said, code := l.wait()
	if code != 0 || !strings.Contains(said, `token for account "alice" is stored`) {
		t.Fatalf("login exited %d:\n%s", code, said)
	}

	path := filepath.Join(c.dir(), "alice.json")
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v, mode %v; want 0600", path, err, info.Mode().Perm())
	}
	if dir, _ := os.Stat(c.dir()); dir.Mode().Perm() != 0o700 {
		t.Errorf("token directory mode %v, want 0700", dir.Mode().Perm())
	}
	stored := readStored(t, path)

	out, errOut, code := c.run("print", "-account", "alice")
	if code != 0 || out != stored.Token.AccessToken+"\n" || srv.Stats().Refreshes != 0 {
		t.Fatalf("print of a valid token: %q, %q, exit %d", out, errOut, code)
	}

	// Expire it on disk: print must refresh, store the rotated refresh
	// token, and print only the new access token.
	stored.Token.Expiry = time.Now().Add(-time.Minute)
	b, _ := json.Marshal(stored)
	os.WriteFile(path, b, 0o600)
	out, errOut, code = c.run("print", "-account", "alice")
	after := readStored(t, path)
	if code != 0 || out != after.Token.AccessToken+"\n" || after.Token.AccessToken == stored.Token.AccessToken {
		t.Fatalf("print after expiry: %q, %q, exit %d; stored %+v", out, errOut, code, after.Token)
	}
	if after.Token.RefreshToken == stored.Token.RefreshToken || srv.Stats().Refreshes != 1 || srv.Stats().StaleRefreshTokens != 0 {
		t.Errorf("the rotated refresh token was not stored: %+v, %+v", after.Token, srv.Stats())
	}

	out, _, code = c.run("status")
	if code != 0 || !strings.Contains(out, "alice") || strings.Contains(out, after.Token.AccessToken) || strings.Contains(out, after.Token.RefreshToken) {
		t.Errorf("status (exit %d) shows secrets or misses the account:\n%s", code, out)
	}
	out, _, _ = c.run("status", "-show-secrets")
	if !strings.Contains(out, after.Token.AccessToken) {
		t.Errorf("status -show-secrets:\n%s", out)
	}
}

type storedRecord struct {
	Key   string `json:"key"`
	Token struct {
		AccessToken  string    `json:"access_token"`
		TokenType    string    `json:"token_type,omitempty"`
		RefreshToken string    `json:"refresh_token,omitempty"`
		Expiry       time.Time `json:"expiry,omitempty"`
		ExpiresIn    int64     `json:"expires_in,omitempty"`
	} `json:"token"`
	SavedAt time.Time `json:"saved_at"`
}

func readStored(t *testing.T, path string) storedRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec storedRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// A forged callback gets an error page and the login keeps waiting: here
// for nothing, until its timeout; no code is exchanged. Consent denied in
// this login's own callback ends it at once.
func TestLoginRefusesAWrongStateAndDeniedConsent(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)

	listen := freeAddr(t)
	l := c.startLogin(listen, "-timeout", "3s")
	resp, err := http.Get("http://" + listen + "/callback?code=stolen&state=forged")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	said, code := l.wait()
	if code != 1 || !strings.Contains(said, "Refused a callback with a wrong state") ||
		!strings.Contains(said, "no authorization callback of this login arrived in time") || resp.StatusCode != 400 {
		t.Errorf("forged callback: exit %d, page %d:\n%s", code, resp.StatusCode, said)
	}
	if srv.Stats().TokenRequests != 0 {
		t.Error("a code with a forged state was exchanged")
	}

	listen = freeAddr(t)
	srv.SetCallbackURL("http://" + listen + "/callback")
	srv.SetDenyConsent(true)
	l = c.startLogin(listen)
	if resp, err := http.Get(l.authURL); err == nil {
		resp.Body.Close()
	}
	said, code = l.wait()
	if code != 1 || !strings.Contains(said, "not granted: access_denied") {
		t.Errorf("denied consent: exit %d:\n%s", code, said)
	}
}

// Callbacks that are not this login's (a wrong state, none, a stale tab's
// denial) get a plain-text 400 page and one line each on stderr, which shows
// nothing of the request; the login keeps waiting and completes with the
// real callback.
func TestLoginKeepsWaitingAfterAForgedCallback(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)
	listen := freeAddr(t)
	srv.SetCallbackURL("http://" + listen + "/callback")
	l := c.startLogin(listen, "-account", "alice")

	for _, query := range []string{
		"code=stolen-code&state=forged-state%1b%5b31m",
		"code=stolen-code",
		"error=access_denied&state=stale-state",
	} {
		resp, err := http.Get("http://" + listen + "/callback?" + query)
		if err != nil {
			t.Fatalf("%s: %v (did the login end?)", query, err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
			!strings.Contains(string(page), "does not belong to the login waiting here") {
			t.Errorf("%s: page %d %q %q", query, resp.StatusCode, resp.Header.Get("Content-Type"), page)
		}
		line := l.nextLine()
		if !strings.HasPrefix(line, "Refused a callback") || !strings.Contains(line, "still waiting") ||
			strings.Contains(line, "stolen") || strings.Contains(line, "forged-") || strings.Contains(line, "stale-") ||
			strings.ContainsFunc(line, func(r rune) bool { return r < 0x20 }) {
			t.Errorf("%s: login said %q", query, line)
		}
	}

	resp, err := http.Get(l.authURL) // the real flow: consent, redirect, callback
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	said, code := l.wait()
	if code != 0 || resp.StatusCode != 200 || !strings.Contains(said, `token for account "alice" is stored`) {
		t.Fatalf("login after forged callbacks: exit %d, page %d:\n%s", code, resp.StatusCode, said)
	}
	if n := strings.Count(said, "Refused a callback"); n != 3 {
		t.Errorf("%d lines about refused callbacks, want 3:\n%s", n, said)
	}
	stored := readStored(t, filepath.Join(c.dir(), "alice.json"))
	if stored.Key != "alice" || stored.Token.AccessToken == "" || srv.Stats().TokenRequests != 1 {
		t.Errorf("stored %+v after %d token requests; want alice's token from one exchange", stored, srv.Stats().TokenRequests)
	}
}

func TestClearErrorsForBadInput(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)
	busy, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy.Close()
	os.MkdirAll(c.dir(), 0o700)
	os.WriteFile(filepath.Join(c.dir(), "broken.json"), []byte("{not json"), 0o600)

	noID := &cli{t: t, env: slicesWithout(c.env, "DROPBOX_SIGN_CLIENT_ID=")}
	for _, tc := range []struct {
		name string
		c    *cli
		args []string
		code int
		says string
	}{
		{"no command", c, nil, 2, "Usage: dropboxsign-token <command>"},
		{"unknown command", c, []string{"fly"}, 2, `unknown command "fly"`},
		{"help", c, []string{"login", "-h"}, 0, "-callback-path"},
		{"bad flag", c, []string{"print", "-nope"}, 2, "flag provided but not defined"},
		{"missing client id", noID, []string{"login"}, 2, "missing client ID"},
		{"port in use", c, []string{"login", "-listen", busy.Addr().String()}, 1, "cannot listen on"},
		{"non-loopback listener", c, []string{"login", "-listen", "0.0.0.0:0"}, 2, "must be on a loopback address"},
		{"bad endpoint", c, []string{"print", "-endpoint", "ftp://x"}, 2, "is not an http(s) base URL"},
		{"no token", c, []string{"print", "-account", "nobody"}, 1, "run 'dropboxsign-token login -account nobody'"},
		{"corrupt token file", c, []string{"print", "-account", "broken"}, 1, "broken.json is not a token file"},
	} {
		out, errOut, code := tc.c.run(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.says) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", tc.name, code, errOut, tc.code, tc.says)
		}
		if out != "" {
			t.Errorf("%s: wrote %q on stdout", tc.name, out)
		}
	}
}

func slicesWithout(env []string, prefix string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

func TestDemoPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "demo", "-duration", "5s", "-lifetime", "2s")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	if n := regexp.MustCompile(`(?m)^ok  `).FindAll(out, -1); len(n) != 5 || bytes.Contains(out, []byte("\r")) {
		t.Errorf("demo output (not a terminal: plain lines, five checks):\n%s", out)
	}
}
