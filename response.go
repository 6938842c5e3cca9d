package dropboxsign

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// maxBodySize bounds what is read of any token response.
const maxBodySize = 1 << 20

// maxExpiresIn is the longest lifetime believed: ten years. Anything longer
// is a broken server, and would overflow time arithmetic soon after.
const maxExpiresIn = 10 * 365 * 24 * 3600

// requestSecrets are the credentials a token request carries. None may come
// back as a token: a server or a proxy that echoes the request (or builds
// its answer from it) would otherwise have the client secret or the code
// stored, sealed, presented to the token endpoint and sent in API calls.
type requestSecrets struct {
	clientSecret string
	code         string // an exchange's
	refreshToken string // a refresh's: it may come back as the refresh token (no rotation), never as the access token
}

// echo names the credential of the request that v is, or returns "": the
// client secret and the code, and with asAccess the refresh token presented
// too. Equality is the test: an echo returns the value as it was sent, and a
// token that merely contains a secret is no echo (nothing that holds a
// secret only in part can be told from chance without refusing real tokens).
func (q requestSecrets) echo(v string, asAccess bool) string {
	switch {
	case v == "":
		return ""
	case v == q.clientSecret:
		return "the client secret"
	case v == q.code:
		return "the authorization code"
	case asAccess && v == q.refreshToken:
		return "the refresh token"
	}
	return ""
}

// holdsEcho reports whether v, a field of an answer as decoded from JSON,
// holds a credential of the request anywhere: in a string, as the whole or
// a part (a field that quotes the request, say), or in an object or an
// array. Unlike for the tokens themselves, a part counts: a field of the
// extras is dropped at no cost.
func (q requestSecrets) holdsEcho(v any) bool {
	switch v := v.(type) {
	case string:
		return q.clientSecret != "" && strings.Contains(v, q.clientSecret) || q.code != "" && strings.Contains(v, q.code)
	case json.RawMessage:
		return q.holdsEcho(string(v))
	case map[string]any:
		for _, e := range v {
			if q.holdsEcho(e) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if q.holdsEcho(e) {
				return true
			}
		}
	}
	return false
}

// decodeAnswer turns a token response into a token or an error. sent is
// when the request left, so that Expiry errs on the early side; wantState,
// if not empty, is the state the answer may echo. r knows the secrets of the
// request, and learns those of the answer: new tokens in a broken answer are
// credentials too. q are the request's credentials, which no token of the
// answer may be.
//
// An answer that reports an error (a status other than 2xx, or an "error"
// member) comes back as the *oauth2.RetrieveError itself, as x/oauth2 returns
// it; a 2xx answer that is not a usable token comes back as a *responseError
// that wraps one.
func decodeAnswer(op string, resp *http.Response, sent time.Time, wantState string, r *redactor, q requestSecrets) (*oauth2.Token, error) {
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxBodySize+1))
	var fields map[string]json.RawMessage
	jsonErr := errors.New("too large to parse")
	if len(body) <= maxBodySize {
		jsonErr = json.Unmarshal(body, &fields)
	}
	for _, name := range []string{"access_token", "refresh_token", "client_secret", "code"} {
		secret, _ := stringField(fields, name)
		raw := strings.TrimSuffix(strings.TrimPrefix(string(fields[name]), `"`), `"`)
		r.add(secret, raw) // as decoded, and as it stands, escaped, in the body
	}
	re := &oauth2.RetrieveError{Response: r.response(resp), Body: r.body(body)}
	if jsonErr == nil {
		code, desc, uri := parseError(fields)
		re.ErrorCode, re.ErrorDescription, re.ErrorURI = r.text(code), r.text(desc), r.text(uri)
	}
	bad := func(format string, args ...any) *responseError {
		return &responseError{op: op, status: re.Response.Status, msg: fmt.Sprintf(format, args...), retrieve: re}
	}
	switch {
	case readErr != nil:
		return nil, bad("reading the response: %s", r.text(readErr.Error()))
	case len(body) > maxBodySize:
		return nil, bad("the response body exceeds %d bytes", maxBodySize)
	case resp.StatusCode < 200 || resp.StatusCode > 299 || hasError(fields):
		return nil, re
	case jsonErr != nil:
		return nil, bad("the response is not a JSON object (Content-Type %q, %d bytes)", r.text(resp.Header.Get("Content-Type")), len(body))
	}
	tok, err := parseToken(fields, sent, wantState, resp.Header, q)
	if err != nil {
		e := bad("malformed token response: %v", err)
		e.refreshToken = salvageRefreshToken(fields, q)
		return nil, e
	}
	return tok, nil
}

