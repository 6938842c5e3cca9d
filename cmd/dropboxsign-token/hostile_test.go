package main_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// A token endpoint (or a proxy) that answers every request with a broken
// status line quoting the request's body, which holds the client secret and
// the refresh token: net/http quotes the offending bytes in its error.
func reflectingEndpoint(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				body, _ := io.ReadAll(req.Body)
				conn.Write([]byte("HTTP/1.1 2" + string(body) + " OK\r\n\r\n"))
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// print passes on no secret, whatever the endpoint sends back.
func TestPrintShowsNoSecretFromAHostileEndpoint(t *testing.T) {
	t.Parallel()
	const secret, refreshToken = "client-secret-0d9c8b7a", "rt-hostile-6f5e4d3c"
	endpoint := reflectingEndpoint(t)
	dir := t.TempDir() + "/tokens"
	c := &cli{t: t, env: []string{
		"PATH=/usr/bin:/bin",
		"HOME=" + t.TempDir(),
		"DROPBOX_SIGN_TOKEN_DIR=" + dir,
		"DROPBOX_SIGN_ENDPOINT=" + endpoint,
		"DROPBOX_SIGN_CLIENT_ID=client-id",
		"DROPBOX_SIGN_CLIENT_SECRET=" + secret,
	}}
	store, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	expired := &oauth2.Token{AccessToken: "at-hostile-1a2b3c4d", TokenType: "Bearer", RefreshToken: refreshToken, Expiry: time.Now().Add(-time.Hour)}
	if err := store.Save(context.Background(), "default", nil, expired); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := c.run("print")
	if code != 1 || out != "" || !strings.Contains(errOut, "malformed HTTP status code") {
		t.Fatalf("print: exit %d, stdout %q, stderr %q; want exit 1 and the error, redacted", code, out, errOut)
	}
	for _, s := range []string{secret, refreshToken, expired.AccessToken} {
		if strings.Contains(errOut, s) {
			t.Errorf("stderr carries %q: %s", s, errOut)
		}
	}
}
