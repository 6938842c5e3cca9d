package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// clockSkew is how far a mark's time may be from the test's clock. A mark
// records the store's clock (a database server's now(), Redis's TIME),
// which may be another machine's; NTP keeps such clocks within far less
// of each other, so a time off by more is a wrong time (a zero time, a
// time in the wrong unit or zone), not skew.
const clockSkew = 5 * time.Minute

// secretToken returns a token whose access and refresh tokens are random,
// so that a piece of either found in a store can come from nowhere else.
func secretToken() *oauth2.Token {
	return &oauth2.Token{
		AccessToken:  "at-" + rand.Text() + rand.Text(),
		TokenType:    "Bearer",
		RefreshToken: "rt-" + rand.Text() + rand.Text(),
		Expiry:       time.Now().Add(time.Hour).Truncate(time.Second),
		ExpiresIn:    3600,
	}
}

// loadMark loads key, which must hold a disconnection mark, and returns its
// time, which must be within clockSkew of [from, time.Now()].
func loadMark(t *testing.T, s dropboxsign.Store, key string, from time.Time) time.Time {
	t.Helper()
	got, err := s.Load(ctxFor(t), key)
	var d *dropboxsign.DisconnectedError
	if !errors.As(err, &d) {
		t.Fatalf("Load(%q) of a disconnected key = %v, %v; want a *DisconnectedError", key, got, err)
	}
	if got != nil {
		t.Errorf("Load(%q) returned a token with its *DisconnectedError", key)
	}
	if !errors.Is(err, dropboxsign.ErrDisconnected) {
		t.Errorf("Load(%q): errors.Is(%v, ErrDisconnected) is false", key, err)
	}
	var r *dropboxsign.RefusedError
	if errors.As(err, &r) {
		t.Errorf("Load(%q): a disconnection reads as a refusal: %v", key, err)
	}
	if d.Key != key {
		t.Errorf("Load(%q): DisconnectedError.Key = %q", key, d.Key)
	}
	if now := time.Now(); d.Since.Before(from.Add(-clockSkew)) || d.Since.After(now.Add(clockSkew)) {
		t.Errorf("Load(%q): DisconnectedError.Since = %v, want between %v and %v, give or take %v of the store's clock",
			key, d.Since, from, now, clockSkew)
	}
	return d.Since
}

// storeTimeAfter returns a time of the store's clock after since: that of
// a disconnection mark it makes under a key of its own, again (a token
// replacing the mark in between) until the store's clock has moved past
// since, at the store's resolution. It tells the tests when "later" is
// without comparing the test's clock with the store's.
func storeTimeAfter(t *testing.T, s dropboxsign.Store, since time.Time) time.Time {
	t.Helper()
	ctx := ctxFor(t)
	const probe = "clock-probe"
	for {
		if err := s.Replace(ctx, probe, token(0)); err != nil {
			t.Fatalf("Replace(%q): %v", probe, err)
		}
		if err := s.Disconnect(ctx, probe); err != nil {
			t.Fatalf("Disconnect(%q): %v", probe, err)
		}
		_, err := s.Load(ctx, probe)
		var d *dropboxsign.DisconnectedError
		if !errors.As(err, &d) {
			t.Fatalf("Load(%q) after Disconnect: %v, want a *DisconnectedError", probe, err)
		}
		if d.Since.After(since) {
			return d.Since
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the store's clock did not move past %v (%v)", since, ctx.Err())
		case <-time.After(10 * time.Millisecond): // pacing, not synchronization: each try is a write
		}
	}
}

// mustConflict checks that err is ErrConflict.
func mustConflict(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, dropboxsign.ErrConflict) {
		t.Errorf("%s: %v, want ErrConflict", what, err)
	}
}

