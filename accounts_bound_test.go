package dropboxsign_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// Eight goroutines take in new accounts at once, each using its account
// once (a store read), with WithMaxAccounts(64): the count of accounts held,
// read after every new account, never passes 64. At most eight accounts
// have work under way at any moment (one load per goroutine), fewer than
// 64, so the bound's exception (every held account busy) cannot arise and
// the bound is 64 exactly, whatever the machine's speed.
func TestAccountsBoundHoldsUnderConcurrentChurn(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	store := dropboxsigntest.NewStore()
	const max, workers, each = 64, 8, 1000
	key := func(w, i int) string { return fmt.Sprintf("w%d-acct-%d", w, i) }
	tok := srv.IssueToken()
	for w := range workers {
		for i := range each {
			if err := store.Save(ctx, key(w, i), nil, tok); err != nil {
				t.Fatal(err)
			}
		}
	}
	loads := store.Stats().Loads
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.WithMaxAccounts(max))
	var peak atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				s := a.TokenSource(key(w, i))
				held, _ := a.HeldCount()
				for p := peak.Load(); int64(held) > p && !peak.CompareAndSwap(p, int64(held)); p = peak.Load() {
				}
				if _, err := s.TokenContext(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("peak: %d accounts held", peak.Load())
	if p := peak.Load(); p > max {
		t.Errorf("%d accounts held at the peak; want at most %d", p, max)
	}
	if counted, entries := a.HeldCount(); counted != entries || counted > max {
		t.Errorf("%d accounts counted as held, %d held; want the same, at most %d", counted, entries, max)
	}
	if n := store.Stats().Loads - loads; n != workers*each {
		t.Errorf("%d store reads for %d new accounts, want one each", n, workers*each)
	}
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("%d token requests; valid stored tokens need none", n)
	}
}

// gatedStore holds up the loads of the keys in gated until open is closed,
// telling loading of each one it holds up.
type gatedStore struct {
	*dropboxsigntest.Store
	gated   map[string]bool
	loading chan string
	open    chan struct{}
}

func (s *gatedStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	if s.gated[key] {
		s.loading <- key
		<-s.open
	}
	return s.Store.Load(ctx, key)
}

// With every held account busy (its first load held up by the store), a
// new account is held beyond the maximum rather than wait for one of them;
// once they are done, the next new account brings the count back to the
// maximum.
func TestAccountsGoBeyondTheBoundOnlyWhileEveryHeldAccountIsBusy(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	const max = 2
	store := &gatedStore{
		Store:   dropboxsigntest.NewStore(),
		gated:   map[string]bool{"busy-0": true, "busy-1": true},
		loading: make(chan string, max),
		open:    make(chan struct{}),
	}
	for _, k := range []string{"busy-0", "busy-1", "new-0", "new-1"} {
		if err := store.Save(ctx, k, nil, srv.IssueToken()); err != nil {
			t.Fatal(err)
		}
	}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.WithMaxAccounts(max))
	var wg sync.WaitGroup
	for i := range max {
		s := a.TokenSource(fmt.Sprint("busy-", i))
		wg.Go(func() {
			if _, err := s.TokenContext(ctx); err != nil {
				t.Error(err)
			}
		})
		<-store.loading // its load is under way: it cannot be let go
	}
	if _, err := a.TokenSource("new-0").TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	if counted, entries := a.HeldCount(); counted != max+1 || entries != max+1 {
		t.Errorf("%d accounts counted as held, %d held, with %d busy; want %d", counted, entries, max, max+1)
	}
	close(store.open)
	wg.Wait()
	if _, err := a.TokenSource("new-1").TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	if counted, entries := a.HeldCount(); counted != entries || counted > max {
		t.Errorf("%d accounts counted as held, %d held, none busy; want at most %d", counted, entries, max)
	}
}

// After Shutdown begins, every call of the Accounts fails with ErrShutdown
// and touches neither the store nor Dropbox Sign: its sources' and clients'
// calls, Login and Refused (a listing asked for before Shutdown and walked
// after it too). Stats still reports, and Shutdown may be called again.
func TestAccountsEveryCallAfterShutdownFails(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	store := dropboxsigntest.NewStore()
	for _, k := range []string{"held", "other", "refused"} {
		if err := store.Save(ctx, k, nil, srv.IssueToken()); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.MarkRefused(ctx, "refused", mustLoad(t, store, "refused")); err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer api.Close()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store)
	held := a.TokenSource("held")
	if _, err := held.TokenContext(ctx); err != nil {
		t.Fatal(err)
	}
	for r, err := range a.Refused(ctx) {
		if err != nil || r.Key != "refused" {
			t.Fatalf("before Shutdown: Refused yields %v, %v; want the refused account", r, err)
		}
	}
	listing := a.Refused(ctx) // asked for now, walked after Shutdown
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	before, requests := store.Stats(), srv.Stats().TokenRequests

	calls := map[string]func() error{
		"TokenSource(held).TokenContext": func() error { _, err := held.TokenContext(ctx); return err },
		"TokenSource(held).Token":        func() error { _, err := a.TokenSource("held").Token(); return err },
		"TokenSource(new).TokenContext":  func() error { _, err := a.TokenSource("other").TokenContext(ctx); return err },
		"Client(held).Get": func() error {
			resp, err := a.Client("held").Get(api.URL)
			if err == nil {
				resp.Body.Close()
			}
			return err
		},
		"Client(new).Get": func() error {
			resp, err := a.Client("never-seen").Get(api.URL)
			if err == nil {
				resp.Body.Close()
			}
			return err
		},
		"Login": func() error { _, err := a.Login(ctx, "held", "code", "state"); return err },
		"Refused": func() error {
			for r, err := range a.Refused(ctx) {
				if err == nil {
					return fmt.Errorf("yields %v, no error", r)
				}
				return err
			}
			return errors.New("yields nothing")
		},
		"Refused asked for before Shutdown": func() error {
			for r, err := range listing {
				if err == nil {
					return fmt.Errorf("yields %v, no error", r)
				}
				return err
			}
			return errors.New("yields nothing")
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, dropboxsign.ErrShutdown) {
			t.Errorf("%s after Shutdown: %v; want ErrShutdown", name, err)
		}
	}
	if after := store.Stats(); after != before {
		t.Errorf("store calls after Shutdown: %+v, then %+v; want none", before, after)
	}
	if n := srv.Stats().TokenRequests; n != requests {
		t.Errorf("%d token requests after Shutdown", n-requests)
	}
	if st := a.Stats(); st.Held < 1 {
		t.Errorf("Stats after Shutdown: %+v; want the held account still counted", st)
	}
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown again: %v; want nil (nothing under way)", err)
	}
}

func mustLoad(t *testing.T, store dropboxsign.Store, key string) *oauth2.Token {
	t.Helper()
	tok, err := store.Load(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
