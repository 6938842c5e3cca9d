package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// randomState returns an unguessable state for one authorization.
func randomState() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// awaitCallback serves path on ln until one callback arrives or ctx ends,
// and returns its code once its state is checked, in constant time, against
// state.
func awaitCallback(ctx context.Context, ln net.Listener, path, state string) (string, error) {
	type result struct {
		code string
		err  error
	}
	results := make(chan result, 1)
	mux := http.NewServeMux()
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var res result
		switch {
		case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1:
			res.err = errors.New("state mismatch: the callback does not belong to this login (a stale tab, or a forged request); run login again")
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
		default: // only the first callback counts
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
		return "", fmt.Errorf("no authorization callback arrived in time (%w)", ctx.Err())
	}
}

// listenLoopback listens on addr, which must be a loopback address: the
// callback carries a code that must not be exposed to the network.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, usagef("-listen %q: %v", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, usagef("-listen %q: the callback listener must be on a loopback address (127.0.0.1, ::1, localhost)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s for the callback: %w (another login running? pick another -listen, and set the API app's callback URL to match)", addr, err)
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
