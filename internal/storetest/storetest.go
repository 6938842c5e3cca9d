// Package storetest checks that a dropboxsign.Store keeps the contract its
// doc comment states. Every Store implementation in this repository runs it.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// Run runs the conformance tests against the stores newStore returns; each
// call must return a store that shares nothing with earlier ones, or at
// least uses keys that no earlier test used. opts give the suite what it
// cannot learn through the Store interface ([WithRaw], [WithPeer],
// [WithSealers]); a store's test gives those that are easy for it to give.
// A store that is a [dropboxsign.SealInspector] has its listing checked
// too.
//
// The Watch tests count the process's goroutines: run the suite in a test
// that is not parallel with others (no t.Parallel).
func Run(t *testing.T, newStore func(t *testing.T) dropboxsign.Store, opts ...Option) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	t.Run("LoadSaveCompareAndSwap", func(t *testing.T) { testCAS(t, newStore(t)) })
	t.Run("ConcurrentSavesOneWinner", func(t *testing.T) { testConcurrentSaves(t, newStore(t)) })
	t.Run("LockExcludes", func(t *testing.T) { testLock(t, newStore(t)) })
	t.Run("KeysAreIndependent", func(t *testing.T) { testKeys(t, newStore(t)) })
	t.Run("RefusalMark", func(t *testing.T) { testRefusal(t, newStore(t)) })
	t.Run("RefusalRacesSave", func(t *testing.T) { testRefusalRace(t, newStore(t)) })
	t.Run("Replace", func(t *testing.T) { testReplace(t, newStore(t)) })
	t.Run("Disconnect", func(t *testing.T) { testDisconnect(t, newStore(t), c.raw) })
	t.Run("DisconnectRacesSaves", func(t *testing.T) { testDisconnectRace(t, newStore(t)) })
	t.Run("Forget", func(t *testing.T) { testForget(t, newStore(t)) })
	t.Run("Lister", func(t *testing.T) {
		s := newStore(t)
		l, ok := s.(dropboxsign.Lister)
		if !ok {
			t.Skipf("%T is not a Lister", s)
		}
		testLister(t, l)
	})
	t.Run("Watch", func(t *testing.T) {
		s := newStore(t)
		if _, ok := s.(dropboxsign.Watcher); !ok {
			t.Skipf("%T is not a Watcher", s)
		}
		var peer dropboxsign.Store
		if c.peer != nil {
			peer = c.peer(t, s)
		}
		testWatch(t, s, peer)
	})
	t.Run("WatchEnds", func(t *testing.T) {
		s := newStore(t)
		w, ok := s.(dropboxsign.Watcher)
		if !ok {
			t.Skipf("%T is not a Watcher", s)
		}
		testWatchEnds(t, w)
	})
	runSeal(t, newStore, c)
}

// An Option gives [Run] what it cannot learn through the Store interface.
type Option func(*config)

type config struct {
	raw  func(s dropboxsign.Store, key string) []byte
	peer func(t *testing.T, s dropboxsign.Store) dropboxsign.Store
	// sealers opens t's backend under a Sealer: see WithSealers.
	sealers func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.Store
}

// WithRaw lets the suite look inside a store: raw returns the bytes that s
// keeps for key, as they are at rest (FileStore: the file; a database: the
// row, every column, as text), or nil when it has nothing for key. More
// than key's record (every file of the directory, say) is fine too. The
// suite checks that after a Disconnect no piece of the grant is left
// there: no part of the access or refresh token, no SHA-256 of them. In a
// store that seals tokens the check sees no token in the clear even before
// the Disconnect, and so proves little: run the suite on the store
// unsealed too. Without WithRaw the suite skips this check, and the
// store's own tests must make it.
func WithRaw(raw func(s dropboxsign.Store, key string) []byte) Option {
	return func(c *config) { c.raw = raw }
}

