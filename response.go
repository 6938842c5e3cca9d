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
	"unicode/utf8"

	"golang.org/x/oauth2"
)

// maxBodySize bounds what is read of any token response.
const maxBodySize = 1 << 20

// maxExpiresIn is the longest lifetime believed: ten years. Anything longer
// is a broken server, and would overflow time arithmetic soon after.
const maxExpiresIn = 10 * 365 * 24 * 3600

// decodeResponse turns a token response into a token or an error. sent is when
// the request left, so that Expiry errs on the early side.
func decodeResponse(op string, resp *http.Response, sent time.Time, secrets []string) (*oauth2.Token, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodySize+1))
	re := &oauth2.RetrieveError{Response: resp, Body: body}
	fail := func(format string, args ...any) *tokenError {
		return &tokenError{op: op, status: sanitize(resp.Status, secrets), msg: fmt.Sprintf(format, args...), retrieve: re}
	}
	if err != nil {
		return nil, fail("reading response: %v", err)
	}
	if len(body) > maxBodySize {
		re.Body = body[:maxBodySize]
		return nil, fail("response body exceeds %d bytes", maxBodySize)
	}

	var fields map[string]json.RawMessage
	jsonErr := json.Unmarshal(body, &fields)
	if jsonErr == nil {
		re.ErrorCode, re.ErrorDescription, re.ErrorURI = parseError(fields)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 || hasError(fields) {
		e := fail("%s", describeError(re, jsonErr, resp.Header.Get("Content-Type"), secrets))
		return nil, e
	}
	if jsonErr != nil {
		return nil, fail("response is not a JSON object (Content-Type %q, %d bytes)", sanitize(resp.Header.Get("Content-Type"), secrets), len(body))
	}
	tok, err := parseToken(fields, sent, resp.Header)
	if err != nil {
		e := fail("malformed token response: %v", err)
		e.refreshToken = salvageRefreshToken(fields)
		return nil, e
	}
	return tok, nil
}

// parseToken reads Dropbox Sign's OAuthTokenResponse. Every field named by
// the spec must have its documented type; other fields are kept as extras,
// and so is the rate limit read from header.
func parseToken(fields map[string]json.RawMessage, sent time.Time, header http.Header) (*oauth2.Token, error) {
	access, err := stringField(fields, "access_token")
	if err != nil {
		return nil, err
	}
	if access == "" {
		return nil, errors.New("access_token is missing or empty")
	}
	tokenType, err := stringField(fields, "token_type")
	if err != nil {
		return nil, err
	}
	if tokenType == "" {
		tokenType = "Bearer"
	}
	refresh, err := stringField(fields, "refresh_token")
	if err != nil {
		return nil, err
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
		extra[k] = v
	}
	if rl, ok := ParseRateLimit(header); ok {
		extra[rateLimitKey] = rl
	}
	return tok.WithExtra(extra), nil
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

func describeError(re *oauth2.RetrieveError, jsonErr error, contentType string, secrets []string) string {
	switch {
	case re.ErrorCode != "" && re.ErrorDescription != "":
		return sanitize(re.ErrorCode, secrets) + ": " + sanitize(re.ErrorDescription, secrets)
	case re.ErrorCode != "":
		return sanitize(re.ErrorCode, secrets)
	case jsonErr != nil:
		return fmt.Sprintf("response is not JSON (Content-Type %q, %d bytes)", sanitize(contentType, secrets), len(re.Body))
	default:
		return "error response without an error code"
	}
}

// salvageRefreshToken picks a refresh token out of an otherwise unusable
// success response: if the server rotated it, it is the only valid one left.
func salvageRefreshToken(fields map[string]json.RawMessage) string {
	rt, _ := stringField(fields, "refresh_token")
	return rt
}

// tokenError is the error of a token request that got an HTTP response. Its
// text is built from sanitized parts only; the raw response stays reachable
// through the wrapped *oauth2.RetrieveError.
type tokenError struct {
	op           string
	status       string
	msg          string
	retrieve     *oauth2.RetrieveError
	refreshToken string // salvaged from a malformed success; never printed
}

func (e *tokenError) Error() string {
	return "dropboxsign: " + e.op + ": " + e.status + ": " + e.msg
}

func (e *tokenError) Unwrap() error { return e.retrieve }

// sanitize makes server-supplied text safe to print: control characters are
// dropped (no log injection, and no hiding a secret behind one), secrets are
// redacted, and the length is capped.
func sanitize(s string, secrets []string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	const maxRunes = 200
	if utf8.RuneCountInString(s) > maxRunes {
		s = string([]rune(s)[:maxRunes]) + "…"
	}
	return s
}
