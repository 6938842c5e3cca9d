package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// randomState returns an unguessable state for one authorization.
func randomState() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// awaitCallback is serveCallback without a report of refused callbacks.
func awaitCallback(ctx context.Context, ln net.Listener, path, state string) (string, error) {
	return serveCallback(ctx, ln, path, state, io.Discard)
}

// maxReported bounds the lines a flood of refused callbacks writes to log.
const maxReported = 10

// serveCallback serves path on ln until this login's callback arrives or ctx
// ends, and returns its code. A callback whose state is not this login's
// (compared in constant time) is from a stale tab or forged by some web
// page: it gets an error page and one line on log, and the login keeps
// waiting, so that no such request can end it before the real one comes.
// This login's callback ends it, with its code or its error (consent
// denied).
func serveCallback(ctx context.Context, ln net.Listener, path, state string, log io.Writer) (string, error) {
	type result struct {
		code string
		err  error
	}
	results := make(chan result, 1)
	var (
		mu      sync.Mutex
		refused int
	)
	mux := http.NewServeMux()
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			why := "a wrong state"
			if q.Get("state") == "" {
				why = "no state"
			}
			http.Error(w, "dropboxsign-token: this callback does not belong to the login waiting here ("+why+
				": a stale tab, or a request from another page). It was ignored; finish the login from the URL shown in its terminal.",
				http.StatusBadRequest)
			mu.Lock()
			defer mu.Unlock()
			if refused++; refused <= maxReported {
				more := ""
				if refused == maxReported {
					more = " (further ones are not reported)"
				}
				// Nothing from the request: its code and state are not for the terminal.
				fmt.Fprintf(log, "Refused a callback with %s (a stale tab, or a request forged by a web page); still waiting%s.\n", why, more)
			}
			return
		}
		var res result
		switch {
		case q.Get("error") != "":
			res.err = fmt.Errorf("authorization was not granted: %s", printable(q.Get("error")))
		case q.Get("code") == "":
			res.err = errors.New("the callback carried no code")
		default:
			res.code = q.Get("code")
		}
		if res.err != nil {
			http.Error(w, "dropboxsign-token: "+res.err.Error(), http.StatusBadRequest)
		} else {
			fmt.Fprintln(w, "Authorized. You can close this window and return to the terminal.")
		}
		select {
		case results <- res:
		default: // only the first callback of this login counts
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer func() {
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	select {
	case res := <-results:
		return res.code, res.err
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		if refused > 0 {
			return "", fmt.Errorf("no authorization callback of this login arrived in time (%w); %d with another state were refused: open the URL this login printed, not an older one", ctx.Err(), refused)
		}
		return "", fmt.Errorf("no authorization callback arrived in time (%w)", ctx.Err())
	}
}

// listenLoopback listens on addr, given by flag, which must be a loopback
// address: what it serves (a callback's code, a fake's secrets) must not be
// exposed to the network. what says what it is for, and hint what to do
// when the address is taken, in errors.
func listenLoopback(flag, addr, what, hint string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, usagef("%s %q: %v", flag, addr, err)
	}
	if !isLoopbackHost(host) {
		return nil, usagef("%s %q: %s must be on a loopback address (127.0.0.1, ::1, localhost)", flag, addr, what)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s for %s: %w (%s)", addr, what, err, hint)
	}
	return ln, nil
}

// printable strips control characters from text that came from a request.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
