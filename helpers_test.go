package dropboxsign_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// clock is a hand-moved clock for token sources.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// runs counts the source's finished runs, so that tests can wait for a
// background refresh to be published instead of sleeping.
type runs chan struct{}

func newRuns() runs { return make(chan struct{}, 1000) }

func (r runs) option() dropboxsign.Option {
	return dropboxsign.WithAfterRun(func() { r <- struct{}{} })
}

func (r runs) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r:
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh finished within 10 s")
	}
}

func newServer(t *testing.T) *dropboxsigntest.Server {
	t.Helper()
	s := dropboxsigntest.NewServer()
	t.Cleanup(s.Close)
	return s
}

// testContext is a context that ends with the test, bounding every wait.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// expired returns a copy of tok that the client believes has expired.
func expired(tok *oauth2.Token) *oauth2.Token {
	c := *tok
	c.Expiry = time.Now().Add(-time.Minute)
	return &c
}

// countingTransport counts round trips and what their contexts carried.
type countingTransport struct {
	n           atomic.Int64
	hadDeadline atomic.Bool
	base        http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	if _, ok := r.Context().Deadline(); ok {
		c.hadDeadline.Store(true)
	}
	base := c.base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// kicks counts the background runs that calls start, synchronously.
type kicks struct{ n atomic.Int64 }

func (k *kicks) option() dropboxsign.Option {
	return dropboxsign.WithKicked(func() { k.n.Add(1) })
}

// spendMark reports whether t, given to a Store's Save, is a replica's mark
// that it is about to spend the stored refresh token (a negative ExpiresIn:
// see spending.go), not a new token. Stores in tests that fail "the save of
// a new token" let it through: without it, no refresh is made.
func spendMark(t *oauth2.Token) bool { return t != nil && t.ExpiresIn < 0 }

// keysOf collects a Lister's keys, sorted.
func keysOf(l dropboxsign.Lister) ([]string, error) {
	var keys []string
	for k, err := range l.Keys(context.Background()) {
		if err != nil {
			return keys, err
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}
