package dropboxsign

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// ConnectCookieName is the name of the cookie that carries a connect
// flow's state from [Connect.Begin] to [Connect.Callback].
const ConnectCookieName = "dropboxsign_connect"

// Limits of what the connect handlers accept: anything larger is refused
// with 400 before any work (a hostile or broken request).
const (
	maxConnectParam  = 512  // state, code, error: each
	maxConnectQuery  = 4096 // the callback's whole query
	maxConnectReturn = 1024 // the return path
)

// Connect is the "Connect Dropbox Sign" flow as two [http.Handler]s for an
// [Accounts]: [Connect.Begin] sends the app's signed-in user to Dropbox
// Sign's consent page, and [Connect.Callback] completes the grant with
// [Accounts.Login] under that user's account key, then hands over to Done.
// Both are plain handlers: mount them with [http.ServeMux] patterns or any
// router. The callback's URL is the one set in the API app's settings.
//
// The state is 32 random bytes, single use, expiring after MaxAge, and
// bound both to the browser and to the app's user: Begin puts it, with the
// user's account key, the expiry and the return path, in a cookie sealed
// with AES-256-GCM under Keys (and bound to the cookie's name), HttpOnly,
// SameSite=Lax, for the callback's path only, and Secure when the callback
// URL (Config.RedirectURL) is https, or the request came over TLS to this
// server (behind a proxy that ends TLS, the callback URL says so: an
// X-Forwarded-Proto header is not trusted, since anyone can send one). The
// callback refuses, with 400 and no token request, a callback without that
// cookie, a cookie that does not open (tampered with, or sealed under a key
// no longer configured), an expired one, a state that differs from the
// cookie's (compared in constant time), or a cookie made for another user
// than the one signed in; then it deletes the cookie, so a replayed
// callback is refused too. One flow per browser at a time: a second Begin
// (another tab) replaces the cookie, and the first tab's callback is then
// refused (400, no token request) while the second completes. A sealed
// cookie rather than a table of states:
// any replica can check it, with no server-side store to share, clean up
// or lose, and the app's keys (rotated like a [Sealer]'s) keep it from
// being forged or read.
//
// A Connect must not be changed once its handlers serve.
type Connect struct {
	// Accounts stores the grant (required).
	Accounts *Accounts
	// Config makes the consent page's URL (AuthCodeURL) (required): the
	// one Accounts was made with. Its RedirectURL's path, if any, is the
	// cookie's path when CookiePath is empty.
	Config *oauth2.Config
	// User returns the signed-in user's account key, the key Login stores
	// the grant under (required). ok false: nobody is signed in, and both
	// handlers answer 401 (the app's sign-in should come first).
	User func(r *http.Request) (account string, ok bool)
	// Keys seal the state cookie: 32 bytes each (AES-256), from a secret
	// manager or crypto/rand, the same on every replica (required). The
	// first seals, all open: to rotate, deploy [old, new], then [new, old],
	// and drop old after MaxAge.
	Keys [][]byte
	// Done ends the flow (optional): the app renders its page or
	// redirects. err is nil when the account is connected. Otherwise,
	// [Classify] says Reauthorize when the user declined or the code was
	// already used or expired (a double submit, the back button: the user
	// starts again); a [*SaveError] means the grant was obtained but not yet
	// stored (the token is kept and its save retried: see
	// [Accounts.Login]); other classes are as for Login. [ConnectReturn]
	// gives the return path Begin accepted. By default, a 303 to that path
	// with ?connected=1, or ?connect_error= and the class's name (replacing
	// either, if the path had it).
	Done func(w http.ResponseWriter, r *http.Request, account string, err error)
	// Refuse renders a request the handlers refuse (optional): status is
	// 400 for a callback that is malformed, oversized, replayed, expired,
	// tampered with or another user's (no token was requested), 401 with
	// nobody signed in, 500 for a Connect that lacks what it needs; msg
	// says why in a short sentence for the user (no secret in it). Refuse
	// must write the status. By default, msg as plain text with the status.
	Refuse func(w http.ResponseWriter, r *http.Request, status int, msg string)
	// MaxAge is how long a user has to consent (default 10 minutes, at
	// most 24 hours: a longer one is taken as 24 hours).
	MaxAge time.Duration
	// CookiePath is the state cookie's path (default: the path of
	// Config.RedirectURL, else "/"). It must cover the callback's path.
	CookiePath string

	now func() time.Time // tests
}