// WithPeer gives the suite a second handle on the backend of a store that
// newStore returned, opened as another process would open it (FileStore:
// NewFileStore on the same directory; Redis: a store of another client
// with the same prefix): the Watch test then checks that a watch on
// either handle reports the changes made through the other. Without it,
// the suite watches and writes through the one handle.
func WithPeer(peer func(t *testing.T, s dropboxsign.Store) dropboxsign.Store) Option {
	return func(c *config) { c.peer = peer }
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func token(n int) *oauth2.Token {
	return &oauth2.Token{
		AccessToken:  fmt.Sprintf("at-%d", n),
		TokenType:    "Bearer",
		RefreshToken: fmt.Sprintf("rt-%d", n),
		Expiry:       time.Unix(1900000000+int64(n), 0),
		ExpiresIn:    3600,
	}
}

func same(a, b *oauth2.Token) bool {
	return a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken && a.TokenType == b.TokenType &&
		a.Expiry.Equal(b.Expiry) && a.ExpiresIn == b.ExpiresIn
}

func testCAS(t *testing.T, s dropboxsign.Store) {
	ctx := ctxFor(t)
	if _, err := s.Load(ctx, "k"); !errors.Is(err, dropboxsign.ErrNotFound) {
		t.Fatalf("Load of nothing: %v, want ErrNotFound", err)
	}
	if err := s.Save(ctx, "k", token(0), token(1)); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Fatalf("Save with a prev over nothing: %v, want ErrConflict", err)
	}
	if err := s.Save(ctx, "k", nil, token(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "k", nil, token(2)); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Fatalf("Save with no prev over a token: %v, want ErrConflict", err)
	}
	half := token(1)
	half.RefreshToken = "rt-other"
	if err := s.Save(ctx, "k", half, token(2)); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Fatalf("Save with a prev differing in the refresh token: %v, want ErrConflict", err)
	}
	got, err := s.Load(ctx, "k")
	if err != nil || !same(got, token(1)) {
		t.Fatalf("Load = %+v, %v; want %+v", got, err, token(1))
	}
	if err := s.Save(ctx, "k", got, token(2)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, "k"); err != nil || !same(got, token(2)) {
		t.Fatalf("after the swap: %+v, %v", got, err)
	}
	// A replica marks the stored token before spending its refresh token,
	// in ExpiresIn, negative (see the package's spending.go): kept as is,
	// and compared, as every field but the two tokens is not.
	marked := token(2)
	marked.ExpiresIn = -(1900000000<<29 | 3600)
	if err := s.Save(ctx, "k", token(2), marked); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, "k"); err != nil || !same(got, marked) {
		t.Fatalf("a negative ExpiresIn: %+v, %v; want %+v", got, err, marked)
	}
	if err := s.Save(ctx, "k", token(2), token(3)); err != nil {
		t.Fatalf("Save over a token differing only in ExpiresIn: %v", err)
	}
}

// Many writers race from the same prev: exactly one wins, and the store
// holds the winner's token whole.
func testConcurrentSaves(t *testing.T, s dropboxsign.Store) {
	ctx := ctxFor(t)
	if err := s.Save(ctx, "race", nil, token(0)); err != nil {
		t.Fatal(err)
	}
	const writers = 16
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() { errs[i] = s.Save(ctx, "race", token(0), token(100+i)) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, dropboxsign.ErrConflict):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	if got, err := s.Load(ctx, "race"); err != nil || !same(got, token(100+winner)) {
		t.Errorf("stored %+v (%v), want the winner's %+v", got, err, token(100+winner))
	}
}

