package dropboxsign_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// recorder is an Observer and a slog.Handler that keeps everything it is
// given, so that tests can assert each event and record, and scan them all
// for secrets.
type recorder struct {
	mu      sync.Mutex
	events  []dropboxsign.Event
	records []slog.Record
	started []string // "op account" of each RequestStarted
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) options() []dropboxsign.Option {
	return []dropboxsign.Option{dropboxsign.WithObserver(r), dropboxsign.WithLogger(slog.New(r))}
}

func (r *recorder) RequestStarted(ctx context.Context, op, account string) context.Context {
	r.mu.Lock()
	r.started = append(r.started, op+" "+account)
	r.mu.Unlock()
	return ctx
}

func (r *recorder) Observe(_ context.Context, e dropboxsign.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.records = append(r.records, rec.Clone())
	r.mu.Unlock()
	r.poke()
	return nil
}

// waitFor waits until n events of kind have arrived (they come after the
// fact, from the delivery goroutine) and returns all events of that kind.
func (r *recorder) waitFor(t *testing.T, kind dropboxsign.EventKind, n int) []dropboxsign.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		got := r.of(kind)
		if len(got) >= n {
			return got
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("%d %v events after 10 s, want %d; all: %+v", len(got), kind, n, r.all())
		}
	}
}

func (r *recorder) of(kind dropboxsign.EventKind) []dropboxsign.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []dropboxsign.Event
	for _, e := range r.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) all() []dropboxsign.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// record returns the log record of the event kind's n-th record, with its
// attributes as strings.
func (r *recorder) record(t *testing.T, kind dropboxsign.EventKind, n int) (slog.Record, map[string]string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		var found []slog.Record
		for _, rec := range r.records {
			if attrs(rec)["event"] == kind.String() {
				found = append(found, rec)
			}
		}
		r.mu.Unlock()
		if len(found) > n {
			return found[n], attrs(found[n])
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("no log record %d of %v", n, kind)
		}
	}
}

func attrs(rec slog.Record) map[string]string {
	m := map[string]string{}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

// noSecrets scans every event (its error's text, error name) and every log
// record (message, every attribute, nested groups included) for secrets.
func (r *recorder) noSecrets(t *testing.T, secrets []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var texts []string
	for _, e := range r.events {
		texts = append(texts, fmt.Sprintf("%v %v %s %s %s", e.Kind, e.Class, e.Account, e.Op, e.ErrorName))
		if e.Err != nil {
			texts = append(texts, e.Err.Error())
		}
	}
	var walk func(prefix string, a slog.Attr)
	walk = func(prefix string, a slog.Attr) {
		if a.Value.Kind() == slog.KindGroup {
			for _, g := range a.Value.Group() {
				walk(prefix+a.Key+".", g)
			}
			return
		}
		texts = append(texts, prefix+a.Key+"="+a.Value.String())
	}
	for _, rec := range r.records {
		texts = append(texts, rec.Message)
		rec.Attrs(func(a slog.Attr) bool { walk("", a); return true })
	}
	if len(texts) == 0 {
		t.Fatal("nothing was recorded")
	}
	for _, text := range texts {
		for _, s := range secrets {
			if len(s) >= 4 && strings.Contains(text, s) {
				t.Errorf("a secret shows in %q", text)
			}
		}
	}
}

// A refresh that succeeds: one token request event, and one Info line with
// its duration, status and rate limit.
func TestEventsOfARefresh(t *testing.T) {
	srv := newServer(t)
	rec := newRecorder()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()), rec.options()...)
	if _, err := ts.TokenContext(testContext(t)); err != nil {
		t.Fatal(err)
	}
	e := rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]
	if e.Op != "refresh" || e.Err != nil || e.Class != dropboxsign.NotAnError || e.Status != 200 ||
		e.RateLimit.Limit != 100 || e.RateLimit.Remaining < 0 || e.Expiry.IsZero() || e.Duration <= 0 {
		t.Errorf("event %+v", e)
	}
	r, a := rec.record(t, dropboxsign.EventTokenRequest, 0)
	if r.Level != slog.LevelInfo || r.Message != "dropboxsign: token refreshed" || a["status"] != "200" || a["rate_limit_limit"] != "100" || a["duration"] == "" {
		t.Errorf("record %v %q %v", r.Level, r.Message, a)
	}
	if len(rec.started) != 1 || rec.started[0] != "refresh " {
		t.Errorf("RequestStarted calls: %q", rec.started)
	}
	rec.noSecrets(t, srv.Secrets())
}