// ConnectReturn returns the local path the user asked, at Begin, to come
// back to after the flow ("/" by default), for a custom [Connect.Done].
// Outside a Done call it returns "/".
func ConnectReturn(r *http.Request) string {
	if p, ok := r.Context().Value(connectReturnKey{}).(string); ok {
		return p
	}
	return "/"
}

type connectReturnKey struct{}

// connectError is a connect flow ended for a reason the user can act on by
// starting again: [Classify] says Reauthorize; the cause, if any, is
// reachable with [errors.As].
type connectError struct {
	msg string
	err error
}

func (e *connectError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}

// errStartAgain is matched by every connectError: [Classify] takes it for
// Reauthorize, whatever the cause (a used code is an invalid_grant or
// invalid_request answer, which alone would read Misconfigured): no token
// came of the flow, and a new consent is the remedy.
var errStartAgain = errors.New("dropboxsign: connect: start the connection again")

// Unwrap returns the cause, and errStartAgain (see there).
func (e *connectError) Unwrap() []error {
	if e.err == nil {
		return []error{errStartAgain}
	}
	return []error{errStartAgain, e.err}
}

// Begin returns the handler that starts the flow: it sets the sealed state
// cookie and redirects (303) to Config.AuthCodeURL(state). Its query
// parameter "return" is where Done sends the user by default: only a local
// path is accepted (one leading "/", not "//" nor "/\", no scheme or host,
// no control characters or backslashes, at most 1 KiB); anything else
// becomes "/". Without a signed-in user it answers 401; with a Connect
// that lacks what it needs, 500.
func (c *Connect) Begin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		aeads, err := c.check()
		if err != nil {
			c.refuse(w, r, http.StatusInternalServerError, err.Error())
			return
		}
		account, ok := c.User(r)
		if !ok {
			c.refuse(w, r, http.StatusUnauthorized, "sign in first")
			return
		}
		if checkAccountKey(account) != nil {
			c.refuse(w, r, http.StatusInternalServerError, "dropboxsign: Connect: the signed-in user's account key is unusable (see Accounts.TokenSource)")
			return
		}
		ret := "/"
		if len(r.URL.RawQuery) <= maxConnectQuery {
			ret = localPath(r.URL.Query().Get("return"))
		}
		var raw [32]byte
		rand.Read(raw[:]) // never fails (crypto/rand)
		state := base64.RawURLEncoding.EncodeToString(raw[:])
		maxAge := c.maxAge()
		st := connectState{state: state, account: account, expires: c.clock().Add(maxAge), ret: ret}
		http.SetCookie(w, &http.Cookie{
			Name:     ConnectCookieName,
			Value:    sealConnect(aeads[0], st),
			Path:     c.cookiePath(),
			MaxAge:   int((maxAge + time.Second - 1) / time.Second),
			HttpOnly: true,
			Secure:   c.secure(r),
			SameSite: http.SameSiteLaxMode,
		})
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, c.Config.AuthCodeURL(state), http.StatusSeeOther)
	})
}

