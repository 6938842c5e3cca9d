// Command demo shows package dropboxsign at work against the fake Dropbox
// Sign server of package dropboxsigntest, with no account and no network:
// the authorization-code flow, then concurrent API calls through NewClient
// across several short token lifetimes, with rotating refresh tokens and one
// failed refresh. It exits 0 only if every check holds.
//
//	go run ./examples/demo
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

func main() {
	duration := flag.Duration("duration", 12*time.Second, "how long to make API calls")
	lifetime := flag.Duration("lifetime", 6*time.Second, "access token lifetime (whole seconds)")
	workers := flag.Int("workers", 16, "concurrent API callers")
	flag.Parse()
	if err := run(*duration, *lifetime, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(duration, lifetime time.Duration, workers int) error {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	fake.SetLifetime(lifetime)
	conf := fake.Config()
	ctx := context.Background()
	fmt.Printf("fake Dropbox Sign at %s (tokens live %s, refresh tokens rotate)\n", fake.URL, lifetime)

	// 1. Authorization-code flow.
	state := fmt.Sprintf("%x", time.Now().UnixNano())
	resp, err := http.Get(conf.AuthCodeURL(state))
	if err != nil {
		return err
	}
	var callback struct{ Code, State string }
	err = json.NewDecoder(resp.Body).Decode(&callback)
	resp.Body.Close()
	if err != nil || callback.State != state {
		return fmt.Errorf("callback: state %q, want %q (%v)", callback.State, state, err)
	}
	tok, err := dropboxsign.Exchange(ctx, conf, callback.Code, callback.State)
	if err != nil {
		return err
	}
	fmt.Println("1. authorized: code exchanged for a token that expires in", time.Until(tok.Expiry).Round(time.Second))

	// 2. Persist every new token, as a real app must with rotating refresh tokens.
	dir, err := os.MkdirTemp("", "dropboxsign-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "token.json")
	var saves atomic.Int64
	save := func(_ context.Context, t *oauth2.Token) error {
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		saves.Add(1)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	}
	if err := save(ctx, tok); err != nil {
		return err
	}
	client := dropboxsign.NewClient(ctx, conf, tok, dropboxsign.WithOnRefresh(save))
	fmt.Println("2. token saved to", path)

	// 3. Concurrent API calls; the first background refresh meets an outage.
	fake.InjectFault(dropboxsigntest.Fault{Status: http.StatusServiceUnavailable, Body: "upstream down", Count: 1})
	fmt.Printf("3. %d workers calling the API for %s; the first refresh will get a 503\n", workers, duration)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failures  []error
	)
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				start := time.Now()
				err := call(client, fake.AccountURL())
				mu.Lock()
				latencies = append(latencies, time.Since(start))
				if err != nil {
					failures = append(failures, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	// 4. Summary and checks.
	st := fake.Stats()
	slices.Sort(latencies)
	pct := func(p float64) time.Duration { return latencies[int(p*float64(len(latencies)-1))] }
	lifetimes := int(duration/lifetime) + 1
	fmt.Printf("\ncalls %d, failed %d, latency p50 %s p99 %s max %s\n",
		len(latencies), len(failures), pct(0.50), pct(0.99), latencies[len(latencies)-1])
	fmt.Printf("token requests %d (%d refreshes, %d failed) in %s of %s tokens; tokens saved %d; stale refresh tokens presented %d\n",
		st.TokenRequests-1, st.Refreshes, st.Faults, duration, lifetime, saves.Load()-1, st.StaleRefreshTokens)

	var stored oauth2.Token
	b, _ := os.ReadFile(path)
	json.Unmarshal(b, &stored)
	current, err := dropboxsign.Refresh(ctx, conf, stored.RefreshToken)
	checks := []struct {
		ok   bool
		what string
	}{
		{len(failures) == 0, "no API call failed"},
		{st.StaleRefreshTokens == 0, "no stale refresh token was ever presented"},
		{st.Faults == 1, "the outage was met once and retried, not hammered"},
		{st.Refreshes >= 1 && st.Refreshes <= 2*lifetimes, "one refresh per token lifetime, not one per caller"},
		{err == nil && current != nil, "the stored refresh token is the newest and still works"},
	}
	allOK := true
	for _, c := range checks {
		mark := "ok  "
		if !c.ok {
			mark, allOK = "FAIL", false
		}
		fmt.Println(mark, c.what)
	}
	if !allOK {
		if len(failures) > 0 {
			fmt.Println("first failure:", failures[0])
		}
		return fmt.Errorf("a check failed")
	}
	return nil
}

func call(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("API answered %s", resp.Status)
	}
	return nil
}