// A token request's event is dated when the request ended, not when it was
// emitted after the save: a span ended at its Time covers the request only.
func TestTokenRequestEventIsDatedAtTheRequestsEnd(t *testing.T) {
	srv := newServer(t)
	clk, rec := newClock(), newRecorder()
	slowSave := dropboxsign.WithOnRefresh(func(context.Context, *oauth2.Token) error {
		clk.Advance(time.Minute) // the save takes a minute
		return nil
	})
	ended := clk.Now() // the clock stands still during the request
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()), append(rec.options(), dropboxsign.WithClock(clk.Now), slowSave)...)
	if _, err := ts.TokenContext(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if e := rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]; !e.Time.Equal(ended) || e.Duration != 0 {
		t.Errorf("event at %v after %v, want %v (the request's end) after 0", e.Time, e.Duration, ended)
	}
}

// A 503 in a background refresh, then success: a Warn line with the class,
// status and backoff decision; the caller never saw the failure.
func TestEventsOfAFailedBackgroundRefresh(t *testing.T) {
	srv := newServer(t)
	clk, done := newClock(), newRuns()
	rec := newRecorder()
	tok := srv.IssueToken()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), tok, append(rec.options(), dropboxsign.WithClock(clk.Now), done.option())...)
	srv.InjectFault(dropboxsigntest.Fault{Status: 503, Body: "upstream down", Count: 1})
	clk.Set(tok.Expiry.Add(-4 * time.Minute)) // in the window
	if _, err := ts.TokenContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	done.wait(t)
	clk.Advance(2 * time.Second)
	ts.TokenContext(context.Background())
	done.wait(t)
	got := rec.waitFor(t, dropboxsign.EventTokenRequest, 2)
	if f := got[0]; f.Err == nil || f.Class != dropboxsign.Temporary || f.Status != 503 || f.Failures != 1 || f.RetryAt.IsZero() {
		t.Errorf("the failure: %+v", f)
	}
	if got[1].Err != nil {
		t.Errorf("the retry: %+v", got[1])
	}
	r, a := rec.record(t, dropboxsign.EventTokenRequest, 0)
	if r.Level != slog.LevelWarn || a["class"] != "temporary" || a["status"] != "503" || a["retry_in"] == "" || a["failures"] != "1" {
		t.Errorf("record %v %q %v", r.Level, r.Message, a)
	}
	rec.noSecrets(t, srv.Secrets())
}

// A 429 with a reset: the event carries the rate limit and the error name,
// and the backoff waits for the reset.
func TestEventsOfARateLimit(t *testing.T) {
	srv := newServer(t)
	rec := newRecorder()
	reset := time.Now().Add(90 * time.Second).Truncate(time.Second)
	srv.InjectFault(dropboxsigntest.RateLimited(reset))
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()), rec.options()...)
	ts.TokenContext(testContext(t))
	e := rec.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]
	if e.Class != dropboxsign.RateLimited || e.ErrorName != "exceeded_rate" || e.Status != 429 ||
		e.RateLimit.Remaining != 0 || !e.RateLimit.Reset.Equal(reset) || e.RetryAt.Before(reset) {
		t.Errorf("event %+v", e)
	}
	_, a := rec.record(t, dropboxsign.EventTokenRequest, 0)
	if a["error_name"] != "exceeded_rate" || a["class"] != "rate limited" || a["rate_limit_remaining"] != "0" {
		t.Errorf("record %v", a)
	}
	rec.noSecrets(t, srv.Secrets())
}

