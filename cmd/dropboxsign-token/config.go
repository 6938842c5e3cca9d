package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// settings are the flags that commands share. Each command registers only
// those it uses; a flag not given takes its environment variable, then its
// default.
type settings struct {
	fs           *flagSet
	account      string
	dir          string
	endpoint     string
	clientID     string
	clientSecret string
	store        string // -store: file:DIR, redis://…, postgres://…
	prefix       string
	schema       string
	env          map[string]*string // environment variable → the setting it fills
	flagOf       map[string]string  // environment variable → its flag
}

func newSettings(fs *flagSet) *settings {
	return &settings{fs: fs, env: map[string]*string{}, flagOf: map[string]string{}}
}

// Environment variables, named in the flags' help and in docs/cli.md.
const (
	envEndpoint     = "DROPBOX_SIGN_ENDPOINT"
	envClientID     = "DROPBOX_SIGN_CLIENT_ID"
	envClientSecret = "DROPBOX_SIGN_CLIENT_SECRET"
	envDir          = "DROPBOX_SIGN_TOKEN_DIR"
)

func (s *settings) fromEnv(p *string, flagName, env string) {
	s.env[env], s.flagOf[env] = p, flagName
}

// accountFlag registers -account.
func (s *settings) accountFlag() {
	s.fs.StringVar(&s.account, "account", "default", "`name` of the account: the key its token is stored under")
}

// dirFlag registers -dir.
func (s *settings) dirFlag() {
	s.fs.StringVar(&s.dir, "dir", "", "`directory` of the stored tokens (env "+envDir+"; default\n"+
		"dropboxsign-token in the user's config directory: ~/.config/dropboxsign-token\n"+
		"on Linux)")
	s.fromEnv(&s.dir, "dir", envDir)
}

// appFlags registers the flags that say which API app, at which endpoint.
func (s *settings) appFlags() {
	s.fs.StringVar(&s.endpoint, "endpoint", "", "base `URL` of the OAuth endpoints, to use a fake (env "+envEndpoint+";\n"+
		"default https://app.hellosign.com)")
	s.fs.StringVar(&s.clientID, "client-id", "", "the API app's client `ID` (env "+envClientID+")")
	s.fs.StringVar(&s.clientSecret, "client-secret", "", "the API app's client `secret`; prefer env "+envClientSecret+":\n"+
		"flags show in ps")
	s.fromEnv(&s.endpoint, "endpoint", envEndpoint)
	s.fromEnv(&s.clientID, "client-id", envClientID)
	s.fromEnv(&s.clientSecret, "client-secret", envClientSecret)
}

// parse parses args, then fills each setting whose flag was not given from
// its environment variable.
func (s *settings) parse(args []string) error {
	if err := s.fs.parse(args); err != nil {
		return err
	}
	for env, p := range s.env {
		if !s.fs.given(s.flagOf[env]) {
			*p = os.Getenv(env)
		}
	}
	if s.fs.given("account") && s.account == "" {
		return usagef("-account is empty: name the account (the default is \"default\")")
	}
	return nil
}

// origin names where a setting came from, for error messages: "-flag",
// the environment variable, or "the default".
func (s *settings) origin(env string) string {
	switch {
	case s.fs.given(s.flagOf[env]):
		return "-" + s.flagOf[env]
	case os.Getenv(env) != "":
		return env
	}
	return "the default"
}

// config builds the oauth2.Config. Both credentials are required: a token
// that is valid now needs none, but a script that works until its first
// refresh, an hour later, is worse than one that fails at once.
func (s *settings) config() (*oauth2.Config, error) {
	if s.clientID == "" {
		return nil, usagef("missing client ID: pass -client-id or set %s (your API app's, from Dropbox Sign's API settings; to try the commands without one, run 'dropboxsign-token fake')", envClientID)
	}
	if s.clientSecret == "" {
		return nil, usagef("missing client secret: set %s (or pass -client-secret)", envClientSecret)
	}
	endpoint := dropboxsign.Endpoint
	if s.endpoint != "" {
		u, err := url.Parse(s.endpoint)
		switch {
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			return nil, usagef("%s %q is not an http(s) base URL", s.origin(envEndpoint), s.endpoint)
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			return nil, usagef("%s %q: a base URL has no user, query or fragment", s.origin(envEndpoint), u.Redacted())
		case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
			return nil, usagef("%s %q: plain http is allowed only on loopback (a fake); Dropbox Sign needs https", s.origin(envEndpoint), s.endpoint)
		}
		base := strings.TrimSuffix(s.endpoint, "/")
		endpoint.AuthURL, endpoint.TokenURL = base+"/oauth/authorize", base+"/oauth/token"
	}
	return &oauth2.Config{ClientID: s.clientID, ClientSecret: s.clientSecret, Endpoint: endpoint}, nil
}

// tokenDir returns the token directory: -dir, DROPBOX_SIGN_TOKEN_DIR, or
// the default.
func (s *settings) tokenDir() (string, error) {
	if s.dir != "" {
		return s.dir, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no token directory: pass -dir or set %s (%v)", envDir, err)
	}
	return filepath.Join(base, "dropboxsign-token"), nil
}

// loginCommand is the command that authorizes the account again.
func (s *settings) loginCommand() string { return s.command("login") }

// command is the command line of another command for the same account,
// with the flags given to this one that it needs to find the same store
// and app (those from the environment carry over by themselves; a secret
// is never repeated).
func (s *settings) command(name string) string {
	cmd := "dropboxsign-token " + name + " -account " + shellWord(s.account)
	for _, flag := range []string{"dir", "store", "prefix", "schema", "endpoint", "client-id"} {
		if f := s.fs.Lookup(flag); f != nil && s.fs.given(flag) {
			cmd += " -" + flag + " " + shellWord(f.Value.String())
		}
	}
	return cmd
}

// mustLogin is the error for an account that needs login: exit code 3.
func (s *settings) mustLogin(format string, args ...any) error {
	return loginError{fmt.Sprintf(format, args...)}
}

var plainWord = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./~-]+$`)

// shellWord quotes s for a POSIX shell where needed, with double quotes,
// so that it reads well inside the single quotes of our messages.
func shellWord(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "`", "\\`").Replace(printable(s)) + `"`
}

// isLoopbackHost reports whether host is localhost or a loopback address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