// Callback returns the handler for the API app's callback URL. It answers
// 400, with a short plain message and no token request, for a query over
// 4 KiB, a state, code or error parameter missing, repeated or over 512
// bytes, or a state cookie missing, unopenable, expired, for another state
// or for another user (see [Connect]); 401 without a signed-in user. Then
// it deletes the cookie (single use) and calls Done: with an error that
// [Classify] calls Reauthorize if Dropbox Sign answered with an error
// (the user declined: no token request), else with [Accounts.Login]'s
// outcome (where a code already used or expired is Reauthorize, not
// Misconfigured). Within a minute, a
// callback submitted twice in one process with its cookie gets the same
// grant, once (see [Exchange]). No error holds the code, the state, a
// token or a key.
func (c *Connect) Callback() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		aeads, err := c.check()
		if err != nil {
			c.refuse(w, r, http.StatusInternalServerError, err.Error())
			return
		}
		if len(r.URL.RawQuery) > maxConnectQuery {
			c.refuse(w, r, http.StatusBadRequest, "the query is too long")
			return
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			c.refuse(w, r, http.StatusBadRequest, "the query is malformed")
			return
		}
		state, msg := connectParam(q, "state")
		if msg == "" {
			if _, declined := q["error"]; declined {
				_, msg = connectParam(q, "error")
			} else {
				_, msg = connectParam(q, "code")
			}
		}
		if msg != "" {
			c.refuse(w, r, http.StatusBadRequest, msg)
			return
		}
		account, ok := c.User(r)
		if !ok {
			c.refuse(w, r, http.StatusUnauthorized, "sign in first")
			return
		}
		cookies := r.CookiesNamed(ConnectCookieName)
		if len(cookies) == 0 {
			c.refuse(w, r, http.StatusBadRequest, "no connect flow is under way in this browser: start again")
			return
		}
		// Every cookie of the name (up to 8), not the first: one set for a parent
		// domain or a longer path (by a sibling subdomain, or left over)
		// must not shadow this flow's.
		var st connectState
		ok = false
		for i, ck := range cookies {
			if i == 8 {
				break
			}
			if s2, ok2 := openConnect(aeads, ck.Value); ok2 {
				st, ok = s2, true
				if subtle.ConstantTimeCompare([]byte(state), []byte(s2.state)) == 1 {
					break
				}
			}
		}
		switch {
		case !ok:
			c.refuse(w, r, http.StatusBadRequest, "the connect cookie is invalid: start again")
			return
		case !c.clock().Before(st.expires):
			c.refuse(w, r, http.StatusBadRequest, "the connect flow has expired: start again")
			return
		case subtle.ConstantTimeCompare([]byte(state), []byte(st.state)) != 1:
			c.refuse(w, r, http.StatusBadRequest, "the state does not match this browser's: start again")
			return
		case subtle.ConstantTimeCompare([]byte(account), []byte(st.account)) != 1:
			c.refuse(w, r, http.StatusBadRequest, "this connect flow was started by another user")
			return
		}
		// Single use: gone before anything else can happen.
		http.SetCookie(w, &http.Cookie{Name: ConnectCookieName, Value: "", Path: c.cookiePath(), MaxAge: -1,
			HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteLaxMode})
		w.Header().Set("Cache-Control", "no-store")
		r = r.WithContext(context.WithValue(r.Context(), connectReturnKey{}, st.ret))
		if _, declined := q["error"]; declined {
			c.done(w, r, account, &connectError{msg: "dropboxsign: Dropbox Sign did not grant access (" + connectErrorName(q.Get("error")) + "): the user may connect again"})
			return
		}
		// Not cancelled with the request: a browser gone mid-exchange (a
		// closed tab, a second click) must not lose a grant Dropbox Sign
		// gives; Login's own timeout bounds it. A refused code is
		// Reauthorize.
		_, err = c.Accounts.Login(context.WithoutCancel(r.Context()), account, q.Get("code"), state)
		c.done(w, r, account, err)
	})
}

// check returns the ciphers for c.Keys, or what c lacks.
func (c *Connect) check() ([]cipher.AEAD, error) {
	switch {
	case c.Accounts == nil:
		return nil, errors.New("dropboxsign: Connect has no Accounts")
	case c.Config == nil:
		return nil, errors.New("dropboxsign: Connect has no Config")
	case c.User == nil:
		return nil, errors.New("dropboxsign: Connect has no User function")
	case len(c.Keys) == 0:
		return nil, errors.New("dropboxsign: Connect has no Keys")
	}
	aeads := make([]cipher.AEAD, len(c.Keys))
	for i, k := range c.Keys {
		if len(k) != 32 {
			return nil, fmt.Errorf("dropboxsign: Connect key %d has %d bytes, want 32 (AES-256)", i, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("dropboxsign: Connect key %d unusable", i)
		}
		if aeads[i], err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("dropboxsign: Connect key %d unusable", i)
		}
	}
	return aeads, nil
}

