package dropboxsign_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// sweep collects every text the package hands out in a scenario (error
// texts, and the parts of a returned *oauth2.RetrieveError a program may
// print or log: status, headers, description, body), each with the secrets
// the call knew: those it sent, held or received.
type sweep struct{ texts []sweptText }

type sweptText struct {
	text    string
	secrets []string
}

func (s *sweep) add(what string, err error, secrets ...string) {
	if err == nil {
		return
	}
	texts := []string{what + ": " + err.Error()}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		texts = append(texts, what+" body: "+string(re.Body), what+" description: "+re.ErrorDescription)
		if re.Response != nil {
			texts = append(texts, what+" status: "+re.Response.Status)
			for k, vs := range re.Response.Header {
				texts = append(texts, what+" header "+k+": "+strings.Join(vs, ","))
			}
		}
	}
	for _, text := range texts {
		s.texts = append(s.texts, sweptText{text, secrets})
	}
}

func (s *sweep) check(t *testing.T, received ...string) {
	t.Helper()
	if len(s.texts) == 0 {
		t.Fatal("the scenario produced no text to check")
	}
	for _, st := range s.texts {
		for _, secret := range append(st.secrets, received...) {
			if len(secret) >= 4 && strings.Contains(st.text, secret) {
				t.Errorf("the secret %q shows in %.300q", secret, st.text)
			}
		}
	}
}

// exercise drives every entry point against conf's endpoint: the code
// exchange, a raw refresh, a source's waiting caller, its backoff, Token,
// and a request through NewClient.
func exercise(t *testing.T, s *sweep, conf *oauth2.Config, code string, tok *oauth2.Token, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(testContext(t), timeout)
	defer cancel()
	_, err := dropboxsign.Exchange(ctx, conf, code, "sweep-state")
	s.add("Exchange", err, conf.ClientSecret, code)
	_, err = dropboxsign.Refresh(ctx, conf, tok.RefreshToken)
	s.add("Refresh", err, conf.ClientSecret, tok.RefreshToken)
	held := []string{conf.ClientSecret, tok.RefreshToken, tok.AccessToken}
	ts := dropboxsign.NewTokenSource(ctx, conf, expired(tok), dropboxsign.WithTimeout(timeout))
	_, err = ts.TokenContext(ctx)
	s.add("TokenContext", err, held...)
	_, err = ts.TokenContext(ctx)
	s.add("TokenContext in backoff", err, held...)
	_, err = ts.Token()
	s.add("Token", err, held...)
	client := dropboxsign.NewClient(ctx, conf, expired(tok), dropboxsign.WithTimeout(timeout))
	_, err = client.Get(dropboxsign.APIBaseURL + "/account")
	s.add("NewClient", err, held...)
}

// No secret a call sent, held or received (client secret, code, access and
// refresh tokens) reaches any text the package gives out, whatever a hostile
// or broken token endpoint answers, and even when it echoes them all back.
func TestNoSecretInAnyErrorText(t *testing.T) {
	newAT, newRT := "at_broken_5e0c7a1d", "rt_broken_9b2f4e6a"
	for _, tc := range []struct {
		name  string
		fault func(srv *dropboxsigntest.Server, echo string) dropboxsigntest.Fault
	}{
		{"html 502", func(*dropboxsigntest.Server, string) dropboxsigntest.Fault { return dropboxsigntest.BadGateway() }},
		{"oauth error echoing", func(_ *dropboxsigntest.Server, echo string) dropboxsigntest.Fault {
			return dropboxsigntest.OAuthError(400, "invalid_grant "+echo, "rejected: "+echo)
		}},
		{"envelope echoing", func(_ *dropboxsigntest.Server, echo string) dropboxsigntest.Fault {
			return dropboxsigntest.EnvelopeError(401, "unauthorized", echo)
		}},
		{"plain body echoing", func(_ *dropboxsigntest.Server, echo string) dropboxsigntest.Fault {
			return dropboxsigntest.Fault{Status: 500, Body: "upstream said: " + echo}
		}},
		{"headers echoing", func(_ *dropboxsigntest.Server, echo string) dropboxsigntest.Fault {
			f := dropboxsigntest.RateLimited(time.Now().Add(time.Minute))
			f.Header.Set("X-Debug", echo)
			return f
		}},
		{"redirect echoing", func(_ *dropboxsigntest.Server, echo string) dropboxsigntest.Fault {
			return dropboxsigntest.Fault{Status: http.StatusTemporaryRedirect, Header: http.Header{"Location": {"https://elsewhere.example/?" + echo}}}
		}},
		{"broken 200 with new tokens", func(*dropboxsigntest.Server, string) dropboxsigntest.Fault {
			return dropboxsigntest.Fault{Status: 200, Body: `{"access_token":"` + newAT + `","refresh_token":"` + newRT + `","expires_in":"later"}`}
		}},
		{"200 with an unsendable token", func(_ *dropboxsigntest.Server, echo string) dropboxsigntest.Fault {
			return dropboxsigntest.Fault{Status: 200, Body: `{"access_token":"` + newAT + `\r\n` + echo + `","refresh_token":"` + newRT + `"}`}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			conf := srv.Config()
			code := authorize(t, srv, conf, "sweep-state")
			tok := srv.IssueToken()
			echo := strings.Join([]string{srv.ClientSecret, code, tok.RefreshToken, tok.AccessToken}, " ")
			srv.InjectFault(tc.fault(srv, echo))
			var s sweep
			exercise(t, &s, conf, code, tok, 5*time.Second)
			s.check(t, newAT, newRT)
		})
	}
	t.Run("hung endpoint", func(t *testing.T) {
		srv := newServer(t)
		conf := srv.Config()
		code := authorize(t, srv, conf, "sweep-state")
		tok := srv.IssueToken()
		defer srv.HoldTokenResponses()()
		var s sweep
		exercise(t, &s, conf, code, tok, 50*time.Millisecond)
		s.check(t)
	})
	for _, mode := range []string{"status", "version", "header", "huge header", "reason"} {
		t.Run("reflecting "+mode, func(t *testing.T) {
			r := newReflector(t, mode)
			conf := r.config()
			tok := &oauth2.Token{AccessToken: "at-reflector-7c1e", RefreshToken: "rt-reflector-4d2a", Expiry: time.Now().Add(time.Hour)}
			var s sweep
			exercise(t, &s, conf, "code-reflector-0b3f", tok, 5*time.Second)
			s.check(t)
		})
	}
}