func testLock(t *testing.T, s dropboxsign.Store) {
	ctx := ctxFor(t)
	unlock, err := s.Lock(ctx, "l")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(short, "l"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held: %v, want to wait until the deadline", err)
	}
	other, err := s.Lock(ctx, "l2")
	if err != nil {
		t.Fatalf("Lock of another key: %v", err)
	}
	other()
	got := make(chan error, 1)
	go func() {
		u, err := s.Lock(ctx, "l")
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	unlock() // harmless
	if err := <-got; err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
}

func testKeys(t *testing.T, s dropboxsign.Store) {
	ctx := ctxFor(t)
	keys := []string{"", "user@example.com", "../x", "a:b", "ünï", "with space"}
	for i, k := range keys {
		if err := s.Save(ctx, k, nil, token(i)); err != nil {
			t.Fatalf("%q: %v", k, err)
		}
	}
	for i, k := range keys {
		if got, err := s.Load(ctx, k); err != nil || !same(got, token(i)) {
			t.Errorf("Load(%q) = %+v, %v", k, got, err)
		}
	}
}

// A refusal mark replaces exactly the refused token, reads as a
// *RefusedError, counts as "nothing" for Save's prev, and a new login (Save
// with prev nil) replaces it.
func testRefusal(t *testing.T, s dropboxsign.Store) {
	ctx := ctxFor(t)
	if err := s.MarkRefused(ctx, "r", token(1)); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Fatalf("MarkRefused over nothing: %v, want ErrConflict", err)
	}
	if _, err := s.Load(ctx, "r"); !errors.Is(err, dropboxsign.ErrNotFound) {
		t.Fatalf("after a refused mark over nothing: %v, want ErrNotFound", err)
	}
	if err := s.Save(ctx, "r", nil, token(1)); err != nil {
		t.Fatal(err)
	}
	half := token(1)
	half.RefreshToken = "rt-other"
	for _, wrong := range []*oauth2.Token{token(0), half} {
		if err := s.MarkRefused(ctx, "r", wrong); !errors.Is(err, dropboxsign.ErrConflict) {
			t.Fatalf("MarkRefused of a token not stored: %v, want ErrConflict", err)
		}
	}
	before := time.Now()
	if err := s.MarkRefused(ctx, "r", token(1)); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	_, err := s.Load(ctx, "r")
	var refusal *dropboxsign.RefusedError
	if !errors.As(err, &refusal) || refusal.Key != "r" {
		t.Fatalf("Load of a refused key: %v, want a *RefusedError for it", err)
	}
	if refusal.Since.Before(before.Add(-5*time.Second)) || refusal.Since.After(after.Add(5*time.Second)) {
		t.Errorf("Since = %v, want about %v", refusal.Since, before)
	}
	if dropboxsign.Classify(err) != dropboxsign.Reauthorize {
		t.Errorf("Classify = %v", dropboxsign.Classify(err))
	}
	if err := s.MarkRefused(ctx, "r", token(1)); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Fatalf("MarkRefused over a mark: %v, want ErrConflict", err)
	}
	if err := s.Save(ctx, "r", token(1), token(2)); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Fatalf("Save with the refused token as prev: %v, want ErrConflict", err)
	}
	if err := s.Save(ctx, "r", nil, token(3)); err != nil {
		t.Fatalf("a new login over the mark: %v", err)
	}
	if got, err := s.Load(ctx, "r"); err != nil || !same(got, token(3)) {
		t.Fatalf("after the new login: %+v, %v", got, err)
	}
}

// A refusal and a save racing from the same stored token: exactly one wins.
func testRefusalRace(t *testing.T, s dropboxsign.Store) {
	ctx := ctxFor(t)
	for round := range 20 {
		key := fmt.Sprintf("rr-%d", round)
		if err := s.Save(ctx, key, nil, token(0)); err != nil {
			t.Fatal(err)
		}
		var markErr, saveErr error
		var wg sync.WaitGroup
		wg.Go(func() { markErr = s.MarkRefused(ctx, key, token(0)) })
		wg.Go(func() { saveErr = s.Save(ctx, key, token(0), token(1)) })
		wg.Wait()
		got, loadErr := s.Load(ctx, key)
		var refusal *dropboxsign.RefusedError
		switch {
		case markErr == nil && errors.Is(saveErr, dropboxsign.ErrConflict):
			if !errors.As(loadErr, &refusal) {
				t.Fatalf("the mark won, but Load gives %v, %v", got, loadErr)
			}
		case saveErr == nil && errors.Is(markErr, dropboxsign.ErrConflict):
			if loadErr != nil || !same(got, token(1)) {
				t.Fatalf("the save won, but Load gives %v, %v", got, loadErr)
			}
		default:
			t.Fatalf("mark: %v, save: %v; want exactly one winner", markErr, saveErr)
		}
	}
}

// testLister: Keys lists every key that holds a token or a mark, Refused
// the refusal marks only, Disconnected the disconnection marks only (over a
// token, a refusal mark or nothing), each once.
func testLister(t *testing.T, l dropboxsign.Lister) {
	ctx := ctxFor(t)
	const (
		held         = "token"
		refused      = "refused"
		disconnected = "disconnected"
	)
	want := map[string]string{} // key → what it holds
	for i, k := range []string{"", "a", "b/c", "d:e", "ünï", "refused-1", "refused-2", "disc-token", "disc-refused"} {
		if err := l.Save(ctx, k, nil, token(i)); err != nil {
			t.Fatal(err)
		}
		want[k] = held
		if strings.HasPrefix(k, "refused") || k == "disc-refused" {
			if err := l.MarkRefused(ctx, k, token(i)); err != nil {
				t.Fatal(err)
			}
			want[k] = refused
		}
		if strings.HasPrefix(k, "disc-") {
			if err := l.Disconnect(ctx, k); err != nil {
				t.Fatal(err)
			}
			want[k] = disconnected
		}
	}
	if err := l.Disconnect(ctx, "disc-nothing"); err != nil {
		t.Fatal(err)
	}
	want["disc-nothing"] = disconnected
	got := map[string]string{}
	for k, err := range l.Keys(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := got[k]; dup {
			t.Errorf("Keys yielded %q twice", k)
		}
		got[k] = held
	}
	for r, err := range l.Refused(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if got[r.Key] != held || r.Since.IsZero() {
			t.Errorf("Refused yielded %+v: a key Keys did not yield, yielded twice or as disconnected, or without a time", r)
		}
		got[r.Key] = refused
	}
	for d, err := range l.Disconnected(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if d == nil {
			t.Fatal("Disconnected yielded nil with no error")
		}
		if got[d.Key] != held || d.Since.IsZero() {
			t.Errorf("Disconnected yielded %+v: a key Keys did not yield, yielded twice or as refused, or without a time", d)
		}
		got[d.Key] = disconnected
	}
	if !maps.Equal(got, want) {
		t.Errorf("listed %v, want %v (key → what it holds)", got, want)
	}
	n := 0
	for range l.Keys(ctx) {
		n++
		break // stopping early must be fine
	}
	if n != 1 {
		t.Errorf("an early break yielded %d keys", n)
	}
	n = 0
	for range l.Refused(ctx) {
		n++
		break
	}
	for range l.Disconnected(ctx) {
		n++
		break
	}
	if n != 2 {
		t.Errorf("early breaks from Refused and Disconnected yielded %d marks, want 1 each", n)
	}
}

