package dropboxsigntest

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// Store is a dropboxsign.Store (and Lister, Watcher and SealInspector, its
// tokens all plain) in memory, for tests: the sources and Accounts of one
// process share it as replicas share a real store, with compare-and-swap
// saves, refusal and disconnection marks, a lock per key, and changes
// pushed to its watchers at once. It counts the calls made to it. Create
// it with [NewStore]; it is safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	entries  map[string]storeEntry
	locks    map[string]chan struct{}
	stats    StoreStats
	watchers map[*storeWatcher]struct{}
	muted    bool     // SetPush(false): changes reach watchers only at their polls
	changes  []string // the log of changes: the newest maxChanges
	dropped  int      // changes dropped from the log's start
}

type storeEntry struct {
	tok          *oauth2.Token // nil for a mark
	refusedAt    time.Time
	disconnected bool // a disconnection mark, recorded at refusedAt
}

// StoreStats counts the calls made to a [Store].
type StoreStats struct {
	Loads, Saves, Locks, Marks, Disconnects int
}

var (
	_ dropboxsign.Lister        = (*Store)(nil)
	_ dropboxsign.Watcher       = (*Store)(nil)
	_ dropboxsign.SealInspector = (*Store)(nil)
)

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{entries: map[string]storeEntry{}, locks: map[string]chan struct{}{}, watchers: map[*storeWatcher]struct{}{}}
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
	case e.disconnected:
		return nil, &dropboxsign.DisconnectedError{Key: key, Since: e.refusedAt}
	case e.tok == nil:
		return nil, &dropboxsign.RefusedError{Key: key, Since: e.refusedAt}
	}
	return copyToken(e.tok), nil
}

// matches reports whether key holds prev (nil: nothing, or a refusal
// mark). A disconnection mark matches nothing.
func (s *Store) matches(key string, prev *oauth2.Token) bool {
	e := s.entries[key]
	if e.disconnected {
		return false
	}
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

// Replace stores t under key, replacing anything there, and tells the
// watchers (see dropboxsign.Store).
func (s *Store) Replace(_ context.Context, key string, t *oauth2.Token) error {
	if t == nil {
		return errors.New("dropboxsigntest: Store.Replace: nil token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Saves++
	s.entries[key] = storeEntry{tok: copyToken(t)}
	s.changed(key)
	return nil
}

// Disconnect replaces whatever key holds with a disconnection mark, and
// tells the watchers (see dropboxsign.Store).
func (s *Store) Disconnect(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Disconnects++
	if e, ok := s.entries[key]; !ok || !e.disconnected {
		s.entries[key] = storeEntry{refusedAt: time.Now(), disconnected: true}
	}
	s.changed(key)
	return nil
}

// Forget erases key's disconnection mark if it was recorded before before
// (see dropboxsign.Store).
func (s *Store) Forget(_ context.Context, key string, before time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	switch {
	case !ok:
		return nil
	case !e.disconnected || !e.refusedAt.Before(before):
		return dropboxsign.ErrConflict
	}
	delete(s.entries, key)
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

// Keys yields every key that holds a token, a refusal mark or a
// disconnection mark.
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
			if e.tok == nil && !e.disconnected && !yield(&dropboxsign.RefusedError{Key: key, Since: e.refusedAt}, nil) {
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

// InspectSeals reports the tokens of up to limit keys that sort after
// after, in key order (see dropboxsign.SealInspector). The Store keeps
// tokens as they are, sealed by no Sealer: every token is Plain and
// Current, so a dropboxsign.Census counts them all as plain and a
// dropboxsign.Reseal writes none. Marks are left out.
func (s *Store) InspectSeals(_ context.Context, after string, limit int) ([]dropboxsign.StoredSeal, error) {
	if limit < 1 {
		return nil, fmt.Errorf("dropboxsigntest: InspectSeals: limit %d, want at least 1", limit)
	}
	var keys []string
	for key, e := range s.snapshot() {
		if e.tok != nil && key > after {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	out := make([]dropboxsign.StoredSeal, 0, min(limit, len(keys)))
	for _, key := range keys[:min(limit, len(keys))] {
		out = append(out, dropboxsign.StoredSeal{Key: key, Seal: (*dropboxsign.Sealer)(nil).InspectPlain()})
	}
	return out, nil
}

// Disconnected yields a *dropboxsign.DisconnectedError for each key that
// holds a disconnection mark.
func (s *Store) Disconnected(context.Context) iter.Seq2[*dropboxsign.DisconnectedError, error] {
	return func(yield func(*dropboxsign.DisconnectedError, error) bool) {
		for key, e := range s.snapshot() {
			if e.disconnected && !yield(&dropboxsign.DisconnectedError{Key: key, Since: e.refusedAt}, nil) {
				return
			}
		}
	}
}

// maxChanges is how many changes the log keeps (up to twice as many
// between trims).
const maxChanges = 10000

// storeWatcher is one Watch call's queue of changes.
type storeWatcher struct {
	wake chan struct{} // one pending wake-up at most
	mu   sync.Mutex
	keys []string
}

// changed tells the watchers that key changed: at once, unless SetPush
// muted the push, in which case they learn it at their next poll. s.mu is
// held.
func (s *Store) changed(key string) {
	s.changes = append(s.changes, key)
	if len(s.changes) > 2*maxChanges {
		n := len(s.changes) - maxChanges
		s.changes = append([]string(nil), s.changes[n:]...)
		s.dropped += n
	}
	if s.muted {
		return
	}
	for w := range s.watchers {
		w.push(key)
	}
}

func (w *storeWatcher) push(key string) {
	w.mu.Lock()
	w.keys = append(w.keys, key)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// SetPush turns the push of changes to watchers off (false) and on again,
// as a test cuts a real store's push channel: while it is off, watchers
// learn of changes only at their polls.
func (s *Store) SetPush(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.muted = !on
}

// Watch reports the keys that Disconnect and Replace change, until ctx
// ends (see dropboxsign.Watcher): at once, or, with the push off (see
// SetPush), at the next poll; and first those its log holds from before
// the call.
func (s *Store) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	w := &storeWatcher{wake: make(chan struct{}, 1)}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	// The log's changes from before the call first: the caller may have
	// read the store before it called (see dropboxsign.Watcher).
	before := append([]string(nil), s.changes...)
	seen := s.dropped + len(s.changes) // in changes ever logged
	s.mu.Unlock()
	for _, k := range before {
		report(dropboxsign.Change{Key: k})
	}
	if poll <= 0 {
		poll = dropboxsign.DefaultWatchPoll
	}
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
			w.mu.Lock()
			keys := w.keys
			w.keys = nil
			w.mu.Unlock()
			for _, k := range keys {
				report(dropboxsign.Change{Key: k})
			}
		case <-t.C:
			// The log: what a muted push did not bring.
			s.mu.Lock()
			lost := seen < s.dropped
			var missed []string
			if !lost {
				missed = append(missed, s.changes[seen-s.dropped:]...)
			}
			seen = s.dropped + len(s.changes)
			s.mu.Unlock()
			if lost {
				report(dropboxsign.Change{All: true}) // the log dropped some unread
			}
			for _, k := range missed {
				report(dropboxsign.Change{Key: k})
			}
		}
	}
}
