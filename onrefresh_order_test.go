package dropboxsign_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// waitingInWriteLogin reports whether some goroutine is blocked on the login
// lock inside writeLogin (a run retrying a login's failed save).
func waitingInWriteLogin() bool {
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "sync.(*Mutex).Lock") && strings.Contains(g, "writeLogin") {
			return true
		}
	}
	return false
}

// Login 1's save fails; its retry (the owed loop's run) waits for the login
// lock while login 2 installs. The retry, overtaken, then does nothing: the
// WithOnRefresh function never gets login 1's token after login 2's (a
// mirror kept by it must end with the latest grant).
func TestAnOvertakenLoginRetryCallsNothing(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	store := &hookedStore{Store: mem}
	conf := srv.Config()
	var failSaves atomic.Bool
	store.set(func(op string, prev, tok *oauth2.Token) error {
		if (op == "save" || op == "replace") && failSaves.Load() {
			return errors.New("store down")
		}
		return nil
	})
	var mu sync.Mutex
	var seen []string
	var first1 atomic.Pointer[string]
	a := dropboxsign.NewAccounts(ctx, conf, store, dropboxsign.WithOnRefresh(func(ctx context.Context, tok *oauth2.Token) error {
		if p := first1.Load(); p != nil && tok.AccessToken != *p {
			// login 2's call, under the login lock: let the retry of
			// login 1's save queue up behind it.
			for !waitingInWriteLogin() {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		mu.Lock()
		seen = append(seen, tok.AccessToken)
		mu.Unlock()
		return nil
	}))
	failSaves.Store(true)
	tok1, err := a.Login(ctx, "erin", authorize(t, srv, conf, "s1"), "s1")
	if err == nil {
		t.Fatal("want login 1's save to fail")
	}
	first1.Store(&tok1.AccessToken)
	failSaves.Store(false)
	tok2, err := a.Login(ctx, "erin", authorize(t, srv, conf, "s2"), "s2")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	label := func(at string) string {
		switch at {
		case tok1.AccessToken:
			return "login1"
		case tok2.AccessToken:
			return "login2"
		}
		return "other"
	}
	var order []string
	for _, at := range seen {
		order = append(order, label(at))
	}
	t.Logf("WithOnRefresh saw: %v", order)
	if len(seen) > 0 && seen[len(seen)-1] != tok2.AccessToken {
		t.Errorf("WithOnRefresh's last token is %s's, not the current login's (order %v)", order[len(order)-1], order)
	}
	if cur, _ := mem.Load(ctx, "erin"); cur == nil || cur.AccessToken != tok2.AccessToken {
		t.Errorf("store does not hold login 2's token")
	}
}

// WithOnRefresh is called one call at a time per account: a login's call
// and a run's call for the grant it replaces never overlap, and the run's,
// overtaken, never comes after the login's.
func TestWithOnRefreshIsCalledOneAtATimeAcrossLoginsAndRuns(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	conf := srv.Config()
	old := srv.IssueToken()
	if err := mem.Save(ctx, "erin", nil, expired(old)); err != nil {
		t.Fatal(err)
	}
	var inflight, overlap atomic.Int32
	firstIn, second := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	a := dropboxsign.NewAccounts(ctx, conf, mem, dropboxsign.WithOnRefresh(func(ctx context.Context, tok *oauth2.Token) error {
		if inflight.Add(1) > 1 {
			overlap.Add(1)
		}
		defer inflight.Add(-1)
		switch calls.Add(1) {
		case 1: // the run's, for the old grant's new token
			close(firstIn)
			select {
			case <-second:
			case <-time.After(3 * time.Second):
			}
		case 2:
			close(second)
		}
		return nil
	}))
	done := make(chan error, 1)
	go func() { _, err := a.TokenSource("erin").TokenContext(ctx); done <- err }()
	<-firstIn
	if _, err := a.Login(ctx, "erin", authorize(t, srv, conf, "s1"), "s1"); err != nil {
		t.Fatal(err)
	}
	<-done
	if overlap.Load() > 0 {
		t.Errorf("WithOnRefresh ran twice at once for one account (a login's and a refresh's)")
	}
}
