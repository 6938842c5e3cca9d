package dropboxsign

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// This file makes text that came from outside (a token endpoint, a proxy, a
// broken connection, a store) safe to put in an error: no secret, no control
// character, bounded length. Every error the package returns is built from
// such text only.

// maxTextRunes bounds each piece of outside text in an error.
const maxTextRunes = 200

// maxErrorBody bounds the Body kept in a returned *oauth2.RetrieveError,
// whose Error prints it whole when the answer had no error code.
const maxErrorBody = 4 << 10

// redactor knows the secrets of one exchange with the outside: those sent
// (client secret, code, refresh token) and those received (new tokens).
type redactor struct{ secrets []string }

func newRedactor(secrets ...string) *redactor {
	r := &redactor{}
	r.add(secrets...)
	return r
}

// add learns more secrets; empty and very short values are ignored, since
// redacting them would shred ordinary text without protecting anything.
// The longest go first: a received value may hold a sent secret.
func (r *redactor) add(secrets ...string) {
	for _, s := range secrets {
		if len(s) >= 4 {
			r.secrets = append(r.secrets, s)
		}
	}
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
}

// text returns s without secrets or control characters, at most
// maxTextRunes long. A cut that would leave the start of a secret at the end
// drops that start too.
func (r *redactor) text(s string) string { return r.textN(s, maxTextRunes) }

// textN is text with a bound of its own.
func (r *redactor) textN(s string, n int) string {
	s = r.replace(stripControl(s, ""))
	if utf8.RuneCountInString(s) > n {
		s = r.trimPartial(string([]rune(s)[:n])) + "…"
	}
	return s
}

// body returns b without secrets, with every control character but line
// breaks and tabs turned into a space, at most maxErrorBody bytes long.
func (r *redactor) body(b []byte) []byte {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = r.replace(stripControl(s, " "))
	if len(s) > maxErrorBody {
		cut := maxErrorBody
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = r.trimPartial(s[:cut]) + "…"
	}
	return []byte(s)
}

func (r *redactor) replace(s string) string {
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}

// trimPartial drops a tail of s that is the beginning of a secret.
func (r *redactor) trimPartial(s string) string {
	for _, secret := range r.secrets {
		for n := min(len(secret)-1, len(s)); n >= 4; n-- {
			if strings.HasSuffix(s, secret[:n]) {
				s = s[:len(s)-n]
				break
			}
		}
	}
	return s
}

// stripControl removes control characters (C0, DEL, C1) and invalid UTF-8,
// or, when with is not empty, replaces them with it, keeping \n and \t.
func stripControl(s, with string) string {
	return strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == utf8.RuneError {
			if with != "" && (c == '\n' || c == '\t') {
				return c
			}
			if with != "" {
				return ' '
			}
			return -1
		}
		return c
	}, s)
}

// response returns a copy of resp that is safe to hand out inside a
// *oauth2.RetrieveError: status and header values redacted, and a request
// that no longer carries the body that held the secrets.
func (r *redactor) response(resp *http.Response) *http.Response {
	c := *resp
	c.Status = r.text(resp.Status)
	c.Header = make(http.Header, len(resp.Header))
	for k, vs := range resp.Header {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = r.replace(v)
		}
		c.Header[k] = out
	}
	if req := resp.Request; req != nil {
		c.Request = &http.Request{Method: req.Method, URL: req.URL, Proto: req.Proto, Header: req.Header.Clone(), Host: req.Host}
	}
	return &c
}

// requestError returns what to report for a token request that got no HTTP
// answer: a *url.Error, as net/http gives, but whose inner text is redacted
// and bounded. net/http quotes the bytes of a broken status or header line,
// and a hostile endpoint may send back the request that held the secrets.
// Only a context error stays reachable through it, for errors.Is.
func (r *redactor) requestError(err error, method, target string) error {
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	safe := &outsideError{text: r.text(inner.Error())}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		safe.cause, safe.timeout = context.DeadlineExceeded, true
	case errors.Is(err, context.Canceled):
		safe.cause = context.Canceled
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		safe.timeout = true
	}
	return &url.Error{Op: opName(method), URL: target, Err: safe}
}

func opName(method string) string {
	if method == "" {
		return "Get"
	}
	return method[:1] + strings.ToLower(method[1:])
}

// outsideError carries sanitized text in place of an error that may hold
// outside bytes, keeping only what callers test for.
type outsideError struct {
	text    string
	cause   error // a context error, or nil
	timeout bool
}

func (e *outsideError) Error() string { return e.text }
func (e *outsideError) Unwrap() error { return e.cause }
func (e *outsideError) Timeout() bool { return e.timeout }
