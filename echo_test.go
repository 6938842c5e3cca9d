package dropboxsign_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// The credentials the tests send; each is long and random-looking, so that
// finding one in a file or a text is proof of a leak.
const (
	echoSecret  = "client-secret-e7c1a94b0d"
	echoCode    = "auth-code-3f96b2c8a1"
	echoRefresh = "rt-presented-5d02e7f4c9"
)

// echoer is a broken token endpoint (or a proxy in front of one) whose 2xx
// answers are built from the request: each field of answer is either a
// literal or "$name", the request's field of that name. It counts the
// requests it answered.
type echoer struct {
	*httptest.Server
	answer map[string]string
	n      atomic.Int64
}

func newEchoer(t *testing.T, answer map[string]string) *echoer {
	t.Helper()
	e := &echoer{answer: answer}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.n.Add(1)
		var req map[string]string
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		out := map[string]any{"token_type": "bearer", "expires_in": 3600}
		for k, v := range e.answer {
			if name, ok := strings.CutPrefix(v, "$"); ok {
				out[k] = req[name]
			} else {
				out[k] = v
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *echoer) config() *oauth2.Config {
	return &oauth2.Config{ClientID: "client-id", ClientSecret: echoSecret, Endpoint: oauth2.Endpoint{TokenURL: e.URL + "/oauth/token"}}
}

// assertEchoRefused checks that err refuses an answer as an echo of the
// request: a malformed 2xx answer (Temporary, wrapping the 2xx
// *oauth2.RetrieveError), whose text says what is wrong and holds no secret.
func assertEchoRefused(t *testing.T, what string, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: an answer that echoes a credential of the request was accepted", what)
	}
	if c := dropboxsign.Classify(err); c != dropboxsign.Temporary {
		t.Errorf("%s: Classify = %v, want temporary (a malformed 2xx answer): %v", what, c, err)
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil || re.Response.StatusCode != http.StatusOK {
		t.Errorf("%s: %v does not wrap the answer's *oauth2.RetrieveError", what, err)
	} else {
		for _, secret := range secrets {
			if strings.Contains(string(re.Body), secret) {
				t.Errorf("%s: the RetrieveError's body holds the secret %q", what, secret)
			}
		}
	}
	if !strings.Contains(err.Error(), "echo of the request") {
		t.Errorf("%s: %q does not say the answer echoes the request", what, err)
	}
	assertClean(t, what+": error text", err.Error(), secrets...)
}

// An exchange whose answer hands back the client secret or the code as a
// token is refused; an answer that merely repeats them in other fields
// gives a token whose extras do not hold them.
func TestExchangeRefusesEchoedCredentials(t *testing.T) {
	secrets := []string{echoSecret, echoCode}
	for _, tc := range []struct {
		name   string
		answer map[string]string
	}{
		{"access_token is the client secret", map[string]string{"access_token": "$client_secret", "refresh_token": "rt-fresh-1"}},
		{"access_token is the code", map[string]string{"access_token": "$code", "refresh_token": "rt-fresh-1"}},
		{"refresh_token is the client secret", map[string]string{"access_token": "at-fresh-1", "refresh_token": "$client_secret"}},
		{"refresh_token is the code", map[string]string{"access_token": "at-fresh-1", "refresh_token": "$code"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEchoer(t, tc.answer)
			tok, err := dropboxsign.Exchange(testContext(t), e.config(), echoCode, "state-1")
			if tok != nil {
				t.Errorf("a token came back: %s", tokenText(tok))
			}
			assertEchoRefused(t, "Exchange", err, secrets...)
		})
	}
	t.Run("other fields repeat them", func(t *testing.T) {
		e := newEchoer(t, map[string]string{"access_token": "at-fresh-1", "refresh_token": "rt-fresh-1",
			"client_secret": "$client_secret", "code": "$code", "state": "$state"})
		tok, err := dropboxsign.Exchange(testContext(t), e.config(), echoCode, "state-1")
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != "at-fresh-1" || tok.RefreshToken != "rt-fresh-1" || tok.Extra("state") != "state-1" {
			t.Errorf("token %s, state %v: want the answer's", tokenText(tok), tok.Extra("state"))
		}
		if tok.Extra("client_secret") != nil || tok.Extra("code") != nil {
			t.Error("the token's extras hold the client secret or the code the answer echoed")
		}
		assertClean(t, "the token, printed", fmt.Sprintf("%+v", *tok), secrets...)
	})
}

// A refresh whose answer hands back the client secret as a token, or the
// presented refresh token as the access token, is refused; the presented
// refresh token as the refresh token is no rotation, and fine.
func TestRefreshRefusesEchoedCredentials(t *testing.T) {
	secrets := []string{echoSecret, echoRefresh}
	for _, tc := range []struct {
		name   string
		answer map[string]string
	}{
		{"access_token is the client secret", map[string]string{"access_token": "$client_secret", "refresh_token": "rt-fresh-1"}},
		{"access_token is the refresh token", map[string]string{"access_token": "$refresh_token", "refresh_token": "rt-fresh-1"}},
		{"refresh_token is the client secret", map[string]string{"access_token": "at-fresh-1", "refresh_token": "$client_secret"}},
		{"the request echoed, access_token added", map[string]string{"access_token": "at-fresh-1", "refresh_token": "$client_secret",
			"client_secret": "$refresh_token", "grant_type": "$grant_type"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEchoer(t, tc.answer)
			tok, err := dropboxsign.Refresh(testContext(t), e.config(), echoRefresh)
			if tok != nil {
				t.Errorf("a token came back: %s", tokenText(tok))
			}
			assertEchoRefused(t, "Refresh", err, secrets...)
		})
	}
	t.Run("refresh_token is the one presented", func(t *testing.T) {
		e := newEchoer(t, map[string]string{"access_token": "at-fresh-1", "refresh_token": "$refresh_token"})
		tok, err := dropboxsign.Refresh(testContext(t), e.config(), echoRefresh)
		if err != nil || tok.AccessToken != "at-fresh-1" || tok.RefreshToken != echoRefresh {
			t.Fatalf("%v, %v: want the new access token with the same refresh token", tokenText(tok), err)
		}
	})
}

// tokenText shows a test token (test values only) for a failure message.
func tokenText(tok *oauth2.Token) string {
	if tok == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{access %q, refresh %q}", tok.AccessToken, tok.RefreshToken)
}

// A source with a FileStore that refreshes against an endpoint echoing the
// request never stores a credential of the request: not as a new token, not
// as a refresh token salvaged from a broken answer. The file is read raw.
func TestSourceStoresNoEchoedCredentials(t *testing.T) {
	seed := &oauth2.Token{AccessToken: "at-seed-0", TokenType: "Bearer", RefreshToken: echoRefresh,
		Expiry: time.Now().Add(-time.Minute), ExpiresIn: 3600}
	for _, tc := range []struct {
		name   string
		answer map[string]string
	}{
		{"refresh_token is the client secret", map[string]string{"access_token": "at-fresh-1", "refresh_token": "$client_secret"}},
		{"access_token is the client secret", map[string]string{"access_token": "$client_secret"}},
		{"access_token is the refresh token", map[string]string{"access_token": "$refresh_token"}},
		// A broken answer otherwise, whose refresh token the source would
		// salvage as a rotation it must not lose.
		{"malformed, refresh_token is the client secret", map[string]string{"access_token": "at-fresh-1", "refresh_token": "$client_secret", "token_type": "mac"}},
		{"malformed, refresh_token is the client secret, no access_token", map[string]string{"refresh_token": "$client_secret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, err := dropboxsign.NewFileStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			ctx := testContext(t)
			if err := store.Save(ctx, "alice", nil, seed); err != nil {
				t.Fatal(err)
			}
			e := newEchoer(t, tc.answer)
			src := dropboxsign.NewTokenSource(ctx, e.config(), nil, dropboxsign.WithStore(store, "alice"))
			tok, err := src.TokenContext(ctx)
			if e.n.Load() != 1 {
				t.Fatalf("the endpoint answered %d requests, want 1", e.n.Load())
			}
			if err == nil {
				t.Errorf("the source served %s from an echo", tokenText(tok))
			} else {
				if !strings.Contains(err.Error(), "echo of the request") && !strings.Contains(err.Error(), "token_type") && !strings.Contains(err.Error(), "access_token is missing") {
					t.Errorf("error %q does not say what is wrong with the answer", err)
				}
				assertClean(t, "the source's error", err.Error(), echoSecret, echoRefresh)
			}
			raw, err := os.ReadFile(store.Path("alice"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), echoSecret) {
				t.Errorf("the store's file holds the client secret:\n%s", raw)
			}
			stored, err := store.Load(ctx, "alice")
			if err != nil || stored.AccessToken != seed.AccessToken || stored.RefreshToken != seed.RefreshToken {
				t.Errorf("stored %s, %v: want the seed, untouched", tokenText(stored), err)
			}
		})
	}
}

// A login through an endpoint that echoes the code or the client secret as
// a token fails, and stores neither.
func TestLoginStoresNoEchoedCredentials(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer map[string]string
	}{
		{"refresh_token is the code", map[string]string{"access_token": "at-fresh-1", "refresh_token": "$code"}},
		{"refresh_token is the client secret", map[string]string{"access_token": "at-fresh-1", "refresh_token": "$client_secret"}},
		{"access_token is the code", map[string]string{"access_token": "$code", "refresh_token": "rt-fresh-1"}},
		{"access_token is the client secret", map[string]string{"access_token": "$client_secret", "refresh_token": "rt-fresh-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store, err := dropboxsign.NewFileStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			e := newEchoer(t, tc.answer)
			accounts := dropboxsign.NewAccounts(context.Background(), e.config(), store)
			tok, err := accounts.Login(testContext(t), "alice", echoCode, "state-1")
			if tok != nil {
				t.Errorf("Login returned %s", tokenText(tok))
			}
			assertEchoRefused(t, "Login", err, echoSecret, echoCode)
			entries, _ := os.ReadDir(dir)
			for _, entry := range entries {
				raw, err := os.ReadFile(dir + "/" + entry.Name())
				if err == nil && (strings.Contains(string(raw), echoSecret) || strings.Contains(string(raw), echoCode)) {
					t.Errorf("%s holds the client secret or the code:\n%s", entry.Name(), raw)
				}
			}
			if _, err := store.Load(context.Background(), "alice"); !errors.Is(err, dropboxsign.ErrNotFound) {
				t.Errorf("after the failed login the store has: %v; want nothing", err)
			}
		})
	}
}

// A field of the answer that quotes the request (whole or in part, nested
// or not) is dropped from the token's extras: printing a token, as code
// does when debugging, must not print the client secret or the code.
func TestExtrasQuotingTheRequestAreDropped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]string
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &req)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"access_token": "at-fresh-7a1c", "refresh_token": "rt-fresh-9b2d", "token_type": "bearer", "expires_in": 3600,
			"request": string(body), "nested": map[string]any{"x": "pre-" + req["client_secret"]}, "code_seen": "[" + req["code"] + "]",
			"kept": "an ordinary field",
		})
	}))
	t.Cleanup(srv.Close)
	conf := &oauth2.Config{ClientID: "client-id", ClientSecret: echoSecret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/oauth/token"}}
	tok, err := dropboxsign.Exchange(testContext(t), conf, echoCode, "state-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"request", "nested", "code_seen"} {
		if v := tok.Extra(field); v != nil {
			t.Errorf("extra %q kept: it quotes the request", field)
		}
	}
	if tok.Extra("kept") != "an ordinary field" {
		t.Errorf("an ordinary extra was dropped: %v", tok.Extra("kept"))
	}
	if s := fmt.Sprintf("%+v", tok); strings.Contains(s, echoSecret) || strings.Contains(s, echoCode) {
		t.Errorf("the token prints a credential of the request")
	}
}