// testDisconnect: Disconnect over nothing, a token, a refusal mark and a
// disconnection mark (which keeps its time); what a mark refuses (Save,
// whatever prev, and MarkRefused) and what it does not (Replace); no token
// material left behind.
func testDisconnect(t *testing.T, s dropboxsign.Store, raw func(dropboxsign.Store, string) []byte) {
	ctx := ctxFor(t)
	start := time.Now()

	if err := s.Disconnect(ctx, "d-nothing"); err != nil {
		t.Fatalf("Disconnect over nothing: %v", err)
	}
	loadMark(t, s, "d-nothing", start)

	const key = "d"
	old := secretToken()
	if err := s.Save(ctx, key, nil, old); err != nil {
		t.Fatal(err)
	}
	var before []byte
	if raw != nil {
		before = raw(s, key)
	}
	if err := s.Disconnect(ctx, key); err != nil {
		t.Fatalf("Disconnect over a token: %v", err)
	}
	since := loadMark(t, s, key, start)
	checkNoTokenMaterial(t, raw, s, key, old, before)

	// Nothing a replica holding the old grant does writes it back.
	mustConflict(t, "Save with prev nil over a disconnection mark", s.Save(ctx, key, nil, secretToken()))
	mustConflict(t, "Save with prev the disconnected token", s.Save(ctx, key, old, secretToken()))
	mustConflict(t, "Save with prev the disconnected token, unchanged", s.Save(ctx, key, old, old))
	mustConflict(t, "MarkRefused of the disconnected token", s.MarkRefused(ctx, key, old))
	if again := loadMark(t, s, key, start); !again.Equal(since) {
		t.Errorf("the refused writes changed the mark's time from %v to %v", since, again)
	}

	// A second Disconnect, once the store's clock has moved on, keeps
	// the first one's time.
	later := storeTimeAfter(t, s, since)
	if err := s.Disconnect(ctx, key); err != nil {
		t.Fatalf("Disconnect over a disconnection mark: %v", err)
	}
	if again := loadMark(t, s, key, start); !again.Equal(since) {
		t.Errorf("Disconnect over a mark recorded at %v made it %v (the store's clock is at %v): it must keep the first time", since, again, later)
	}

	// Over a refusal mark: a disconnection, not a refusal.
	refusedTok := secretToken()
	if err := s.Save(ctx, "d-refused", nil, refusedTok); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRefused(ctx, "d-refused", refusedTok); err != nil {
		t.Fatal(err)
	}
	if err := s.Disconnect(ctx, "d-refused"); err != nil {
		t.Fatalf("Disconnect over a refusal mark: %v", err)
	}
	loadMark(t, s, "d-refused", start)
	mustConflict(t, "Save with prev nil over a disconnection mark made over a refusal", s.Save(ctx, "d-refused", nil, secretToken()))

	// A new login (Replace) writes over the mark, and compare-and-swap
	// goes on from its token.
	login := secretToken()
	if err := s.Replace(ctx, key, login); err != nil {
		t.Fatalf("Replace over a disconnection mark: %v", err)
	}
	if got, err := s.Load(ctx, key); err != nil || !same(got, login) {
		t.Fatalf("Load after Replace over a disconnection mark = %+v, %v; want the new login's token", got, err)
	}
	next := secretToken()
	if err := s.Save(ctx, key, login, next); err != nil {
		t.Fatalf("Save after Replace over a disconnection mark: %v", err)
	}
	if raw != nil {
		before = raw(s, key)
	}
	if err := s.Disconnect(ctx, key); err != nil {
		t.Fatalf("Disconnect after a new login: %v", err)
	}
	// A new mark, not the first one kept through the login.
	if again := loadMark(t, s, key, start); !again.After(since) {
		t.Errorf("Disconnect after a new login: the mark's time is %v, want a new one, after %v", again, since)
	}
	checkNoTokenMaterial(t, raw, s, key, next, before)
	if got, err := s.Load(ctx, "d-nothing"); got != nil || !errors.Is(err, dropboxsign.ErrDisconnected) {
		t.Errorf("the other keys' marks: Load(%q) = %v, %v", "d-nothing", got, err)
	}
}

// checkNoTokenMaterial checks, through raw, that s keeps for key nothing
// of tok: no piece of its access or refresh token, no SHA-256 of them (in
// hex or base64, as this repository's stores compare tokens by). before is
// what raw returned while key held tok.
func checkNoTokenMaterial(t *testing.T, raw func(dropboxsign.Store, string) []byte, s dropboxsign.Store, key string, tok *oauth2.Token, before []byte) {
	t.Helper()
	if raw == nil {
		t.Log("no WithRaw: whether token material is left after Disconnect is for the store's own tests to check")
		return
	}
	inClear := func(b []byte) bool {
		for _, p := range secretPieces(tok)[:2] {
			if bytes.Contains(b, []byte(p.text)) {
				return true
			}
		}
		return false
	}
	switch {
	case before == nil:
		t.Errorf("WithRaw's function returned nothing for key %q while it held a token", key)
	case !inClear(before):
		t.Logf("WithRaw shows no token in the clear for %q while it holds one (sealed?): the check of what Disconnect leaves proves little here", key)
	}
	after := raw(s, key)
	for _, p := range secretPieces(tok) {
		for i := 0; i+pieceLen <= len(p.text); i++ {
			if bytes.Contains(after, []byte(p.text[i:i+pieceLen])) {
				t.Errorf("after Disconnect, the store still holds token material for %q: characters %d to %d of the %s", key, i, i+pieceLen, p.what)
				break
			}
		}
	}
}

