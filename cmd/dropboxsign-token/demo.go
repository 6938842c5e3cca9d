package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "Runs what a real app does against a fake Dropbox Sign on loopback: authorize\n"+
		"URL, consent, callback with code and state, exchange, stored token, then\n"+
		"concurrent API calls through NewClient across several short token lifetimes,\n"+
		"with rotating refresh tokens and one failed refresh. Exits 0 only if every\n"+
		"check holds.", stderr)
	duration := fs.Duration("duration", 12*time.Second, "how long to make API calls")
	lifetime := fs.Duration("lifetime", 4*time.Second, "access token lifetime (whole seconds, at least 2s)")
	workers := fs.Int("workers", 16, "concurrent API callers")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *lifetime < 2*time.Second || *duration <= 0 || *workers < 1 {
		return usagef("-lifetime must be at least 2s, -duration and -workers positive")
	}
	d := &demo{out: stdout, live: isTerminal(stdout), lifetime: lifetime.Truncate(time.Second), duration: *duration, workers: *workers}
	return d.run()
}

type demo struct {
	out      io.Writer
	live     bool // a terminal: redraw a progress line
	lifetime time.Duration
	duration time.Duration
	workers  int
}

func (d *demo) step(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) run() error {
	ctx := context.Background()
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	fake.SetLifetime(d.lifetime)
	conf := fake.Config()
	d.step("Fake Dropbox Sign on %s: %s tokens, refresh tokens rotate, stale ones are rejected.", fake.URL, d.lifetime)

	// 1–3. Authorize: URL, consent (an HTTP GET stands in for the browser),
	// redirect to our loopback callback, state checked, code exchanged.
	ln, err := listenLoopback("-listen", "127.0.0.1:0", "the callback", "")
	if err != nil {
		return err
	}
	fake.SetCallbackURL("http://" + ln.Addr().String() + "/callback")
	state := randomState()
	authURL := conf.AuthCodeURL(state)
	d.step("1. authorize URL: %s", authURL)
	codes := make(chan string, 1)
	errs := make(chan error, 2)
	go func() {
		code, err := awaitCallback(ctx, ln, "/callback", state)
		if err != nil {
			errs <- err
			return
		}
		codes <- code
	}()
	resp, err := fake.Client().Get(authURL)
	if err != nil {
		return fmt.Errorf("consent: %w", err)
	}
	resp.Body.Close()
	var code string
	select {
	case code = <-codes:
	case err := <-errs:
		return err
	}
	d.step("2. consent given; the callback brought a code and the right state")
	tok, err := dropboxsign.Exchange(ctx, conf, code, state)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "dropboxsign-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		return err
	}
	if err := store.Save(ctx, "demo", nil, tok); err != nil {
		return err
	}
	d.step("3. code exchanged; token stored in %s", store.Path("demo"))

	// 4. Concurrent API calls through NewClient; the first refresh meets an outage.
	client := dropboxsign.NewClient(ctx, conf, nil, dropboxsign.WithStore(store, "demo"))
	fake.InjectFault(dropboxsigntest.Fault{Status: http.StatusServiceUnavailable, Body: "upstream down", Count: 1})
	d.step("4. %d workers call the API for %s; the first refresh gets a 503", d.workers, d.duration)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failures  []error
		calls     atomic.Int64
	)
	start := time.Now()
	deadline := start.Add(d.duration)
	stopProgress := d.progress(start, &calls, fake)
	var wg sync.WaitGroup
	for range d.workers {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				err := apiCall(client, fake.AccountURL())
				mine = append(mine, time.Since(t0))
				calls.Add(1)
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	stopProgress()

	// 5. Summary and checks.
	st := fake.Stats()
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		return latencies[int(p*float64(len(latencies)-1))].Round(time.Microsecond)
	}
	tokenRequests := st.TokenRequests - 1 // the exchange
	lifetimes := int(d.duration / d.lifetime)
	naive := d.workers * (lifetimes + 1)
	d.step("")
	d.step("API calls         %d (%d failed)", len(latencies), len(failures))
	d.step("latency           p50 %s  p99 %s  max %s", pct(0.50), pct(0.99), pct(1))
	d.step("token requests    %d: %d refreshes, %d failed (the outage); a client per worker refreshing on its own would have made about %d", tokenRequests, st.Refreshes, st.Faults, naive)
	d.step("stale refresh tokens presented: %d", st.StaleRefreshTokens)

	// A refresh may still be under way (one the last calls started): the
	// store's lock waits for it, so that the token read is the newest.
	if unlock, err := store.Lock(ctx, "demo"); err == nil {
		defer unlock()
	}
	stored, loadErr := store.Load(ctx, "demo")
	var verifyErr error
	if loadErr == nil {
		_, verifyErr = dropboxsign.Refresh(ctx, conf, stored.RefreshToken)
	}
	checks := []struct {
		ok   bool
		what string
	}{
		{len(failures) == 0, "no API call failed, outage included"},
		{st.StaleRefreshTokens == 0, "no stale refresh token was ever presented"},
		{st.Faults == 1, "the outage was met once and retried with backoff, not hammered"},
		{st.Refreshes >= lifetimes && st.Refreshes <= 2*(lifetimes+1), "about one refresh per half token lifetime, shared by all workers"},
		{loadErr == nil && verifyErr == nil, "the stored refresh token is the newest and still works"},
	}
	failed := 0
	for _, c := range checks {
		mark := "ok  "
		if !c.ok {
			mark = "FAIL"
			failed++
		}
		d.step("%s %s", mark, c.what)
	}
	if failed > 0 {
		if len(failures) > 0 {
			d.step("first failed call: %v", failures[0])
		}
		return fmt.Errorf("%d of %d checks failed", failed, len(checks))
	}
	return nil
}

// progress reports calls and token requests as they happen: a redrawn line
// on a terminal, a plain line every few seconds otherwise.
func (d *demo) progress(start time.Time, calls *atomic.Int64, fake *dropboxsigntest.Server) (stop func()) {
	every := 3 * time.Second
	if d.live {
		every = 200 * time.Millisecond
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				if d.live {
					fmt.Fprint(d.out, "\r\033[K")
				}
				return
			case <-tick.C:
				st := fake.Stats()
				line := fmt.Sprintf("   %5.1fs  %8d calls  %3d token requests  %d refreshes", time.Since(start).Seconds(), calls.Load(), st.TokenRequests-1, st.Refreshes)
				if d.live {
					fmt.Fprint(d.out, "\r\033[K"+line)
				} else {
					fmt.Fprintln(d.out, line)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func apiCall(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errors.New("API answered " + resp.Status)
	}
	return nil
}

// isTerminal reports whether w is a terminal (a character device), without
// a dependency beyond the standard library.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