// Counting wraps a Store and counts the round trips made through it.
type Counting struct {
	dropboxsign.Store
	loads, saves, locks, marks atomic.Int64
}

// Calls returns how many Load, Save, Lock and MarkRefused calls were made.
func (c *Counting) Calls() int64 { return c.Loads() + c.Saves() + c.Locks() + c.Marks() }

// Loads returns how many Load calls were made.
func (c *Counting) Loads() int64 { return c.loads.Load() }

// Saves returns how many Save calls were made.
func (c *Counting) Saves() int64 { return c.saves.Load() }

// Locks returns how many Lock calls were made.
func (c *Counting) Locks() int64 { return c.locks.Load() }

// Marks returns how many MarkRefused calls were made.
func (c *Counting) Marks() int64 { return c.marks.Load() }

// Watch watches the wrapped store if it is a Watcher (uncounted: a watch
// is one long call, not a round trip per change); otherwise it reports
// nothing until ctx ends. So an Accounts over a Counting store hears of
// changes as it would over the store itself.
func (c *Counting) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	if w, ok := c.Store.(dropboxsign.Watcher); ok {
		w.Watch(ctx, poll, report)
		return
	}
	<-ctx.Done()
}

// Load counts, then loads.
func (c *Counting) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	c.loads.Add(1)
	return c.Store.Load(ctx, key)
}

// Save counts, then saves.
func (c *Counting) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	c.saves.Add(1)
	return c.Store.Save(ctx, key, prev, t)
}

// Lock counts, then locks.
func (c *Counting) Lock(ctx context.Context, key string) (func(), error) {
	c.locks.Add(1)
	return c.Store.Lock(ctx, key)
}

// MarkRefused counts, then marks.
func (c *Counting) MarkRefused(ctx context.Context, key string, refused *oauth2.Token) error {
	c.marks.Add(1)
	return c.Store.MarkRefused(ctx, key, refused)
}

// testReplace: Replace writes over nothing, a token and a refusal mark, and
// what it wrote is what compare-and-swap compares with afterwards.
func testReplace(t *testing.T, s dropboxsign.Store) {
	ctx := ctxFor(t)
	if err := s.Replace(ctx, "p", token(1)); err != nil {
		t.Fatalf("Replace over nothing: %v", err)
	}
	if err := s.Replace(ctx, "p", token(2)); err != nil {
		t.Fatalf("Replace over a token: %v", err)
	}
	if got, err := s.Load(ctx, "p"); err != nil || !same(got, token(2)) {
		t.Fatalf("after Replace: %+v, %v", got, err)
	}
	if err := s.Save(ctx, "p", token(1), token(3)); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Fatalf("Save with the replaced token as prev: %v, want ErrConflict", err)
	}
	if err := s.MarkRefused(ctx, "p", token(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, "p", token(4)); err != nil {
		t.Fatalf("Replace over a refusal mark: %v", err)
	}
	if got, err := s.Load(ctx, "p"); err != nil || !same(got, token(4)) {
		t.Fatalf("after Replace over a mark: %+v, %v", got, err)
	}
	if err := s.Save(ctx, "p", token(4), token(5)); err != nil {
		t.Fatalf("Save after Replace: %v", err)
	}
	if err := s.Replace(ctx, "p", nil); err == nil {
		t.Error("Replace with a nil token: no error")
	}
}
