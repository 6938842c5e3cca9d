package dropboxsigntest

import (
	"context"
	"errors"
	"iter"
	"sync"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// Store is a dropboxsign.Store (and Lister and Replacer) in memory, for tests: the
// sources and Accounts of one process share it as replicas share a real
// store, with compare-and-swap saves, refusal marks and a lock per key. It
// counts the calls made to it. Create it with [NewStore]; it is safe for
// concurrent use.
type Store struct {
	mu      sync.Mutex
	entries map[string]storeEntry
	locks   map[string]chan struct{}
	stats   StoreStats
}

type storeEntry struct {
	tok       *oauth2.Token // nil for a refusal mark
	refusedAt time.Time
}

// StoreStats counts the calls made to a [Store].
type StoreStats struct {
	Loads, Saves, Locks, Marks int
}

var (
	_ dropboxsign.Lister   = (*Store)(nil)
	_ dropboxsign.Replacer = (*Store)(nil)
)

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{entries: map[string]storeEntry{}, locks: map[string]chan struct{}{}}
}

// Stats returns the counts so far.
func (s *Store) Stats() StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func copyToken(t *oauth2.Token) *oauth2.Token {
	return &oauth2.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, RefreshToken: t.RefreshToken, Expiry: t.Expiry, ExpiresIn: t.ExpiresIn}
}

// Load returns a copy of the token stored under key (see dropboxsign.Store).
func (s *Store) Load(_ context.Context, key string) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Loads++
	e, ok := s.entries[key]
	switch {
	case !ok:
		return nil, dropboxsign.ErrNotFound
	case e.tok == nil:
		return nil, &dropboxsign.RefusedError{Key: key, Since: e.refusedAt}
	}
	return copyToken(e.tok), nil
}

// matches reports whether key holds prev (nil: nothing, or a refusal mark).
func (s *Store) matches(key string, prev *oauth2.Token) bool {
	e := s.entries[key]
	if prev == nil || e.tok == nil {
		return prev == nil && e.tok == nil
	}
	return e.tok.AccessToken == prev.AccessToken && e.tok.RefreshToken == prev.RefreshToken
}

// Save stores a copy of t under key if key still holds prev (see
// dropboxsign.Store).
func (s *Store) Save(_ context.Context, key string, prev, t *oauth2.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Saves++
	if t == nil {
		return errors.New("dropboxsigntest: Save of a nil token")
	}
	if !s.matches(key, prev) {
		return dropboxsign.ErrConflict
	}
	s.entries[key] = storeEntry{tok: copyToken(t)}
	return nil
}

// Replace stores t under key, replacing anything there (see
// dropboxsign.Replacer).
func (s *Store) Replace(_ context.Context, key string, t *oauth2.Token) error {
	if t == nil {
		return errors.New("dropboxsigntest: Store.Replace: nil token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Saves++
	s.entries[key] = storeEntry{tok: copyToken(t)}
	return nil
}

// MarkRefused replaces key's token with a refusal mark if it is still
// refused (see dropboxsign.Store).
func (s *Store) MarkRefused(_ context.Context, key string, refused *oauth2.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Marks++
	if refused == nil || !s.matches(key, refused) {
		return dropboxsign.ErrConflict
	}
	s.entries[key] = storeEntry{refusedAt: time.Now()}
	return nil
}

// Lock takes key's lock, waiting until it is free or ctx ends (see
// dropboxsign.Store). It lapses only when unlocked: the test's process is
// the only holder there is.
func (s *Store) Lock(ctx context.Context, key string) (func(), error) {
	s.mu.Lock()
	s.stats.Locks++
	ch, ok := s.locks[key]
	if !ok {
		ch = make(chan struct{}, 1)
		s.locks[key] = ch
	}
	s.mu.Unlock()
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() { once.Do(func() { <-ch }) }, nil
}

// Keys yields every key that holds a token or a refusal mark.
func (s *Store) Keys(context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for key := range s.snapshot() {
			if !yield(key, nil) {
				return
			}
		}
	}
}

// Refused yields a *dropboxsign.RefusedError for each key marked refused.
func (s *Store) Refused(context.Context) iter.Seq2[*dropboxsign.RefusedError, error] {
	return func(yield func(*dropboxsign.RefusedError, error) bool) {
		for key, e := range s.snapshot() {
			if e.tok == nil && !yield(&dropboxsign.RefusedError{Key: key, Since: e.refusedAt}, nil) {
				return
			}
		}
	}
}

func (s *Store) snapshot() map[string]storeEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]storeEntry, len(s.entries))
	for k, e := range s.entries {
		out[k] = e
	}
	return out
}
