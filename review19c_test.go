package dropboxsign_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// Review of issue 19's late changes (reread, Watch replays).

// failingLoads is the in-memory store with Load failing while down is set
// (its Watch, promoted, still reports).
type failingLoads struct {
	*dropboxsigntest.Store
	down   atomic.Bool
	failed atomic.Int64
}

var errReview19cDown = errors.New("review19c: store down")

func (f *failingLoads) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	if f.down.Load() {
		f.failed.Add(1)
		return nil, errReview19cDown
	}
	return f.Store.Load(ctx, key)
}

// The store's news that finds the store down must not cut the token
// endpoint's rate-limit backoff short: the failed re-read (reread) may
// delay the next re-read, but not replace the rate limit's retry time with
// the store failure's short one, which lets a token request through long
// before the limit's reset.
func TestReview19cAFailedRereadBreaksNoRateLimit(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	store := &failingLoads{Store: mem}
	clk := newClock()
	b := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.WithClock(clk.Now), dropboxsign.WithWatchPoll(time.Hour))
	tok := srv.IssueToken()
	if err := mem.Save(ctx, "pia", nil, tok); err != nil {
		t.Fatal(err)
	}
	src := b.TokenSource("pia")
	if _, err := src.TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	// Into the refresh window; the refresh meets a rate limit whose reset
	// is about an hour ahead of the source's clock.
	clk.Advance(time.Until(tok.Expiry) - 2*time.Minute)
	srv.InjectFault(dropboxsigntest.RateLimited(clk.Now().Add(time.Hour)))
	if _, err := src.TokenContext(ctx); err != nil {
		t.Fatalf("in the window: %v", err)
	}
	until(t, ctx, "the rate-limited refresh", func() bool { return srv.Stats().Faults == 1 })
	// The store goes down, and reports news of the account: the re-read fails.
	store.down.Store(true)
	loads := mem.Stats().Loads
	if err := mem.Replace(ctx, "pia", tok); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the re-read meets the store down", func() bool {
		src.TokenContext(ctx)
		return store.failed.Load() > 0
	})
	store.down.Store(false)
	before := srv.Stats().TokenRequests
	// Well past any store-failure backoff of the first few failures, well
	// before the rate limit's reset.
	clk.Advance(30 * time.Second)
	for range 5 {
		got, err := src.TokenContext(ctx)
		if err != nil || got.AccessToken != tok.AccessToken {
			t.Logf("after the store came back: %v, %v; want the token still", got, err)
		}
	}
	if n := srv.Stats().TokenRequests - before; n != 0 {
		t.Fatalf("%d token requests during the rate limit's backoff (a store failure met by a re-read replaced its retry time)", n)
	}
	if mem.Stats().Loads == loads {
		t.Fatal("no read of the store after it came back")
	}
}

// The store's news during a rate limit's backoff, when the store holds a
// newer token that is due but still serves (another replica's, say): the
// re-read must not leave the account with no token for the rest of the
// backoff. Both its own token and the stored one serve callers for a
// minute or more; reread drops its own and does not take the stored one
// (holdUsable does, in refreshShared), so every call fails until the
// limit's reset.
func TestReview19cARereadKeepsAUsableTokenDuringABackoff(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	clk := newClock()
	b := dropboxsign.NewAccounts(ctx, srv.Config(), mem, dropboxsign.WithClock(clk.Now), dropboxsign.WithWatchPoll(time.Hour))
	tok := srv.IssueToken()
	if err := mem.Save(ctx, "pia", nil, tok); err != nil {
		t.Fatal(err)
	}
	src := b.TokenSource("pia")
	if _, err := src.TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Until(tok.Expiry) - 2*time.Minute) // 2 min of life left, in the 5 min window
	srv.InjectFault(dropboxsigntest.RateLimited(clk.Now().Add(time.Hour)))
	if _, err := src.TokenContext(ctx); err != nil {
		t.Fatalf("in the window: %v", err)
	}
	until(t, ctx, "the rate-limited refresh", func() bool { return srv.Stats().Faults == 1 })
	// A newer token, due but good for 3 min, written to the store: news.
	newer := srv.IssueToken()
	newer.Expiry = tok.Expiry.Add(time.Minute)
	if err := mem.Replace(ctx, "pia", newer); err != nil {
		t.Fatal(err)
	}
	before := srv.Stats().TokenRequests
	var got *oauth2.Token
	var err error
	until(t, ctx, "the news heard and the store re-read", func() bool {
		got, err = src.TokenContext(ctx)
		return err != nil || got.AccessToken != tok.AccessToken
	})
	if err != nil {
		t.Fatalf("after the re-read: %v; want a token (the stored one serves for 3 min, ours for 2)", err)
	}
	if got.AccessToken != newer.AccessToken {
		t.Fatalf("after the re-read: %q; want the stored token", got.AccessToken)
	}
	if n := srv.Stats().TokenRequests - before; n != 0 {
		t.Fatalf("%d token requests during the rate limit's backoff", n)
	}
}