// invalid_grant with a store: the refresh's failure, then one refusal
// event per replica that learns of it, however many calls follow; a login
// clears it. Every event names the account.
func TestEventsOfARefusalAndALogin(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	tok := srv.IssueToken()
	fs.Save(ctx, "carol", nil, expired(tok))
	srv.Revoke(tok)
	rec1, rec2 := newRecorder(), newRecorder()
	a1 := dropboxsign.NewAccounts(ctx, srv.Config(), fs, rec1.options()...)
	clk := newClock()
	a2 := dropboxsign.NewAccounts(ctx, srv.Config(), fs, append(rec2.options(), dropboxsign.WithClock(clk.Now))...)
	for range 3 {
		a1.TokenSource("carol").TokenContext(ctx)
	}
	for range 3 {
		a2.TokenSource("carol").TokenContext(ctx)
		clk.Advance(2 * time.Second) // past each recheck: it reads the mark again
	}
	if e := rec1.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]; e.Class != dropboxsign.Reauthorize || e.ErrorName != "invalid_grant" || e.Account != "carol" {
		t.Errorf("the refused refresh: %+v", e)
	}
	for i, rec := range []*recorder{rec1, rec2} {
		refused := rec.waitFor(t, dropboxsign.EventRefused, 1)
		var re *dropboxsign.RefusedError
		if len(refused) != 1 || refused[0].Account != "carol" || !errors.As(refused[0].Err, &re) || refused[0].Class != dropboxsign.Reauthorize {
			t.Errorf("replica %d: refusal events %+v; want exactly one for carol", i+1, refused)
		}
		r, a := rec.record(t, dropboxsign.EventRefused, 0)
		if r.Level != slog.LevelWarn || a["account"] != "carol" {
			t.Errorf("replica %d: record %v %v", i+1, r.Level, a)
		}
	}
	if n := len(rec2.of(dropboxsign.EventTokenRequest)); n != 0 {
		t.Errorf("the second replica made %d token requests", n)
	}

	code := authorize(t, srv, srv.Config(), "s")
	if _, err := a2.Login(ctx, "carol", code, "s"); err != nil {
		t.Fatal(err)
	}
	if e := rec2.waitFor(t, dropboxsign.EventLogin, 1)[0]; e.Account != "carol" || e.Expiry.IsZero() {
		t.Errorf("login event %+v", e)
	}
	if e := rec2.waitFor(t, dropboxsign.EventTokenRequest, 1)[0]; e.Op != "exchange" || e.Err != nil {
		t.Errorf("exchange event %+v", e)
	}
	rec1.noSecrets(t, srv.Secrets())
	rec2.noSecrets(t, append(srv.Secrets(), code))
}

// A save that fails: an Error line, and an Info line once a retry succeeds;
// a store call that fails; a token adopted from another replica.
func TestEventsOfSavesStoresAndAdoptions(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	fs.Save(ctx, "dave", nil, expired(srv.IssueToken()))
	flaky := &failingSaves{Store: fs}
	flaky.failing.Store(true)
	clk, done := newClock(), newRuns()
	rec := newRecorder()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), flaky, append(rec.options(), dropboxsign.WithClock(clk.Now), done.option())...)
	if _, err := a.TokenSource("dave").TokenContext(ctx); err == nil {
		t.Fatal("no SaveError")
	}
	if e := rec.waitFor(t, dropboxsign.EventSaveFailed, 1)[0]; e.Account != "dave" || e.Failures != 1 || e.RetryAt.IsZero() {
		t.Errorf("save failed: %+v", e)
	}
	if r, _ := rec.record(t, dropboxsign.EventSaveFailed, 0); r.Level != slog.LevelError {
		t.Errorf("save failed at %v", r.Level)
	}
	flaky.failing.Store(false)
	clk.Advance(2 * time.Second)
	a.TokenSource("dave").TokenContext(ctx) // the retry runs in the background
	done.wait(t)
	if r, _ := rec.record(t, dropboxsign.EventSaved, 0); r.Level != slog.LevelInfo {
		t.Errorf("saved at %v", r.Level)
	}

	// Another replica refreshed erin and stored the token: adopted, at Debug.
	tok := expired(srv.IssueToken())
	fs.Save(ctx, "erin", nil, tok)
	src := a.TokenSource("erin")
	newer, _ := dropboxsign.Refresh(ctx, srv.Config(), tok.RefreshToken)
	fs.Save(ctx, "erin", tok, newer)
	src.TokenContext(ctx)
	if e := rec.waitFor(t, dropboxsign.EventAdopted, 1)[0]; e.Account != "erin" || e.Expiry.IsZero() {
		t.Errorf("adopted: %+v", e)
	}
	if r, _ := rec.record(t, dropboxsign.EventAdopted, 0); r.Level != slog.LevelDebug {
		t.Errorf("adopted at %v", r.Level)
	}

	// A lock that cannot be had: a store failure, at Warn.
	fs.Save(ctx, "frank", nil, expired(srv.IssueToken()))
	unlock, _ := fs.Lock(ctx, "frank")
	defer unlock()
	b := dropboxsign.NewAccounts(ctx, srv.Config(), fs, append(rec.options(), dropboxsign.WithTimeout(50*time.Millisecond))...)
	b.TokenSource("frank").TokenContext(ctx)
	if e := rec.waitFor(t, dropboxsign.EventStoreFailed, 1)[0]; e.Op != "lock" || e.Account != "frank" || e.Class != dropboxsign.Temporary {
		t.Errorf("store failed: %+v", e)
	}
	rec.noSecrets(t, srv.Secrets())
}

