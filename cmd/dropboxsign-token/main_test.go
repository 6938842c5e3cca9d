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
	cmd.Env = append(c.env, noRaceExitSleep)
	return cmd
}

// noRaceExitSleep spares each run of the -race binary the second the race
// detector otherwise sleeps at a successful exit.
const noRaceExitSleep = "GORACE=atexit_sleep_ms=0"

// run runs a command to its end and returns stdout, stderr and exit code.
func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := c.command(args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	// A command that should have ended but serves on is killed, and fails.
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
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
	t.Parallel()
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
	t.Parallel()
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
	if code != 0 || resp.StatusCode != 200 || !strings.Contains(said, "token for account alice is stored") {
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

// Every bad input gets an error that says what is wrong and what to do, on
// stderr, with the documented exit code, and nothing on stdout; the commands
// run in parallel, each its own process.
func TestClearErrorsForBadInput(t *testing.T) {
	t.Parallel()
	srv := dropboxsigntest.NewServer()
	t.Cleanup(srv.Close) // after the parallel subtests
	c := newCLI(t, srv)
	busy, _ := net.Listen("tcp", "127.0.0.1:0")
	t.Cleanup(func() { busy.Close() })
	os.MkdirAll(c.dir(), 0o700)
	os.WriteFile(filepath.Join(c.dir(), "broken.json"), []byte("{not json"), 0o600)

	with := func(env ...string) *cli {
		e := c.env
		for _, v := range env {
			name, _, _ := strings.Cut(v, "=")
			e = append(slicesWithout(e, name+"="), v)
		}
		return &cli{t: t, env: e}
	}
	noID := &cli{t: t, env: slicesWithout(c.env, "DROPBOX_SIGN_CLIENT_ID=")}
	noDir := with("DROPBOX_SIGN_TOKEN_DIR=" + filepath.Join(t.TempDir(), "missing"))
	stopped := "http://" + freeAddr(t)
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
		{"missing client id", noID, []string{"login"}, 2, "missing client ID: pass -client-id or set DROPBOX_SIGN_CLIENT_ID"},
		{"port in use", c, []string{"login", "-listen", busy.Addr().String()}, 1, "cannot listen on"},
		{"non-loopback listener", c, []string{"login", "-listen", "0.0.0.0:0"}, 2, "must be on a loopback address"},
		{"bad endpoint", c, []string{"print", "-endpoint", "ftp://x"}, 2, "-endpoint \"ftp://x\" is not an http(s) base URL"},
		{"bad endpoint from env", with("DROPBOX_SIGN_ENDPOINT=ftp://x"), []string{"print"}, 2, "DROPBOX_SIGN_ENDPOINT \"ftp://x\" is not"},
		{"plain http endpoint", c, []string{"print", "-endpoint", "http://example.com"}, 2, "plain http is allowed only on loopback"},
		{"empty account", c, []string{"print", "-account", ""}, 2, "-account is empty: name the account"},
		{"no token", c, []string{"print", "-account", "nobody"}, 3, "no token stored for account nobody in " + c.dir() + ": run 'dropboxsign-token login -account nobody'"},
		{"no token directory", noDir, []string{"print"}, 3, "missing does not exist): run 'dropboxsign-token login -account default'"},
		{"corrupt token file", c, []string{"print", "-account", "broken"}, 1, "broken.json is not a token file"},
		{"approve against Dropbox Sign", with("DROPBOX_SIGN_ENDPOINT="), []string{"login", "-approve"}, 2,
			"works only against a fake Dropbox Sign on loopback"},
		{"approve and open", c, []string{"login", "-approve", "-open"}, 2, "-approve consents without a browser: it excludes -open"},
		{"approve, callback elsewhere", c, []string{"login", "-approve", "-listen", freeAddr(t), "-timeout", "10s"}, 1,
			"-approve: the fake sends the consent to " + srv.URL + "/callback, not to this login's callback"},
		{"approve, fake stopped", with("DROPBOX_SIGN_ENDPOINT=" + stopped), []string{"login", "-approve", "-listen", freeAddr(t), "-timeout", "10s"}, 1,
			"-approve: no answer from the authorize page (is the fake running, at this endpoint?)"},
		{"approve, wrong client ID", with("DROPBOX_SIGN_CLIENT_ID=someone-else"), []string{"login", "-approve", "-listen", freeAddr(t), "-timeout", "10s"}, 1,
			"the authorize page answered 400 Bad Request, not a redirect to the callback: {\"error\":{\"error_msg\":\"Unknown client_id.\""},
		{"fake on the network", c, []string{"fake", "-listen", "0.0.0.0:0"}, 2, "the fake must be on a loopback address"},
		{"fake, port in use", c, []string{"fake", "-listen", busy.Addr().String()}, 1, "another fake running? stop it, or pick another -listen"},
		{"fake, bad callback", c, []string{"fake", "-callback", "ftp://x"}, 2, "-callback \"ftp://x\" is not an http(s) URL"},
		{"fake, bad lifetime", c, []string{"fake", "-lifetime", "1500ms"}, 2, "-lifetime 1.5s: it must be whole seconds, at least 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, code := tc.c.run(tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.says) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tc.code, tc.says)
			}
			if out != "" {
				t.Errorf("wrote %q on stdout", out)
			}
		})
	}
}

// status reads and never creates: a missing directory is an error (exit 1,
// see TestReview21StatusOfAMissingStoreFails) and is not created; an
// unreadable file is listed, reported on stderr and exits 1.
func TestStatusReadsOnly(t *testing.T) {
	t.Parallel()
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	c := newCLI(t, srv)
	out, errOut, code := c.run("status")
	if code != 1 || out != "" || errOut != "dropboxsign-token status: no token store: "+c.dir()+" does not exist\n" {
		t.Errorf("status of a missing directory: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out, _, code := c.run("status", "-json"); code != 1 || out != "" {
		t.Errorf("status -json of a missing directory: exit %d, stdout %q", code, out)
	}
	if _, err := os.Stat(c.dir()); !os.IsNotExist(err) {
		t.Errorf("status created %s", c.dir())
	}

	approveLogin(t, c, srv, "alice")
	os.WriteFile(filepath.Join(c.dir(), "broken.json"), []byte("{not json"), 0o600)
	out, errOut, code = c.run("status")
	if code != 1 || !regexpLine(out, `^alice +ok `) || !regexpLine(out, `^broken +unreadable +- +- +-$`) ||
		!strings.Contains(errOut, "dropboxsign-token status: account broken: ") || !strings.Contains(errOut, "broken.json is not a token file") {
		t.Errorf("status with an unreadable file: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	list := statusJSON(t, c, "status", "-json")
	if len(list.Accounts) != 2 || !strings.Contains(stringOf(list.Accounts[1]["error"]), "is not a token file") {
		t.Errorf("status -json with an unreadable file: %+v", list)
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
	t.Parallel()
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "demo", "-duration", "5s", "-lifetime", "2s")
	cmd.Env = append(os.Environ(), noRaceExitSleep)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	if n := regexp.MustCompile(`(?m)^ok  `).FindAll(out, -1); len(n) != 5 || bytes.Contains(out, []byte("\r")) {
		t.Errorf("demo output (not a terminal: plain lines, five checks):\n%s", out)
	}
}