// leakyStore fails every call with an error that prints the tokens it was
// given, as careless store code might.
type leakyStore struct{ dropboxsign.Store }

func (s leakyStore) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if spendMark(t) {
		return s.Store.Save(ctx, key, prev, t)
	}
	return fmt.Errorf("cannot save %+v over %+v", t, prev)
}

func (s leakyStore) Lock(ctx context.Context, key string) (func(), error) {
	tok, _ := s.Store.Load(ctx, key)
	return nil, fmt.Errorf("cannot lock, holding %+v", tok)
}

// Store errors are redacted of every token the source knows, and of the
// client secret, while errors.Is still sees the store's own error.
func TestStoreErrorsCarryNoSecrets(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	tok := srv.IssueToken()
	fs.Save(ctx, "acct", nil, tok)

	var s sweep
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(leakyStore{fs}, "acct"))
	_, err := ts.TokenContext(ctx) // adopts the stored token, fresh: no store error yet
	if err != nil {
		t.Fatal(err)
	}
	ts.Invalidate(tok) // the next call must lock: the store fails, printing the token
	_, err = ts.TokenContext(ctx)
	s.add("lock", err, srv.ClientSecret, tok.AccessToken, tok.RefreshToken)

	fs.Save(ctx, "acct2", nil, expired(srv.IssueToken()))
	good := dropboxsign.NewTokenSource(ctx, srv.Config(), nil, dropboxsign.WithStore(&saveFailing{fs}, "acct2"))
	_, err = good.TokenContext(ctx)
	var saveErr *dropboxsign.SaveError
	if !errors.As(err, &saveErr) {
		t.Fatalf("err = %v, want a SaveError", err)
	}
	s.add("save", err, srv.Secrets()...)
	s.check(t)
	if !strings.Contains(err.Error(), "cannot save") {
		t.Errorf("the store's words are gone: %q", err)
	}
}

type saveFailing struct{ dropboxsign.Store }

func (s *saveFailing) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if spendMark(t) {
		return s.Store.Save(ctx, key, prev, t)
	}
	return fmt.Errorf("cannot save %+v over %+v", t, prev)
}

// A WithOnRefresh function that fails, or panics, with the token in its
// words: the SaveError's text is redacted all the same.
func TestOnRefreshErrorsCarryNoSecrets(t *testing.T) {
	for _, how := range []string{"error", "panic"} {
		srv := newServer(t)
		ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()),
			dropboxsign.WithOnRefresh(func(_ context.Context, tok *oauth2.Token) error {
				if how == "panic" {
					panic(fmt.Sprintf("db down, lost %+v", *tok))
				}
				return fmt.Errorf("db down, lost %+v", *tok)
			}))
		_, err := ts.TokenContext(testContext(t))
		var saveErr *dropboxsign.SaveError
		if !errors.As(err, &saveErr) || !strings.Contains(err.Error(), "db down") {
			t.Fatalf("%s: err = %v, want a SaveError in the function's words", how, err)
		}
		var s sweep
		s.add(how, err, srv.Secrets()...)
		s.check(t)
	}
}