// parseToken reads Dropbox Sign's OAuthTokenResponse. Every field named by
// the spec must have its documented type and a value fit for its use (the
// access token goes into an HTTP header, the refresh token into the next
// request); other fields are kept as extras, and so is the rate limit read
// from header. Neither token may be a credential of the request (q), and
// the extras keep no field that holds one. Error texts never quote a value.
func parseToken(fields map[string]json.RawMessage, sent time.Time, wantState string, header http.Header, q requestSecrets) (*oauth2.Token, error) {
	access, err := stringField(fields, "access_token")
	if err != nil {
		return nil, err
	}
	if access == "" {
		return nil, errors.New("access_token is missing or empty")
	}
	if problem := credentialProblem(access); problem != "" {
		return nil, errors.New("access_token " + problem)
	}
	if name := q.echo(access, true); name != "" {
		return nil, errors.New("access_token is " + name + " the request carried: an echo of the request, not a token")
	}
	tokenType, err := stringField(fields, "token_type")
	if err != nil {
		return nil, err
	}
	switch {
	case tokenType == "" || strings.EqualFold(tokenType, "bearer"):
		tokenType = "Bearer"
	default:
		return nil, errors.New("token_type is not Bearer, the only type Dropbox Sign's API accepts")
	}
	refresh, err := stringField(fields, "refresh_token")
	if err != nil {
		return nil, err
	}
	if refresh != "" { // empty reads as absent: the old refresh token is kept
		if problem := credentialProblem(refresh); problem != "" {
			return nil, errors.New("refresh_token " + problem)
		}
		if name := q.echo(refresh, false); name != "" {
			return nil, errors.New("refresh_token is " + name + " the request carried: an echo of the request, not a token")
		}
	}
	state, err := stringField(fields, "state")
	if err != nil {
		return nil, err
	}
	if wantState != "" && state != "" && state != wantState {
		return nil, errors.New("the response's state is not the one sent: it answers another request")
	}
	secs, err := expiresIn(fields["expires_in"], sent)
	if err != nil {
		return nil, err
	}
	tok := &oauth2.Token{AccessToken: access, TokenType: tokenType, RefreshToken: refresh}
	if secs > 0 {
		tok.ExpiresIn = secs
		tok.Expiry = sent.Add(time.Duration(secs) * time.Second)
	}
	extra := make(map[string]any, len(fields))
	for k, raw := range fields {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			v = json.RawMessage(raw) // e.g. a number too large for float64
		}
		if q.holdsEcho(v) {
			continue // the request's client_secret or code, say: not for a token that gets printed and passed around
		}
		extra[k] = v
	}
	if rl, ok := ParseRateLimit(header); ok {
		extra[rateLimitKey] = rl
	}
	return tok.WithExtra(extra), nil
}

// maxCredentialLen bounds access and refresh tokens: one travels in a header
// on every API call, and real ones are far shorter.
const maxCredentialLen = 4096

// credentialProblem says why s cannot serve as a token value, or "" if it
// can: visible ASCII only, so that it is a legal header value (RFC 9110) and
// prints as itself, and of bounded length.
func credentialProblem(s string) string {
	if s == "" {
		return "is empty"
	}
	if len(s) > maxCredentialLen {
		return fmt.Sprintf("is longer than %d bytes", maxCredentialLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return "holds characters that cannot be sent in an HTTP header (space, control or non-ASCII)"
		}
	}
	return ""
}

// stringField returns a JSON string field; absent and null read as "".
func stringField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s is not a string", name)
	}
	return s, nil
}

// expiresIn reads expires_in: seconds as a JSON number or a numeric string,
// rounded up. Absent, null or 0 mean "no expiry known", as in x/oauth2. The
// spec also calls the field an "epoch": a value within ten years of now as a
// Unix time is read as one.
func expiresIn(raw json.RawMessage, now time.Time) (int64, error) {
	if raw == nil || string(raw) == "null" {
		return 0, nil
	}
	s := string(raw)
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, errors.New("expires_in is not a number")
		}
		s = strings.TrimSpace(s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errors.New("expires_in is not a number")
	}
	if f < 0 || math.Signbit(f) && f != 0 { // before rounding: -0.5 must not round up to "no expiry"
		return 0, errors.New("expires_in is negative")
	}
	f = math.Ceil(f)
	if epoch := float64(now.Unix()); f > maxExpiresIn && math.Abs(f-epoch) <= maxExpiresIn {
		if f <= epoch {
			return 0, errors.New("expires_in is a time in the past")
		}
		f -= epoch
	}
	switch {
	case f < 0:
		return 0, errors.New("expires_in is negative")
	case f > maxExpiresIn:
		return 0, fmt.Errorf("expires_in is larger than %d seconds", maxExpiresIn)
	}
	return int64(f), nil
}

// parseError reads both error shapes Dropbox Sign uses:
// {"error":{"error_name":…,"error_msg":…}} and
// {"error":"…","error_description":"…"}.
func parseError(fields map[string]json.RawMessage) (code, desc, uri string) {
	raw := fields["error"]
	var envelope struct {
		Name string `json:"error_name"`
		Msg  string `json:"error_msg"`
	}
	if json.Unmarshal(raw, &code) != nil && json.Unmarshal(raw, &envelope) == nil {
		code, desc = envelope.Name, envelope.Msg
	}
	if desc == "" {
		desc, _ = stringField(fields, "error_description")
	}
	uri, _ = stringField(fields, "error_uri")
	return code, desc, uri
}

// hasError reports whether a body carries an "error" member at all, even
// one whose contents are not understood.
func hasError(fields map[string]json.RawMessage) bool {
	raw, ok := fields["error"]
	return ok && string(raw) != "null" && string(raw) != `""`
}

// salvageRefreshToken picks a refresh token out of an otherwise unusable
// success response: if the server rotated it, it is the only valid one left.
// One that could not be sent is no use, and one that is a credential of the
// request (the client secret, the code) is an echo, never to be stored.
func salvageRefreshToken(fields map[string]json.RawMessage, q requestSecrets) string {
	rt, _ := stringField(fields, "refresh_token")
	if credentialProblem(rt) != "" || q.echo(rt, false) != "" {
		return ""
	}
	return rt
}

// responseError is the error of a token request whose 2xx answer was not a
// usable token. Its text is built from sanitized parts only; the answer
// stays reachable, redacted, through the wrapped *oauth2.RetrieveError.
type responseError struct {
	op           string
	status       string
	msg          string
	retrieve     *oauth2.RetrieveError
	refreshToken string // salvaged from a malformed success; never printed
}

func (e *responseError) Error() string {
	return "dropboxsign: " + e.op + ": " + e.status + ": " + e.msg
}

func (e *responseError) Unwrap() error { return e.retrieve }