// pieceLen is the length of a piece of a secret that must not be found: a
// random run of it this long comes from nowhere else.
const pieceLen = 12

type secretPiece struct{ what, text string }

// secretPieces returns the random parts of tok's access and refresh tokens
// (first), and the usual fingerprints of them.
func secretPieces(tok *oauth2.Token) []secretPiece {
	ps := []secretPiece{{"access token", tok.AccessToken[3:]}, {"refresh token", tok.RefreshToken[3:]}}
	sums := []struct {
		what string
		sum  [32]byte
	}{
		{"SHA-256 fingerprint of both tokens", sha256.Sum256([]byte("dropboxsign-fp\x00" + tok.AccessToken + "\x00" + tok.RefreshToken))},
		{"SHA-256 of the access token", sha256.Sum256([]byte(tok.AccessToken))},
		{"SHA-256 of the refresh token", sha256.Sum256([]byte(tok.RefreshToken))},
		{"SHA-256 of both tokens", sha256.Sum256([]byte(tok.AccessToken + tok.RefreshToken))},
	}
	for _, s := range sums {
		ps = append(ps,
			secretPiece{s.what + ", in hex", hex.EncodeToString(s.sum[:])},
			secretPiece{s.what + ", in base64", base64.RawStdEncoding.EncodeToString(s.sum[:])},
			secretPiece{s.what + ", in URL-safe base64", base64.RawURLEncoding.EncodeToString(s.sum[:])},
			secretPiece{s.what + ", raw", string(s.sum[:])})
	}
	return ps
}

// testForget: Forget erases a disconnection mark older than before, and
// nothing else.
func testForget(t *testing.T, s dropboxsign.Store) {
	ctx := ctxFor(t)
	start := time.Now()
	future := time.Now().Add(time.Hour)

	if err := s.Forget(ctx, "f-nothing", future); err != nil {
		t.Errorf("Forget of nothing: %v, want nil", err)
	}
	if _, err := s.Load(ctx, "f-nothing"); !errors.Is(err, dropboxsign.ErrNotFound) {
		t.Errorf("Load after Forget of nothing: %v, want ErrNotFound", err)
	}

	tok := secretToken()
	if err := s.Save(ctx, "f-token", nil, tok); err != nil {
		t.Fatal(err)
	}
	mustConflict(t, "Forget of a token", s.Forget(ctx, "f-token", future))
	if got, err := s.Load(ctx, "f-token"); err != nil || !same(got, tok) {
		t.Errorf("Load after Forget of a token = %+v, %v; want it unchanged", got, err)
	}

	refused := secretToken()
	if err := s.Save(ctx, "f-refused", nil, refused); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRefused(ctx, "f-refused", refused); err != nil {
		t.Fatal(err)
	}
	mustConflict(t, "Forget of a refusal mark", s.Forget(ctx, "f-refused", future))
	var r *dropboxsign.RefusedError
	if _, err := s.Load(ctx, "f-refused"); !errors.As(err, &r) {
		t.Errorf("Load after Forget of a refusal mark: %v, want it unchanged (a *RefusedError)", err)
	}

	const key = "f-mark"
	if err := s.Save(ctx, key, nil, secretToken()); err != nil {
		t.Fatal(err)
	}
	if err := s.Disconnect(ctx, key); err != nil {
		t.Fatal(err)
	}
	since := loadMark(t, s, key, start)
	mustConflict(t, "Forget of a mark recorded after before", s.Forget(ctx, key, since.Add(-time.Minute)))
	mustConflict(t, "Forget of a mark recorded at before (not before it)", s.Forget(ctx, key, since))
	if again := loadMark(t, s, key, start); !again.Equal(since) {
		t.Errorf("a refused Forget changed the mark's time from %v to %v", since, again)
	}
	later := storeTimeAfter(t, s, since)
	if err := s.Forget(ctx, key, later); err != nil {
		t.Fatalf("Forget of a mark recorded at %v, before %v: %v", since, later, err)
	}
	if got, err := s.Load(ctx, key); !errors.Is(err, dropboxsign.ErrNotFound) {
		t.Fatalf("Load after Forget = %v, %v; want ErrNotFound", got, err)
	}
	if err := s.Forget(ctx, key, later); err != nil {
		t.Errorf("Forget again: %v, want nil", err)
	}
	// The key is free: a first login's Save (prev nil) writes it.
	if err := s.Save(ctx, key, nil, tok); err != nil {
		t.Errorf("Save with prev nil after Forget: %v", err)
	}
}

