package dropboxsigntest

import (
	"crypto/subtle"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The consent page. A browser (a GET of the authorize route whose Accept
// header names text/html) gets an HTML page naming [Server.AppName] and the
// scopes asked for, with Approve and Deny buttons; the buttons POST a form
// back to the authorize route, and the fake redirects to the callback with
// a code (Approve) or error=access_denied (Deny), state in both. Every
// other request, such as a test's http.Client, gets today's immediate
// redirect, which [Server.SetDenyConsent] turns into a refusal; a person at
// the page decides for themselves.

// consentLifetime is how long a consent page's form can be submitted.
const consentLifetime = 10 * time.Minute

// maxConsentPages bounds the pages awaiting an answer, so that a crawler
// cannot grow the fake without bound: past it the oldest are dropped.
const maxConsentPages = 10000

// consentPage is what a shown page binds its form token to: the form must
// come back with the same client, state and callback, in time. The first
// answer decides; the same answer again (a double click on Approve) gets
// the same redirect, with the same code, and any other is refused.
type consentPage struct {
	clientID string
	state    string
	redirect string
	expires  time.Time
	decision string // "" until answered
	answer   string // the redirect's query, once answered
}

// wantsHTML says whether r comes from a browser: its Accept header names
// text/html. x/oauth2 and Go's http.Client send no such header.
func wantsHTML(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "text/html") {
			return true
		}
	}
	return false
}

// isConsentRequest says whether the authorize route's request r is for the
// consent page rather than the scripted redirect: a browser's GET, or a
// form POST (only the page's form posts here).
func isConsentRequest(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet:
		return wantsHTML(r)
	case http.MethodPost:
		ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
		return strings.TrimSpace(ct) == "application/x-www-form-urlencoded"
	}
	return false
}

// handleConsent serves the consent page (GET) and its answer (POST).
func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) {
	// The page and its answer must not be framed or cached: a consent page
	// in someone else's frame is clickjacking.
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method == http.MethodPost {
		s.answerConsent(w, r)
		return
	}
	q := r.URL.Query()
	switch {
	case q.Get("response_type") != "code":
		consentError(w, http.StatusBadRequest, "response_type must be code.")
		return
	case q.Get("client_id") != s.ClientID:
		consentError(w, http.StatusBadRequest, "Unknown client_id.")
		return
	case q.Get("state") == "":
		consentError(w, http.StatusBadRequest, "state is required.")
		return
	}
	var scopes []string
	for _, v := range q["scope"] {
		scopes = append(scopes, strings.FieldsFunc(v, func(c rune) bool { return c == ' ' || c == ',' })...)
	}
	page := consentPage{clientID: s.ClientID, state: q.Get("state"), redirect: s.callback(), expires: time.Now().Add(consentLifetime)}
	token := randomHex(16)
	s.mu.Lock()
	if s.consentPages == nil {
		s.consentPages = map[string]consentPage{}
	}
	s.dropStaleConsentPages(time.Now())
	s.consentPages[token] = page
	s.mu.Unlock()
	h.Set("Content-Type", "text/html; charset=utf-8")
	consentTemplate.Execute(w, map[string]any{
		"AppName":  s.appName(),
		"Scopes":   scopes,
		"ClientID": page.clientID,
		"State":    page.state,
		"Redirect": page.redirect,
		"Token":    token,
		"Action":   AuthorizePath,
	})
}