// The API refusing tokens: a Warn line for the first, an Error line when
// fresh tokens keep being refused.
func TestEventsOfInvalidations(t *testing.T) {
	srv := newServer(t)
	rec := newRecorder()
	client := dropboxsign.NewClient(testContext(t), srv.Config(), srv.IssueToken(), rec.options()...)
	srv.InjectAPIFault(dropboxsigntest.EnvelopeError(401, "unauthorized", "Unauthorized api key."))
	if status, _ := getStatus(client, srv.AccountURL()); status != 401 {
		t.Fatal(status)
	}
	got := rec.waitFor(t, dropboxsign.EventInvalidated, 2)
	if got[0].Err != nil || got[1].Class != dropboxsign.Misconfigured || got[1].RetryAt.IsZero() {
		t.Errorf("invalidations %+v", got)
	}
	if r, _ := rec.record(t, dropboxsign.EventInvalidated, 1); r.Level != slog.LevelError {
		t.Errorf("the storm at %v", r.Level)
	}
	rec.noSecrets(t, srv.Secrets())
}

// blockingObserver holds every Observe until released, and panics on the
// first.
type blockingObserver struct {
	release chan struct{}
	mu      sync.Mutex
	seen    int
}

func (b *blockingObserver) RequestStarted(ctx context.Context, _, _ string) context.Context {
	panic("observer bug")
}

func (b *blockingObserver) Observe(context.Context, dropboxsign.Event) {
	b.mu.Lock()
	b.seen++
	first := b.seen == 1
	b.mu.Unlock()
	if first {
		panic("observer bug")
	}
	<-b.release
}

// An observer that blocks, or panics, never stalls nor breaks a refresh.
func TestASlowOrPanickingObserverDoesNotStallRefreshes(t *testing.T) {
	srv := newServer(t)
	clk := newClock()
	obs := &blockingObserver{release: make(chan struct{})}
	defer close(obs.release)
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), expired(srv.IssueToken()), dropboxsign.WithObserver(obs), dropboxsign.WithClock(clk.Now))
	for i := range 3 {
		tok, err := ts.TokenContext(testContext(t))
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		clk.Set(tok.Expiry) // the next call refreshes again
	}
	if n := srv.Stats().Refreshes; n != 3 {
		t.Errorf("%d refreshes, want 3", n)
	}
}

// The hot path costs the same with a logger and an observer installed: no
// event is built for a valid token.
func TestObserversCostNothingOnTheHotPath(t *testing.T) {
	srv := newServer(t)
	rec := newRecorder()
	ts := dropboxsign.NewTokenSource(testContext(t), srv.Config(), srv.IssueToken(), rec.options()...)
	ctx := context.Background()
	if allocs := testing.AllocsPerRun(1000, func() { ts.TokenContext(ctx) }); allocs != 0 {
		t.Errorf("%v allocations per call", allocs)
	}
	if len(rec.all()) != 0 {
		t.Errorf("events for valid tokens: %+v", rec.all())
	}
}
