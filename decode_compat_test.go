package dropboxsign

import (
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// decodeResponse is decodeAnswer for a request whose credentials are only
// in r (the fuzz tests' calls): no token is checked for an echo of them.
func decodeResponse(op string, resp *http.Response, sent time.Time, wantState string, r *redactor) (*oauth2.Token, error) {
	return decodeAnswer(op, resp, sent, wantState, r, requestSecrets{})
}