// answerConsent takes the consent page's form: the token must be one the
// fake showed, in time, with the page's client, state and callback, and
// not answered otherwise before; then it redirects as the scripted route
// does. A page answered twice the same way (a double click) redirects
// twice to the same place: one code, not two.
func (s *Server) answerConsent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		consentError(w, http.StatusBadRequest, "The form is unreadable or too large.")
		return
	}
	f := r.PostForm
	decision := f.Get("decision")
	if decision != "approve" && decision != "deny" {
		consentError(w, http.StatusBadRequest, "decision must be approve or deny.")
		return
	}
	now := time.Now()
	s.mu.Lock()
	token := f.Get("csrf_token")
	page, ok := s.consentPages[token]
	if !ok || !now.Before(page.expires) ||
		!equal(f.Get("client_id"), page.clientID) || !equal(f.Get("state"), page.state) || !equal(f.Get("redirect"), page.redirect) ||
		(page.decision != "" && page.decision != decision) {
		s.mu.Unlock()
		consentError(w, http.StatusForbidden, "This consent form is not one this server showed, was already answered otherwise, has expired or was altered. Start again from the app.")
		return
	}
	if page.decision == "" {
		answer := url.Values{"state": {page.state}}
		if decision == "deny" {
			answer.Set("error", "access_denied")
		} else {
			code := "code_" + randomHex(8)
			s.codes[code] = codeGrant{state: page.state, account: s.newAccount(), expires: now.Add(10 * time.Minute)}
			s.remember(code)
			s.stats.Authorizations++
			answer.Set("code", code)
		}
		page.decision, page.answer = decision, answer.Encode()
		s.consentPages[token] = page
	}
	s.mu.Unlock()
	target, err := url.Parse(page.redirect)
	if err != nil {
		consentError(w, http.StatusInternalServerError, "The app's callback URL is invalid.")
		return
	}
	target.RawQuery = page.answer
	// 303: the browser follows with a GET, as it would a real provider's.
	http.Redirect(w, r, target.String(), http.StatusSeeOther)
}

// callback is where the authorize route sends the user back.
func (s *Server) callback() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.callbackURL != "" {
		return s.callbackURL
	}
	return s.URL + CallbackPath
}

func (s *Server) appName() string {
	if s.AppName == "" {
		return "Test App"
	}
	return s.AppName
}

// dropStaleConsentPages forgets expired pages, and the oldest beyond
// maxConsentPages; the caller holds s.mu.
func (s *Server) dropStaleConsentPages(now time.Time) {
	for token, p := range s.consentPages {
		if !now.Before(p.expires) {
			delete(s.consentPages, token)
		}
	}
	for len(s.consentPages) >= maxConsentPages {
		var oldest string
		for token, p := range s.consentPages {
			if oldest == "" || p.expires.Before(s.consentPages[oldest].expires) {
				oldest = token
			}
		}
		delete(s.consentPages, oldest)
	}
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// consentError answers a browser with a short HTML page.
func consentError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	errorTemplate.Execute(w, msg)
}

var consentTemplate = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authorize {{.AppName}} – Dropbox Sign (test)</title>
<style>
body { font-family: system-ui, sans-serif; background: #f5f6f8; margin: 0; }
main { max-width: 28rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: 8px; box-shadow: 0 1px 4px #0002; }
h1 { font-size: 1.3rem; }
.buttons { display: flex; gap: 1rem; margin-top: 1.5rem; }
button { font-size: 1rem; padding: .6rem 1.4rem; border-radius: 4px; border: 1px solid #888; cursor: pointer; }
#approve { background: #0061fe; color: #fff; border-color: #0061fe; }
.note { color: #666; font-size: .85rem; margin-top: 2rem; }
</style>
</head>
<body>
<main>
<h1 id="app-name"><strong>{{.AppName}}</strong> would like to connect to your Dropbox Sign account</h1>
{{if .Scopes}}<p>It asks for:</p>
<ul id="scopes">{{range .Scopes}}<li>{{.}}</li>{{end}}</ul>
{{else}}<p id="scopes">It asks for the access set in its API app's settings.</p>
{{end}}<form method="post" action="{{.Action}}">
<input type="hidden" name="client_id" value="{{.ClientID}}">
<input type="hidden" name="state" value="{{.State}}">
<input type="hidden" name="redirect" value="{{.Redirect}}">
<input type="hidden" name="csrf_token" value="{{.Token}}">
<div class="buttons">
<button type="submit" id="approve" name="decision" value="approve">Approve</button>
<button type="submit" id="deny" name="decision" value="deny">Deny</button>
</div>
</form>
<p class="note">This is dropboxsigntest's fake Dropbox Sign: no real account is involved.</p>
</main>
</body>
</html>
`))

var errorTemplate = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Dropbox Sign (test): error</title></head>
<body><main><h1>Authorization failed</h1><p id="error">{{.}}</p></main></body></html>
`))
