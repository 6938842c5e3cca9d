package main_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeProc is a running `dropboxsign-token fake`.
type fakeProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	env   map[string]string // parsed from its export line
	intro string            // what it printed before serving
	rest  chan string       // what it prints after, closed at its end
}

// startFake starts the fake command and parses what it prints.
func startFake(t *testing.T, args ...string) *fakeProc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"fake", "-listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir(), noRaceExitSleep}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	f := &fakeProc{t: t, cmd: cmd, env: map[string]string{}, rest: make(chan string, 1)}
	lines := bufio.NewScanner(stdout)
	var intro strings.Builder
	for lines.Scan() {
		line := lines.Text()
		intro.WriteString(line + "\n")
		if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "export ") {
			t.Errorf("fake printed a line that is neither a comment nor an export: %q", line)
		}
		if vars, ok := strings.CutPrefix(line, "export "); ok {
			for _, v := range strings.Fields(vars) {
				name, value, _ := strings.Cut(v, "=")
				f.env[name] = strings.Trim(value, "'")
			}
		}
		if strings.HasPrefix(line, "#   dropboxsign-token status") {
			break
		}
	}
	f.intro = intro.String()
	for _, name := range []string{"DROPBOX_SIGN_ENDPOINT", "DROPBOX_SIGN_CLIENT_ID", "DROPBOX_SIGN_CLIENT_SECRET", "DROPBOX_SIGN_TOKEN_DIR"} {
		if f.env[name] == "" {
			t.Fatalf("fake's export line lacks %s; it printed:\n%s", name, f.intro)
		}
	}
	go func() {
		b, _ := io.ReadAll(stdout)
		f.rest <- string(b)
	}()
	return f
}

// cli returns a CLI whose environment is the fake's export line.
func (f *fakeProc) cli() *cli {
	c := &cli{t: f.t, env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + f.t.TempDir()}}
	for name, value := range f.env {
		c.env = append(c.env, name+"="+value)
	}
	return c
}

// stop signals the fake and returns what it printed at its end and its
// exit code.
func (f *fakeProc) stop(sig os.Signal) (string, int) {
	f.t.Helper()
	f.cmd.Process.Signal(sig)
	select {
	case rest := <-f.rest:
		f.cmd.Wait()
		return rest, f.cmd.ProcessState.ExitCode()
	case <-time.After(15 * time.Second):
		f.t.Fatalf("fake did not stop on %v", sig)
		return "", -1
	}
}

