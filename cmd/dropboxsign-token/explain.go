package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// This file turns token errors into what a person at the terminal can act
// on: which account, which flag or environment variable, which command.
// The package's error follows, for the details; it carries no secret.

// refused is the error for an account marked refused: the same first line
// on the run that learns it and on every run after; the second says why,
// as far as this run knows.
func (s *settings) refused(r *dropboxsign.RefusedError) error {
	when := ""
	if !r.Since.IsZero() {
		when = " on " + r.Since.Local().Format(time.DateTime)
	}
	why := "Dropbox Sign refused its grant: the user disconnected the app, or its refresh token was spent"
	var re *oauth2.RetrieveError
	if r.Err != nil && !errors.As(r.Err, &re) {
		why = r.Err.Error() // not Dropbox Sign's answer: no refresh token, say
	}
	return s.mustLogin("account %s must be authorized again: run '%s'\n"+
		"(marked refused in the store%s. %s. Until the account logs in again, print says so at once, without a request.)",
		shellWord(s.account), s.loginCommand(), when, why)
}

// explain returns err, a failed token request of the account's, with what
// to do about it.
func (s *settings) explain(err error, conf *oauth2.Config, timeout time.Duration) error {
	var refused *dropboxsign.RefusedError
	if errors.As(err, &refused) {
		return s.refused(refused)
	}
	var disconnected *dropboxsign.DisconnectedError
	if errors.As(err, &disconnected) { // disconnected while print ran
		return s.disconnected(disconnected)
	}
	if dropboxsign.Classify(err) == dropboxsign.Reauthorize {
		return s.mustLogin("account %s must be authorized again: run '%s'\n(%v)", shellWord(s.account), s.loginCommand(), err)
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && (re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client") {
		return fmt.Errorf("the API app's credentials were refused by Dropbox Sign (%s): check the client ID "+
			"(-client-id or %s) and the client secret (%s or -client-secret); here they came from %s and %s\n(%v)",
			re.ErrorCode, envClientID, envClientSecret, s.origin(envClientID), s.origin(envClientSecret), err)
	}
	var ue *url.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from the token endpoint %s within %s (-timeout)\n(%v)", conf.Endpoint.TokenURL, timeout, err)
	case errors.As(err, &ue):
		// No HTTP answer: the endpoint is wrong, down, unreachable, or
		// not an HTTP server.
		return fmt.Errorf("no answer from the token endpoint %s (set by %s): is it the right one, and up? (a 'dropboxsign-token fake' that has stopped?)\n(%v)",
			conf.Endpoint.TokenURL, s.origin(envEndpoint), err)
	}
	return err
}
