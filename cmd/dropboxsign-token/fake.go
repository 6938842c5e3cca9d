package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// runFake serves a fake Dropbox Sign for the other commands. What it prints
// on stdout is valid shell, so that it can be pasted or sourced; tests parse
// its export line.
func runFake(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fake", "Serves a fake Dropbox Sign on loopback until interrupted (Ctrl-C, SIGTERM), so\n"+
		"that login, print and status can be tried without an API app. It prints, on\n"+
		"stdout as shell lines (comments start with #), the export line that points\n"+
		"the other commands at it: its endpoint, its app's client ID and secret, and a\n"+
		"token directory of its own, removed when it stops. Its authorize page\n"+
		"consents at once and redirects to its app's callback URL (-callback, where\n"+
		"login listens by default); 'login -approve' does that step without a browser.", stderr)
	listen := fs.String("listen", "127.0.0.1:8909", "loopback `address` to serve on (port 0: any free port)")
	callback := fs.String("callback", "http://"+defaultListen+defaultCallbackPath, "the fake API app's callback `URL`, where its authorize page sends\n"+
		"the consent: http://<login's -listen><login's -callback-path>")
	lifetime := fs.Duration("lifetime", dropboxsigntest.DefaultLifetime, "lifetime of the access tokens it issues (whole seconds, at least 1s);\n"+
		"a short one lets print show a refresh")
	if err := fs.parse(args); err != nil {
		return err
	}
	if u, err := url.Parse(*callback); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return usagef("-callback %q is not an http(s) URL without a query", *callback)
	}
	if *lifetime < time.Second || *lifetime%time.Second != 0 {
		return usagef("-lifetime %s: it must be whole seconds, at least 1s", *lifetime)
	}
	ln, err := listenLoopback("-listen", *listen, "the fake", "another fake running? stop it, or pick another -listen")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "dropboxsign-fake-")
	if err != nil {
		ln.Close()
		return fmt.Errorf("creating the fake's token directory: %w", err)
	}
	defer os.RemoveAll(dir)

	// Stop on the first signal; a second one kills as usual.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := dropboxsigntest.NewServerOn(ln)
	srv.SetCallbackURL(*callback)
	srv.SetLifetime(*lifetime)

	env := []string{
		envEndpoint + "=" + shellQuote(srv.URL),
		envClientID + "=" + shellQuote(srv.ClientID),
		envClientSecret + "=" + shellQuote(srv.ClientSecret),
		envDir + "=" + shellQuote(dir),
	}
	fmt.Fprintf(stdout, `# A fake Dropbox Sign serves on %s until interrupted (Ctrl-C).
# Its API app's callback URL is %s; its access tokens live %s.
# Point the other commands at it, in another terminal:
export %s
# Then walk the flow (-approve consents without a browser, only against a fake):
#   dropboxsign-token login -approve
#   dropboxsign-token print
#   dropboxsign-token status
`, srv.URL, *callback, *lifetime, strings.Join(env, " "))

	<-ctx.Done()
	stop()
	srv.Close()
	st := srv.Stats()
	fmt.Fprintf(stdout, "# Stopped. It served %s, %s, %s and %s; its tokens are gone.\n"+
		"# Point the commands back at Dropbox Sign:\n#   unset %s %s %s %s\n",
		count(st.Authorizations, "authorization"), count(st.Exchanges, "code exchange"), count(st.Refreshes, "refresh"),
		count(st.TokenRequests-st.Exchanges-st.Refreshes, "refused token request"),
		envEndpoint, envClientID, envClientSecret, envDir)
	return nil
}

// shellQuote quotes s for a POSIX shell where needed, with single quotes:
// fake's export line is meant to be pasted or sourced.
func shellQuote(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// count says "1 refresh", "2 refreshes".
func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "sh") {
		return fmt.Sprint(n, " ", what, "es")
	}
	return fmt.Sprint(n, " ", what, "s")
}