func (c *Connect) done(w http.ResponseWriter, r *http.Request, account string, err error) {
	if c.Done != nil {
		c.Done(w, r, account, err)
		return
	}
	u, perr := url.Parse(ConnectReturn(r))
	if perr != nil { // cannot happen: localPath parsed it
		u = &url.URL{Path: "/"}
	}
	v := u.Query()
	v.Del("connected")
	v.Del("connect_error")
	if err == nil {
		v.Set("connected", "1")
	} else {
		v.Set("connect_error", Classify(err).String())
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// refuse answers a refused request: the app's page, or plain text.
func (c *Connect) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	if c.Refuse != nil {
		c.Refuse(w, r, status, msg)
		return
	}
	http.Error(w, msg, status)
}

func (c *Connect) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

func (c *Connect) maxAge() time.Duration {
	if c.MaxAge > 0 {
		return min(c.MaxAge, 24*time.Hour)
	}
	return 10 * time.Minute
}

// secure says whether the state cookie is Secure: over TLS here, or when
// the browser comes back to an https callback URL (TLS ended by a proxy).
func (c *Connect) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	u, err := url.Parse(c.Config.RedirectURL)
	return err == nil && strings.EqualFold(u.Scheme, "https")
}

func (c *Connect) cookiePath() string {
	if c.CookiePath != "" {
		return c.CookiePath
	}
	if u, err := url.Parse(c.Config.RedirectURL); err == nil && strings.HasPrefix(u.Path, "/") {
		return u.Path
	}
	return "/"
}

// connectParam returns q's only value for name, or why it cannot be used.
func connectParam(q url.Values, name string) (string, string) {
	vs := q[name]
	switch {
	case len(vs) == 0 || vs[0] == "":
		return "", "missing " + name
	case len(vs) > 1:
		return "", "more than one " + name
	case len(vs[0]) > maxConnectParam:
		return "", name + " is too long"
	}
	return vs[0], ""
}

// connectErrorName is Dropbox Sign's error name, if it is a plain word, for
// the error text.
func connectErrorName(s string) string {
	if s == "" || len(s) > 64 || strings.IndexFunc(s, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) >= 0 {
		return "an error"
	}
	return s
}

// localPath returns p if it is a path on this site, else "/": a path that
// a browser could take for another host ("//host", "/\host", a scheme, a
// tab or newline it would strip) is no return path.
func localPath(p string) string {
	if len(p) == 0 || len(p) > maxConnectReturn || p[0] != '/' || strings.ContainsAny(p, "\\") {
		return "/"
	}
	if len(p) > 1 && p[1] == '/' {
		return "/"
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return "/"
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") {
		return "/"
	}
	return p
}

// connectState is what the cookie holds.
type connectState struct {
	state   string
	account string
	expires time.Time
	ret     string
}

// connectAD binds a sealed cookie to its name.
var connectAD = []byte("dropboxsign connect\x00" + ConnectCookieName)

// sealConnect encodes st as expiry (8 bytes, Unix nanoseconds), state
// length (1), state, account length (2), account, return path; sealed:
// nonce then ciphertext, in unpadded base64url.
func sealConnect(aead cipher.AEAD, st connectState) string {
	plain := binary.BigEndian.AppendUint64(nil, uint64(st.expires.UnixNano()))
	plain = append(plain, byte(len(st.state)))
	plain = append(plain, st.state...)
	plain = binary.BigEndian.AppendUint16(plain, uint16(len(st.account)))
	plain = append(plain, st.account...)
	plain = append(plain, st.ret...)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, connectAD))
}

// openConnect opens a cookie sealed under any of aeads.
func openConnect(aeads []cipher.AEAD, value string) (connectState, bool) {
	var st connectState
	if len(value) > 4096 {
		return st, false
	}
	blob, err := base64.RawURLEncoding.Strict().DecodeString(value) // Strict: one encoding per cookie, no slack in its last character
	if err != nil {
		return st, false
	}
	for _, aead := range aeads {
		if len(blob) < aead.NonceSize()+aead.Overhead() {
			return st, false
		}
		plain, err := aead.Open(nil, blob[:aead.NonceSize()], blob[aead.NonceSize():], connectAD)
		if err != nil {
			continue
		}
		if len(plain) < 9 {
			return st, false
		}
		st.expires = time.Unix(0, int64(binary.BigEndian.Uint64(plain)))
		n := int(plain[8])
		plain = plain[9:]
		if len(plain) < n+2 {
			return st, false
		}
		st.state, plain = string(plain[:n]), plain[n:]
		n = int(binary.BigEndian.Uint16(plain))
		plain = plain[2:]
		if len(plain) < n {
			return st, false
		}
		st.account, st.ret = string(plain[:n]), localPath(string(plain[n:]))
		return st, true
	}
	return st, false
}
