// Package storetest checks that a dropboxsign.Store keeps the contract its
// doc comment states. Every Store implementation in this repository runs it.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// Run runs the conformance tests against the stores newStore returns; each
// call must return a store that shares nothing with earlier ones, or at
// least uses keys that no earlier test used.
func Run(t *testing.T, newStore func(t *testing.T) dropboxsign.Store) {
	t.Run("LoadSaveCompareAndSwap", func(t *testing.T) { testCAS(t, newStore(t)) })
	t.Run("ConcurrentSavesOneWinner", func(t *testing.T) { testConcurrentSaves(t, newStore(t)) })
	t.Run("LockExcludes", func(t *testing.T) { testLock(t, newStore(t)) })
	t.Run("KeysAreIndependent", func(t *testing.T) { testKeys(t, newStore(t)) })
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

// Counting wraps a Store and counts the round trips made through it.
type Counting struct {
	dropboxsign.Store
	n atomic.Int64
}

// Calls returns how many Load, Save and Lock calls were made.
func (c *Counting) Calls() int64 { return c.n.Load() }

// Load counts, then loads.
func (c *Counting) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	c.n.Add(1)
	return c.Store.Load(ctx, key)
}

// Save counts, then saves.
func (c *Counting) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	c.n.Add(1)
	return c.Store.Save(ctx, key, prev, t)
}

// Lock counts, then locks.
func (c *Counting) Lock(ctx context.Context, key string) (func(), error) {
	c.n.Add(1)
	return c.Store.Lock(ctx, key)
}
