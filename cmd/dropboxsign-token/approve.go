package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// approveError is why login -approve could not give consent.
type approveError struct{ msg string }

func (e approveError) Error() string { return "-approve: " + e.msg }

// approveAt does what the user's browser does at a fake's authorize page,
// for login -approve: it fetches authURL (a loopback URL: login checks),
// checks that the fake redirects to this login's callback, and follows the
// redirect there. The callback then ends the wait as a browser's would. No
// error shows the redirect's query: it holds the code.
func approveAt(ctx context.Context, authURL, callback string) error {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil // loopback only
	client := &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	get := func(u string) (*http.Response, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, "", err
		}
		resp, err := client.Do(req)
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, whose query may hold the code
		}
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return resp, printable(string(body)), nil
	}
	resp, body, err := get(authURL)
	if err != nil {
		return approveError{fmt.Sprintf("no answer from the authorize page (is the fake running, at this endpoint?): %v", err)}
	}
	loc, err := resp.Location()
	if resp.StatusCode/100 != 3 || err != nil {
		return approveError{fmt.Sprintf("the authorize page answered %s, not a redirect to the callback: %s", resp.Status, body)}
	}
	want, _ := url.Parse(callback)
	if loc.Scheme != "http" || !isLoopbackHost(loc.Hostname()) || loc.Port() != want.Port() || loc.Path != want.Path {
		where := url.URL{Scheme: loc.Scheme, Host: loc.Host, Path: loc.Path}
		return approveError{fmt.Sprintf("the fake sends the consent to %s, not to this login's callback %s: "+
			"restart the fake with '-callback %s', or give login the -listen and -callback-path of the fake's callback URL",
			where.String(), callback, callback)}
	}
	if _, _, err := get(loc.String()); err != nil {
		return approveError{fmt.Sprintf("following the redirect to the callback %s: %v", callback, err)}
	}
	return nil
}
