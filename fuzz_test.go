package dropboxsign

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// fuzzSecret stands for the client secret and the refresh token: whatever a
// response holds, it must never reach an error text.
const fuzzSecret = "s3cr3t-rt-0f9e"

func fuzzResponse(status int, contentType, reset string, body []byte) *http.Response {
	h := http.Header{}
	h.Set("Content-Type", contentType)
	h.Set("X-Ratelimit-Reset", reset)
	h.Set("Retry-After", reset)
	return &http.Response{
		StatusCode: status,
		Status:     http.StatusText(status),
		Header:     h,
		Body:       io.NopCloser(bytes.NewReader(body)),
	}
}

// checkDecoded holds for every answer: a usable token, or an error that
// wraps the response and keeps secrets out of its text.
func checkDecoded(t *testing.T, tok *oauth2.Token, err error) {
	if err == nil {
		if tok == nil || credentialProblem(tok.AccessToken) != "" || tok.Type() != "Bearer" {
			t.Fatalf("no error and no usable token: %+v", tok)
		}
		if tok.RefreshToken != "" && credentialProblem(tok.RefreshToken) != "" {
			t.Fatalf("a refresh token that cannot be sent: %q", tok.RefreshToken)
		}
		if tok.ExpiresIn < 0 || tok.ExpiresIn > maxExpiresIn || (tok.ExpiresIn > 0) == tok.Expiry.IsZero() {
			t.Fatalf("ExpiresIn %d with Expiry %v", tok.ExpiresIn, tok.Expiry)
		}
		TokenRateLimit(tok)
		return
	}
	if tok != nil {
		t.Fatalf("token %+v along with error %v", tok, err)
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil || len(re.Body) > maxErrorBody+len("…") {
		t.Fatalf("error %v does not wrap a bounded RetrieveError", err)
	}
	text := err.Error()
	for _, shown := range []string{text, string(re.Body), re.ErrorCode, re.ErrorDescription, re.Response.Status} {
		if strings.Contains(shown, fuzzSecret) {
			t.Fatalf("secret in %q", shown)
		}
	}
	// x/oauth2's RetrieveError puts one line break before a body; nothing
	// from the response may add another, nor any other control character.
	if strings.ContainsAny(strings.Replace(text, "\nResponse: ", "", 1), "\n\r\x1b") {
		t.Fatalf("control character in error text: %q", text)
	}
	if len(text) > 2*maxErrorBody {
		t.Fatalf("error text of %d bytes", len(text))
	}
	Classify(err)
	ErrorRateLimit(err)
	rateLimitedUntil(err, time.Now())
}

// FuzzTokenResponse feeds arbitrary 200 answers to the token decoder.
func FuzzTokenResponse(f *testing.F) {
	for _, seed := range []string{
		`{"access_token":"NWNiOTMx","token_type":"Bearer","refresh_token":"hNTI2MTFm","expires_in":86400,"state":"900e06e2"}`,
		`{"access_token":"a","expires_in":"3600"}`,
		`{"access_token":"a","expires_in":-1}`,
		`{"access_token":"a","expires_in":1e999}`,
		`{"access_token":12}`,
		`{"error":"invalid_grant"}`,
		`{"access_token":"a","refresh_token":"` + fuzzSecret + `"}`,
		`<html>502</html>`,
		`{"access_token":"a"`,
	} {
		f.Add([]byte(seed), "application/json")
	}
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		tok, err := decodeAnswer("refresh", fuzzResponse(200, contentType, "", body), time.Now(), "", newRedactor(fuzzSecret), requestSecrets{clientSecret: fuzzSecret})
		checkDecoded(t, tok, err)
	})
}

// FuzzErrorResponse feeds arbitrary error answers, with arbitrary rate-limit
// headers, to the decoder and to the error helpers.
func FuzzErrorResponse(f *testing.F) {
	for _, seed := range []struct {
		status int
		body   string
	}{
		{429, `{"error":{"error_msg":"Too many requests.","error_name":"exceeded_rate","error_path":"x"}}`},
		{400, `{"error":"invalid_request","error_description":"Either the combo client_id/code is wrong"}`},
		{401, `{"error":{"error_name":["x"],"error_msg":{}}}`},
		{400, `{"error":"invalid_grant","error_description":"token ` + fuzzSecret + ` is \u001b[31mbad\n"}`},
		{502, `<html><body>Bad Gateway</body></html>`},
		{500, ``},
	} {
		f.Add(seed.status, []byte(seed.body), "1700000000")
	}
	f.Fuzz(func(t *testing.T, status int, body []byte, reset string) {
		if status < 100 || status > 999 {
			status = 500
		}
		tok, err := decodeAnswer("refresh", fuzzResponse(status, "application/json", reset, body), time.Now(), "", newRedactor(fuzzSecret), requestSecrets{clientSecret: fuzzSecret})
		if status >= 300 && err == nil {
			t.Fatalf("status %d decoded as a token", status)
		}
		checkDecoded(t, tok, err)
	})
}