// testDisconnectRace: replicas save new tokens in a chain, each with prev
// the token it last knew stored (as a refresh does), while the app
// disconnects the key: when Disconnect has returned, the key holds the
// mark, no Save that began after it succeeded, and none succeeds after it,
// whatever its prev (the token a replica held, or nothing). Half the rounds
// start from nothing, half from a token; in each, one more replica tries
// only prev nil, as a cold-started one seeding the store does (a
// Disconnect that empties the key, then writes its mark, lets it in). Each
// replica makes a bounded number of tries a round: the disconnection comes
// after the first saves, while they go on.
func testDisconnectRace(t *testing.T, s dropboxsign.Store) {
	const rounds, savers, tries = 12, 4, 20
	base, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	total, after := 0, 0
	for round := range rounds {
		key := fmt.Sprintf("dr-%d", round)
		ctx, stop := context.WithCancel(base)
		var first *oauth2.Token
		if round%2 == 0 {
			first = secretToken()
			if err := s.Save(ctx, key, nil, first); err != nil {
				stop()
				t.Fatal(err)
			}
		}
		var (
			returned atomic.Bool  // Disconnect has returned nil
			saves    atomic.Int64 // successful saves
			marked   atomic.Int64 // replicas that read the mark
			going    = make(chan struct{})
			once     sync.Once
			mu       sync.Mutex
			failures []string
			held     = make([]*oauth2.Token, savers+1) // what each replica believed stored at the end
		)
		fail := func(f string, args ...any) {
			mu.Lock()
			failures = append(failures, fmt.Sprintf(f, args...))
			mu.Unlock()
		}
		var wg sync.WaitGroup
		for i := range savers + 1 {
			cold := i == savers
			wg.Go(func() {
				known := first // what this replica believes is stored
				if cold {
					known = nil
				}
				defer func() { held[i] = known }()
				for range tries {
					if ctx.Err() != nil {
						return
					}
					late := returned.Load()
					next := secretToken()
					err := s.Save(ctx, key, known, next)
					switch {
					case err == nil && late:
						fail("a Save begun after Disconnect returned succeeded (prev nil: %v)", known == nil)
						return
					case err == nil:
						if !cold {
							known = next
						}
						if saves.Add(1) >= savers {
							once.Do(func() { close(going) })
						}
						continue
					case !errors.Is(err, dropboxsign.ErrConflict):
						if ctx.Err() == nil {
							fail("Save: %v", err)
						}
						return
					}
					// Conflict: read what is stored, as a replica does.
					got, err := s.Load(ctx, key)
					switch {
					case errors.Is(err, dropboxsign.ErrDisconnected):
						marked.Add(1)
						return
					case errors.Is(err, dropboxsign.ErrNotFound):
						known = nil
					case err != nil:
						if ctx.Err() == nil {
							fail("Load: %v", err)
						}
						return
					case !cold:
						known = got
					}
				}
			})
		}
		ended := make(chan struct{})
		go func() { wg.Wait(); close(ended) }()
		select {
		case <-going:
		case <-ended: // fewer saves than replicas succeeded: the Disconnect races none
		}
		err := s.Disconnect(ctx, key)
		if err == nil {
			returned.Store(true)
		} else {
			stop()
		}
		<-ended
		stop()
		if err != nil {
			t.Fatalf("round %d: Disconnect: %v", round, err)
		}
		if len(failures) > 0 {
			t.Fatalf("round %d: %v", round, failures)
		}
		if got, err := s.Load(base, key); got != nil || !errors.Is(err, dropboxsign.ErrDisconnected) {
			t.Fatalf("round %d: after Disconnect and the racing saves, Load = %v, %v; want a *DisconnectedError", round, got, err)
		}
		// Replicas whose refresh was in flight save it, with the prev they
		// had, and a cold-started one with none: all refused.
		for _, prev := range append(held, nil) {
			if err := s.Save(base, key, prev, secretToken()); !errors.Is(err, dropboxsign.ErrConflict) {
				t.Fatalf("round %d: Save over the disconnection mark (prev nil: %v) after the race: %v, want ErrConflict", round, prev == nil, err)
			}
		}
		total += int(saves.Load())
		after += int(marked.Load())
	}
	t.Logf("%d rounds: %d saves succeeded around the disconnections; %d replicas read the mark before their tries ran out", rounds, total, after)
}
