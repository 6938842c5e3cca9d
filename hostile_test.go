package dropboxsign_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// reflector is a hostile token endpoint (or a proxy in front of one): it
// reads each request and answers with a broken HTTP response that quotes the
// request's body, the way net/http then quotes the offending bytes in its
// error. An error text that passes them on leaks the secrets the body held.
type reflector struct {
	ln   net.Listener
	URL  string
	mode string
}

func newReflector(t *testing.T, mode string) *reflector {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &reflector{ln: ln, URL: "http://" + ln.Addr().String(), mode: mode}
	t.Cleanup(func() { ln.Close() })
	go r.serve()
	return r
}

func (r *reflector) serve() {
	for {
		conn, err := r.ln.Accept()
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
			echo := string(body) + " " + req.URL.RawQuery
			var answer string
			switch r.mode {
			case "status":
				answer = "HTTP/1.1 2" + echo + " OK\r\n\r\n"
			case "version":
				answer = "HTTP/9" + echo + " 200 OK\r\n\r\n"
			case "header":
				answer = "HTTP/1.1 200 OK\r\n" + echo + "\r\n\r\n"
			case "huge header":
				answer = "HTTP/1.1 200 OK\r\nX-Pad " + strings.Repeat("x", 256<<10) + echo + "\r\n\r\n"
			case "reason":
				answer = "HTTP/1.1 503 " + echo + "\r\nContent-Length: 0\r\nX-Echo: " + echo + "\r\n\r\n"
			}
			conn.Write([]byte(answer))
		}()
	}
}

func (r *reflector) config() *oauth2.Config {
	return &oauth2.Config{ClientID: "client-id", ClientSecret: "client-secret-5f3e9a",
		Endpoint: oauth2.Endpoint{TokenURL: r.URL + "/oauth/token"}}
}

// assertClean fails if text holds any secret, a control character (but the
// one line break x/oauth2's RetrieveError puts before a body), or is long.
func assertClean(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s carries the secret %q: %.300q", what, s, text)
		}
	}
	if strings.ContainsAny(strings.Replace(text, "\nResponse: ", "", 1), "\n\r\x1b\x00") {
		t.Errorf("%s holds control characters: %.300q", what, text)
	}
	if len(text) > 8<<10 {
		t.Errorf("%s is %d bytes long", what, len(text))
	}
}

// Transport-level errors quote what a broken server sent; a server that
// reflects the request gets the client secret, the code and the refresh
// token into them. Every error that leaves the package is redacted and
// bounded, from the raw calls, from a caller that waited for a refresh, and
// from the backoff that follows.
func TestTransportErrorsCarryNoSecrets(t *testing.T) {
	const refreshToken, code = "rt-reflected-2c4b8d", "code-reflected-9e1f"
	for _, mode := range []string{"status", "version", "header", "huge header", "reason"} {
		t.Run(mode, func(t *testing.T) {
			r := newReflector(t, mode)
			conf := r.config()
			secrets := []string{conf.ClientSecret, refreshToken, code}
			ctx := testContext(t)

			_, err := dropboxsign.Refresh(ctx, conf, refreshToken)
			if err == nil {
				t.Fatal("Refresh: no error")
			}
			assertClean(t, "Refresh error", err.Error(), secrets...)
			var ue *url.Error
			if mode != "reason" && !errors.As(err, &ue) {
				t.Errorf("Refresh error %T does not wrap a *url.Error as net/http's do", err)
			}
			var re *oauth2.RetrieveError
			if errors.As(err, &re) {
				for k, vs := range re.Response.Header {
					assertClean(t, "response header "+k, strings.Join(vs, ","), secrets...)
				}
				assertClean(t, "RetrieveError.Body", string(re.Body), secrets...)
			}

			_, err = dropboxsign.Exchange(ctx, conf, code, "state-1")
			if err == nil {
				t.Fatal("Exchange: no error")
			}
			assertClean(t, "Exchange error", err.Error(), secrets...)

			ts := dropboxsign.NewTokenSource(ctx, conf, &oauth2.Token{RefreshToken: refreshToken})
			_, waited := ts.TokenContext(ctx)
			_, backedOff := ts.TokenContext(ctx)
			if waited == nil || backedOff == nil {
				t.Fatalf("TokenContext: %v, then %v; want errors", waited, backedOff)
			}
			assertClean(t, "TokenContext error", waited.Error(), secrets...)
			assertClean(t, "backoff error", backedOff.Error(), secrets...)
		})
	}
}

// A broken 200 holds new credentials: they are secrets too, in the error's
// text and in the RetrieveError's Body alike.
func TestBrokenSuccessKeepsItsNewTokensOutOfTheError(t *testing.T) {
	srv := newServer(t)
	const access, refresh = "at-new-7b1d0c55", "rt-new-3e8f2a41"
	srv.InjectFault(dropboxsigntest.Fault{Status: 200, Count: 1,
		Body: `{"access_token":"` + access + `","refresh_token":"` + refresh + `","expires_in":"soon"}`})
	_, err := dropboxsign.Refresh(testContext(t), srv.Config(), "rt-old-0000")
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want one wrapping a RetrieveError", err)
	}
	assertClean(t, "error", err.Error(), access, refresh)
	assertClean(t, "Body", string(re.Body), access, refresh)
	if !strings.Contains(string(re.Body), "[redacted]") {
		t.Errorf("Body %q: want the credentials shown as [redacted]", re.Body)
	}
}