// The walk-through of docs/cli.md, unattended: `fake` in one process, and
// login -approve (a real HTTP callback), print and status pointed at it by
// the lines fake printed; then fake stops cleanly on SIGINT and removes its
// token directory.
func TestWalkFakeLoginPrintStatus(t *testing.T) {
	t.Parallel()
	callback := "http://" + freeAddr(t) + "/cb"
	f := startFake(t, "-callback", callback)
	if !strings.Contains(f.intro, "callback URL is "+callback) {
		t.Errorf("fake does not say its callback URL:\n%s", f.intro)
	}
	c := f.cli()
	listen := strings.TrimSuffix(strings.TrimPrefix(callback, "http://"), "/cb")

	out, said, code := c.run("login", "-approve", "-account", "alice", "-listen", listen, "-callback-path", "/cb")
	if code != 0 || out != "" || !strings.Contains(said, "The token for account alice is stored") ||
		!strings.Contains(said, "Print it with: dropboxsign-token print -account alice") {
		t.Fatalf("login -approve: exit %d, stdout %q, stderr:\n%s", code, out, said)
	}
	dir := f.env["DROPBOX_SIGN_TOKEN_DIR"]
	path := filepath.Join(dir, "alice.json")
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v; want mode 0600", path, err)
	}
	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o700 {
		t.Errorf("token directory mode %v, want 0700", info.Mode().Perm())
	}
	stored := readStored(t, path)

	out, errOut, code := c.run("print", "-account", "alice")
	if code != 0 || out != stored.Token.AccessToken+"\n" || errOut != "" {
		t.Fatalf("print: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	apiAccepts(t, f.env["DROPBOX_SIGN_ENDPOINT"], strings.TrimSpace(out))

	// Expired on disk: print refreshes, stores the rotated refresh token
	// and prints only the new access token, which the fake's API accepts.
	stored.Token.Expiry = time.Now().Add(-time.Minute)
	b, _ := json.Marshal(stored)
	os.WriteFile(path, b, 0o600)
	out, errOut, code = c.run("print", "-account", "alice")
	after := readStored(t, path)
	if code != 0 || out != after.Token.AccessToken+"\n" || errOut != "" || after.Token.AccessToken == stored.Token.AccessToken ||
		after.Token.RefreshToken == stored.Token.RefreshToken {
		t.Fatalf("print after expiry: exit %d, stdout %q, stderr %q; stored before %+v, after %+v", code, out, errOut, stored.Token, after.Token)
	}
	apiAccepts(t, f.env["DROPBOX_SIGN_ENDPOINT"], strings.TrimSpace(out))

	out, errOut, code = c.run("status")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || errOut != "" || len(lines) != 2 || !strings.HasPrefix(lines[0], "ACCOUNT  STATE  EXPIRES") ||
		!strings.HasPrefix(lines[1], "alice    ok     ") || !strings.HasSuffix(lines[1], "  yes") ||
		strings.Contains(out, after.Token.AccessToken) || strings.Contains(out, after.Token.RefreshToken) {
		t.Errorf("status: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	out, _, _ = c.run("status", "-show-secrets")
	if !strings.Contains(out, after.Token.AccessToken) || !strings.Contains(out, after.Token.RefreshToken) {
		t.Errorf("status -show-secrets:\n%s", out)
	}
	list := statusJSON(t, c, "status", "-json")
	if list.Dir != dir || len(list.Accounts) != 1 || list.Accounts[0]["key"] != "alice" || list.Accounts[0]["has_refresh_token"] != true ||
		list.Accounts[0]["refused_since"] != nil || list.Accounts[0]["access_token"] != nil {
		t.Errorf("status -json: %+v", list)
	}
	if exp, _ := time.Parse(time.RFC3339, list.Accounts[0]["expires"].(string)); !exp.Equal(after.Token.Expiry.Truncate(time.Second)) {
		t.Errorf("status -json expires %v, stored %v", list.Accounts[0]["expires"], after.Token.Expiry)
	}

	rest, code := f.stop(os.Interrupt)
	if code != 0 || !strings.Contains(rest, "It served 1 authorization, 1 code exchange, 1 refresh and 0 refused token requests") ||
		!strings.Contains(rest, "unset DROPBOX_SIGN_ENDPOINT") {
		t.Errorf("fake on SIGINT: exit %d, printed:\n%s", code, rest)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("fake left its token directory %s: %v", dir, err)
	}
	// The fake is gone: a refresh fails with what to check.
	os.MkdirAll(dir, 0o700)
	os.WriteFile(path, b, 0o600) // the expired token again
	out, errOut, code = c.run("print", "-account", "alice")
	if code != 1 || out != "" || !strings.Contains(errOut, "no answer from the token endpoint "+f.env["DROPBOX_SIGN_ENDPOINT"]) ||
		!strings.Contains(errOut, "set by DROPBOX_SIGN_ENDPOINT") {
		t.Errorf("print with the fake stopped: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// apiAccepts checks that the fake's API takes token.
func apiAccepts(t *testing.T, endpoint, token string) {
	t.Helper()
	req, _ := http.NewRequest("GET", endpoint+"/v3/account", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the API refused the printed token: %s", resp.Status)
	}
}

type statusList struct {
	Dir      string           `json:"dir"`
	Accounts []map[string]any `json:"accounts"`
}

// statusJSON runs status -json and decodes it, checking the shape: every
// documented key in every account, nothing else but the optional ones.
func statusJSON(t *testing.T, c *cli, args ...string) statusList {
	t.Helper()
	out, errOut, code := c.run(args...)
	var list statusList
	if err := json.Unmarshal([]byte(out), &list); err != nil || list.Accounts == nil {
		t.Fatalf("%v: exit %d, stderr %q, not the JSON shape (%v):\n%s", args, code, errOut, err, out)
	}
	required := []string{"key", "expires", "saved_at", "has_refresh_token", "refused_since", "disconnected_since"}
	optional := []string{"error", "access_token", "refresh_token"}
	for _, a := range list.Accounts {
		for _, k := range required {
			if _, ok := a[k]; !ok {
				t.Errorf("%v: account without %q: %v", args, k, a)
			}
		}
		for k := range a {
			if !slices.Contains(required, k) && !slices.Contains(optional, k) {
				t.Errorf("%v: undocumented key %q: %v", args, k, a)
			}
		}
	}
	return list
}

// SIGTERM stops the fake as cleanly as SIGINT does, before any use.
func TestFakeStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	f := startFake(t, "-lifetime", "5s")
	if !strings.Contains(f.intro, "access tokens live 5s") || !strings.HasPrefix(f.env["DROPBOX_SIGN_ENDPOINT"], "http://127.0.0.1:") {
		t.Errorf("fake -lifetime 5s printed:\n%s", f.intro)
	}
	rest, code := f.stop(syscall.SIGTERM)
	if code != 0 || !strings.Contains(rest, "It served 0 authorizations") {
		t.Errorf("fake on SIGTERM: exit %d, printed:\n%s", code, rest)
	}
	if _, err := os.Stat(f.env["DROPBOX_SIGN_TOKEN_DIR"]); !os.IsNotExist(err) {
		t.Errorf("fake left its token directory: %v", err)
	}
}
