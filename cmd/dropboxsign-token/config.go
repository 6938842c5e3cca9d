package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// settings are the flags every command that touches accounts shares.
type settings struct {
	endpoint     string
	clientID     string
	clientSecret string
	dir          string
	account      string
}

func (s *settings) register(fs *flag.FlagSet, credentials bool) {
	fs.StringVar(&s.endpoint, "endpoint", os.Getenv("DROPBOX_SIGN_ENDPOINT"),
		"base URL of the OAuth endpoints, e.g. a fake server (env DROPBOX_SIGN_ENDPOINT; default https://app.hellosign.com)")
	fs.StringVar(&s.dir, "dir", os.Getenv("DROPBOX_SIGN_TOKEN_DIR"),
		"directory of stored tokens (env DROPBOX_SIGN_TOKEN_DIR; default <user config dir>/dropboxsign-token)")
	fs.StringVar(&s.account, "account", "default", "name of the account, the key its token is stored under")
	if credentials {
		fs.StringVar(&s.clientID, "client-id", os.Getenv("DROPBOX_SIGN_CLIENT_ID"), "API app client ID (env DROPBOX_SIGN_CLIENT_ID)")
		fs.StringVar(&s.clientSecret, "client-secret", "", "API app client secret; prefer env DROPBOX_SIGN_CLIENT_SECRET, which flags would show in ps")
	}
}

// config builds the oauth2.Config, from flags and then the environment.
func (s *settings) config(requireCredentials bool) (*oauth2.Config, error) {
	if s.clientSecret == "" {
		s.clientSecret = os.Getenv("DROPBOX_SIGN_CLIENT_SECRET")
	}
	if requireCredentials && s.clientID == "" {
		return nil, usagef("missing client ID: pass -client-id or set DROPBOX_SIGN_CLIENT_ID")
	}
	if requireCredentials && s.clientSecret == "" {
		return nil, usagef("missing client secret: set DROPBOX_SIGN_CLIENT_SECRET (or pass -client-secret)")
	}
	endpoint := dropboxsign.Endpoint
	if s.endpoint != "" {
		u, err := url.Parse(s.endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, usagef("-endpoint %q is not an http(s) base URL", s.endpoint)
		}
		base := strings.TrimSuffix(s.endpoint, "/")
		endpoint.AuthURL, endpoint.TokenURL = base+"/oauth/authorize", base+"/oauth/token"
	}
	return &oauth2.Config{ClientID: s.clientID, ClientSecret: s.clientSecret, Endpoint: endpoint}, nil
}

func (s *settings) store() (*dropboxsign.FileStore, error) {
	dir := s.dir
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return nil, fmt.Errorf("no token directory: pass -dir or set DROPBOX_SIGN_TOKEN_DIR (%v)", err)
		}
		dir = filepath.Join(base, "dropboxsign-token")
	}
	return dropboxsign.NewFileStore(dir)
}