// A caller that waited for a refresh the endpoint refused gets the
// *oauth2.RetrieveError itself, as x/oauth2 code expects.
func TestWaitingCallerGetsTheRetrieveErrorItself(t *testing.T) {
	srv := newServer(t)
	srv.InjectFault(dropboxsigntest.OAuthError(400, "invalid_grant", "The refresh token is invalid."))
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()))
	_, err := ts.TokenContext(testContext(t))
	if re, ok := err.(*oauth2.RetrieveError); !ok || re.ErrorCode != "invalid_grant" {
		t.Fatalf("TokenContext: %v (%T), want the *oauth2.RetrieveError itself", err, err)
	}
	_, err = oauth2.ReuseTokenSource(nil, ts).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("through ReuseTokenSource: %v", err)
	}
}

// A token that cannot be sent is a bad response, never a token: every field
// of the answer is checked for what it will be used for.
func TestUnusableTokenFieldsAreBadResponses(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"newline in access token", `{"access_token":"ab\ncd","expires_in":3600}`, "access_token holds characters that cannot be sent"},
		{"space in access token", `{"access_token":"ab cd"}`, "access_token holds characters"},
		{"non-ASCII access token", `{"access_token":"abcdé"}`, "access_token holds characters"},
		{"huge access token", `{"access_token":"` + strings.Repeat("a", 5000) + `"}`, "access_token is longer than 4096 bytes"},
		{"DEL in refresh token", `{"access_token":"abcd","refresh_token":"rt\u007f"}`, "refresh_token holds characters"},
		{"MAC token type", `{"access_token":"abcd","token_type":"mac"}`, "token_type is not Bearer"},
		{"token type with CRLF", `{"access_token":"abcd","token_type":"Bearer\r\nX: y"}`, "token_type is not Bearer"},
		{"state not a string", `{"access_token":"abcd","state":7}`, "state is not a string"},
		{"fractional negative expiry", `{"access_token":"abcd","expires_in":-0.5}`, "expires_in is negative"},
		{"boolean expiry", `{"access_token":"abcd","expires_in":true}`, "expires_in is not a number"},
		{"empty expiry", `{"access_token":"abcd","expires_in":""}`, "expires_in is not a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			srv.InjectFault(dropboxsigntest.Fault{Status: 200, Body: tc.body, Count: 1})
			tok, err := dropboxsign.Refresh(testContext(t), srv.Config(), "rt-1")
			if tc.want == "" {
				// -0.5 rounds up to 0: no expiry known, as x/oauth2 reads 0.
				if err != nil || tok.ExpiresIn != 0 {
					t.Fatalf("%v, %+v", err, tok)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %+v, %v; want an error saying %q", tok, err, tc.want)
			}
			if dropboxsign.Classify(err) != dropboxsign.Temporary {
				t.Errorf("Classify = %v, want Temporary", dropboxsign.Classify(err))
			}
		})
	}
}

// With an unusable token the source backs off as after any failed refresh,
// rather than handing out a token every API call would fail with.
func TestSourceNeverHandsOutATokenThatCannotBeSent(t *testing.T) {
	srv := newServer(t)
	srv.InjectFault(dropboxsigntest.Fault{Status: 200, Body: `{"access_token":"a\tb","expires_in":3600}`})
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()))
	for range 5 {
		if tok, err := ts.TokenContext(testContext(t)); err == nil {
			t.Fatalf("got %+v", tok)
		}
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("%d token requests, want 1 and then backoff", n)
	}
}

// The exchange answer's state, when echoed, must be the one sent: another
// value means the answer belongs to another request.
func TestExchangeRefusesAnAnswerForAnotherState(t *testing.T) {
	srv := newServer(t)
	conf := srv.Config()
	code := authorize(t, srv, conf, "mine")
	srv.InjectFault(dropboxsigntest.Fault{Status: 200, Count: 1,
		Body: `{"access_token":"at-theirs-1234","token_type":"Bearer","expires_in":3600,"state":"theirs"}`})
	_, err := dropboxsign.Exchange(testContext(t), conf, code, "mine")
	if err == nil || !strings.Contains(err.Error(), "state is not the one sent") {
		t.Fatalf("err = %v", err)
	}
}

// leavingContext ends just after its caller has looked at it: the first Err
// says it is live, so the caller joins the run, and it leaves at once, as a
// caller whose deadline fires mid-wait does.
type leavingContext struct {
	context.Context
	looked atomic.Bool
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *leavingContext) Done() <-chan struct{} { return closed }

func (c *leavingContext) Err() error {
	if c.looked.Swap(true) {
		return context.Canceled
	}
	return nil
}

// While a refresh is held up, callers that leave take nothing with them and
// leave nothing behind, and callers whose context has already ended do not
// join at all.
func TestCallersThatLeaveLeaveNothingBehind(t *testing.T) {
	srv := newServer(t)
	release := srv.HoldTokenResponses()
	defer release()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()))
	first := make(chan error, 1)
	go func() { _, err := ts.TokenContext(testContext(t)); first <- err }()
	if err := srv.WaitTokenRequests(testContext(t), 1); err != nil {
		t.Fatal(err)
	}

	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if allocs := testing.AllocsPerRun(1000, func() {
		if _, err := ts.TokenContext(ended); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	}); allocs != 0 {
		t.Errorf("a caller whose context had ended made %v allocations: it joined", allocs)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const leavers = 200_000
	for range leavers {
		if _, err := ts.TokenContext(&leavingContext{Context: context.Background()}); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 2<<20 {
		t.Errorf("the heap grew by %d bytes (%d per caller) for %d callers that left", grew, grew/leavers, leavers)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
}
