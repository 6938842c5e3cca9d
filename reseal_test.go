package dropboxsign_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// What Census and Reseal do beyond what the conformance suite checks of
// every store (internal/storetest/seal.go): how they stop, and what they
// make of a store that lists keys out of order or holds records that are
// not tokens.

var (
	resealK1 = bytes.Repeat([]byte{0x11}, 32)
	resealK2 = bytes.Repeat([]byte{0x22}, 32)
)

func resealToken(n int) *oauth2.Token {
	return &oauth2.Token{AccessToken: fmt.Sprintf("reseal-at-%d", n), TokenType: "Bearer",
		RefreshToken: fmt.Sprintf("reseal-rt-%d", n), Expiry: time.Unix(1900000000, 0), ExpiresIn: 3600}
}

// resealDir returns a token directory holding a token under K1 for each of
// old and under K2 for each of current, and the directory opened under
// [K2, K1].
func resealDir(t *testing.T, old, current []string) (string, *dropboxsign.FileStore) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tokens")
	open := func(keys ...[]byte) *dropboxsign.FileStore {
		fs, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, keys...)))
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	ctx := context.Background()
	k1 := open(resealK1)
	for i, k := range old {
		if err := k1.Save(ctx, k, nil, resealToken(i)); err != nil {
			t.Fatal(err)
		}
	}
	both := open(resealK2, resealK1)
	for i, k := range current {
		if err := both.Save(ctx, k, nil, resealToken(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, both
}

// afterSave runs a hook after each successful Save of the store it wraps.
type afterSave struct {
	dropboxsign.SealInspector
	hook func(key string)
}

func (a *afterSave) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	err := a.SealInspector.Save(ctx, key, prev, t)
	if err == nil {
		a.hook(key)
	}
	return err
}

func k1Count(t *testing.T, s dropboxsign.SealInspector) int {
	t.Helper()
	r, err := dropboxsign.Census(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return r.ByKey[dropboxsign.KeyID(resealK1)]
}

// A re-seal whose ctx ends stops at once, before the next token, even one
// that needs no write, with Last the last token it finished: resuming from
// there finishes the job.
func TestResealStopsAtCancelWithProgress(t *testing.T) {
	_, fs := resealDir(t, []string{"a-1", "a-2", "a-4"}, []string{"a-3"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &afterSave{SealInspector: fs, hook: func(key string) {
		if key == "a-2" {
			cancel()
		}
	}}
	var last dropboxsign.ResealProgress
	p, err := dropboxsign.Reseal(ctx, s, dropboxsign.ResealOptions{PerSecond: 1e6, Progress: func(p dropboxsign.ResealProgress) { last = p }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Reseal = %+v, %v; want context.Canceled", p, err)
	}
	if want := (dropboxsign.ResealProgress{Visited: 2, Resealed: 2, Last: "a-2"}); p != want || last != want {
		t.Errorf("progress %+v, last reported %+v; want %+v (stopped before a-3, which needs no write)", p, last, want)
	}
	if n := k1Count(t, fs); n != 1 {
		t.Errorf("%d tokens under K1 after the stop, want 1 (a-4)", n)
	}
	p, err = dropboxsign.Reseal(context.Background(), fs, dropboxsign.ResealOptions{After: p.Last, PerSecond: 1e6})
	if err != nil || p.Visited != 2 || p.Resealed != 1 || p.Last != "a-4" {
		t.Errorf("resumed: %+v, %v; want a-3 and a-4 visited, a-4 written", p, err)
	}
	if n := k1Count(t, fs); n != 0 {
		t.Errorf("%d tokens under K1 after the resumed re-seal", n)
	}
}

// A store error stops the re-seal with the progress so far and an error
// naming the account (not its token); resumed once the store is back, the
// re-seal finishes.
func TestResealStopsAtStoreError(t *testing.T) {
	dir, fs := resealDir(t, []string{"b-1", "b-2", "b-3"}, nil)
	moved := dir + ".moved"
	s := &afterSave{SealInspector: fs, hook: func(key string) {
		if key == "b-2" { // the directory goes: every call fails from now on
			if err := os.Rename(dir, moved); err != nil {
				t.Error(err)
			}
		}
	}}
	p, err := dropboxsign.Reseal(context.Background(), s, dropboxsign.ResealOptions{PerSecond: 1e6})
	if err == nil || !strings.Contains(err.Error(), `"b-3"`) {
		t.Fatalf("Reseal = %+v, %v; want an error naming b-3", p, err)
	}
	if strings.Contains(err.Error(), "reseal-rt") || strings.Contains(err.Error(), "reseal-at") {
		t.Errorf("the error shows a token: %v", err)
	}
	if want := (dropboxsign.ResealProgress{Visited: 2, Resealed: 2, Last: "b-2"}); p != want {
		t.Errorf("progress %+v, want %+v", p, want)
	}
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	if p, err = dropboxsign.Reseal(context.Background(), fs, dropboxsign.ResealOptions{After: p.Last, PerSecond: 1e6}); err != nil || p.Resealed != 1 {
		t.Errorf("resumed: %+v, %v", p, err)
	}
	if n := k1Count(t, fs); n != 0 {
		t.Errorf("%d tokens under K1 after the resumed re-seal", n)
	}
}

// listing replaces a store's InspectSeals.
type listing struct {
	dropboxsign.SealInspector
	inspect func(after string, limit int) []dropboxsign.StoredSeal
}

func (l *listing) InspectSeals(_ context.Context, after string, limit int) ([]dropboxsign.StoredSeal, error) {
	return l.inspect(after, limit), nil
}

// A store that lists a key twice, or lists keys not after the one asked
// for, would have a census count tokens twice and a re-seal go round for
// ever: both stop with an error.
func TestCensusAndResealRefuseKeysOutOfOrder(t *testing.T) {
	_, fs := resealDir(t, []string{"c-1", "c-2"}, nil)
	seal := dropboxsign.Seal{KeyID: dropboxsign.KeyID(resealK1)}
	for name, inspect := range map[string]func(string, int) []dropboxsign.StoredSeal{
		"a key twice in a page": func(after string, _ int) []dropboxsign.StoredSeal {
			if after != "" {
				return nil
			}
			return []dropboxsign.StoredSeal{{Key: "c-1", Seal: seal}, {Key: "c-1", Seal: seal}, {Key: "c-2", Seal: seal}}
		},
		"the same page again": func(string, int) []dropboxsign.StoredSeal {
			return []dropboxsign.StoredSeal{{Key: "c-1", Seal: seal}, {Key: "c-2", Seal: seal}}
		},
		"going back": func(after string, _ int) []dropboxsign.StoredSeal {
			if after != "" {
				return nil
			}
			return []dropboxsign.StoredSeal{{Key: "c-2", Seal: seal}, {Key: "c-1", Seal: seal}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := &listing{SealInspector: fs, inspect: inspect}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a loop would run to here
			defer cancel()
			if r, err := dropboxsign.Census(ctx, s); err == nil || !strings.Contains(err.Error(), "out of order") {
				t.Errorf("Census = %+v, %v; want an error: out of order", r, err)
			}
			if p, err := dropboxsign.Reseal(ctx, s, dropboxsign.ResealOptions{PerSecond: 1e6}); err == nil || !strings.Contains(err.Error(), "out of order") {
				t.Errorf("Reseal = %+v, %v; want an error: out of order", p, err)
			}
		})
	}
}

// A FileStore's record that is not a token (corrupt, or another key's
// file) is counted as unopenable, under no key; the census and the re-seal
// go on past it.
func TestCensusCountsFilesThatAreNotTokens(t *testing.T) {
	_, fs := resealDir(t, []string{"d-1", "d-3"}, []string{"d-4"})
	if err := os.WriteFile(fs.Path("d-2"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fs.Path("d-4"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fs.Path("d-5"), b, 0o600); err != nil { // d-4's file, copied
		t.Fatal(err)
	}
	ctx := context.Background()
	page, err := fs.InspectSeals(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range page {
		keys = append(keys, r.Key)
		if bad := r.Key == "d-2" || r.Key == "d-5"; bad != (r.Seal.Err != nil) {
			t.Errorf("%s: %+v", r.Key, r.Seal)
		}
	}
	if !slices.Equal(keys, []string{"d-1", "d-2", "d-3", "d-4", "d-5"}) {
		t.Errorf("listed %q", keys)
	}
	r, err := dropboxsign.Census(ctx, fs)
	if err != nil {
		t.Fatal(err)
	}
	id1, id2 := dropboxsign.KeyID(resealK1), dropboxsign.KeyID(resealK2)
	if r.Tokens != 5 || r.Plain != 0 || r.ByKey[id1] != 2 || r.ByKey[id2] != 1 || len(r.ByKey) != 2 || r.Unopenable[""] != 2 || len(r.Unopenable) != 1 {
		t.Errorf("Census = %+v; want 5 records: 2 under K1, 1 under K2, 2 unopenable under no key", r)
	}
	p, err := dropboxsign.Reseal(ctx, fs, dropboxsign.ResealOptions{PerSecond: 1e6})
	if want := (dropboxsign.ResealProgress{Visited: 5, Resealed: 2, Unopenable: 2, Last: "d-5"}); err != nil || p != want {
		t.Errorf("Reseal = %+v, %v; want %+v", p, err, want)
	}
}

// The in-memory store of dropboxsigntest keeps tokens unsealed: all plain
// and current, nothing for a re-seal to write.
func TestCensusOfTheMemoryStore(t *testing.T) {
	s := dropboxsigntest.NewStore()
	ctx := context.Background()
	for i, k := range []string{"e-2", "e-1", "e-3"} {
		if err := s.Save(ctx, k, nil, resealToken(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Disconnect(ctx, "e-3"); err != nil {
		t.Fatal(err)
	}
	r, err := dropboxsign.Census(ctx, s)
	if err != nil || r.Tokens != 2 || r.Plain != 2 || r.Current != 2 || len(r.ByKey) != 0 || len(r.Unopenable) != 0 {
		t.Errorf("Census = %+v, %v; want 2 tokens, plain and current", r, err)
	}
	p, err := dropboxsign.Reseal(ctx, s, dropboxsign.ResealOptions{})
	if want := (dropboxsign.ResealProgress{Visited: 2, Last: "e-2"}); err != nil || p != want {
		t.Errorf("Reseal = %+v, %v; want %+v", p, err, want)
	}
}

func TestResealRefusesNaNRate(t *testing.T) {
	_, fs := resealDir(t, []string{"f-1"}, nil)
	if _, err := dropboxsign.Reseal(context.Background(), fs, dropboxsign.ResealOptions{PerSecond: math.NaN()}); err == nil {
		t.Error("PerSecond NaN: no error")
	}
	if n := k1Count(t, fs); n != 1 {
		t.Errorf("%d tokens under K1, want 1: nothing written", n)
	}
}

func TestCensusKeyCounts(t *testing.T) {
	r := dropboxsign.CensusReport{ByKey: map[string]int{"bb": 2, "aa": 2, "cc": 5}}
	if got := r.KeyCounts(); !slices.Equal(got, []string{"cc", "aa", "bb"}) {
		t.Errorf("KeyCounts = %q; want the most tokens first, then by ID", got)
	}
}
