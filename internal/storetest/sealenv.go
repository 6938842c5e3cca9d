package storetest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// SealEnv is one backing store, opened under any Sealer, with the raw
// access RunSealEnv's checks need.
type SealEnv struct {
	Open func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.SealInspector
	// Changes counts the entries of the change log that watchers follow.
	Changes func(t *testing.T) int64
	// Fingerprint is the fingerprint the store compares in Save, as stored.
	Fingerprint func(t *testing.T, key string) string
	// SetBlob stores blob as key's token, raw.
	SetBlob func(t *testing.T, key string, blob []byte)
}

// Keys whose bytewise order is not a locale's: capitals before small
// letters, '_' between them, non-ASCII after all.
// SealKeys are keys whose bytewise order is not a locale's.
var SealKeys = []string{"a", "B", "_x", "é", "e", "Z", "ab", "A", "zz", "ñ", "1", "~", "b"}

// SealToken is the token the seal tests store under key.
func SealToken(key string) *oauth2.Token {
	return &oauth2.Token{AccessToken: "at-" + key, RefreshToken: "rt-" + key, TokenType: "Bearer", Expiry: time.Now().Add(time.Hour).Round(0)}
}

// SealKey is a 32-byte test key of bytes b.
func SealKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// InspectAll pages through InspectSeals with limit, checking each page.
func InspectAll(t *testing.T, s dropboxsign.SealInspector, limit int) []dropboxsign.StoredSeal {
	t.Helper()
	var all []dropboxsign.StoredSeal
	after := ""
	for range 1000 {
		page, err := s.InspectSeals(ctxFor(t), after, limit)
		if err != nil {
			t.Fatalf("InspectSeals(%q, %d): %v", after, limit, err)
		}
		if len(page) == 0 {
			return all
		}
		if len(page) > limit {
			t.Fatalf("InspectSeals(%q, %d) returned %d", after, limit, len(page))
		}
		for _, p := range page {
			if p.Key <= after {
				t.Fatalf("InspectSeals(%q): key %q out of bytewise order", after, p.Key)
			}
			after = p.Key
		}
		all = append(all, page...)
	}
	t.Fatal("InspectSeals never ended")
	return nil
}

// KeysOf returns the keys of seals, in their order.
func KeysOf(seals []dropboxsign.StoredSeal) []string {
	var keys []string
	for _, s := range seals {
		keys = append(keys, s.Key)
	}
	return keys
}

// Sorted returns a sorted copy of keys.
func Sorted(keys []string) []string {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return keys
}

// RunSealEnv runs the census and re-seal tests (a rotation, plain tokens,
// paging) on fresh backends newEnv makes: the stores' own tests give the
// raw access each needs.
func RunSealEnv(t *testing.T, newEnv func(t *testing.T) SealEnv) {
	t.Run("Rotation", func(t *testing.T) { testSealRotation(t, newEnv(t)) })
	t.Run("Plain", func(t *testing.T) { testSealPlain(t, newEnv(t)) })
	t.Run("Paging", func(t *testing.T) { testSealPaging(t, newEnv(t)) })
}

// testSealRotation: tokens sealed under K1; under [K2] alone the census
// counts them unopenable and Load names K1 (Misconfigured); a re-seal with
// [K2, K1] seals them under K2, by compare-and-swap saves that keep their
// fingerprints and log no change; then [K2] alone reads every token.
func testSealRotation(t *testing.T, env SealEnv) {
	ctx := ctxFor(t)
	k1, k2, k3 := SealKey(1), SealKey(2), SealKey(3)
	id1, id2 := dropboxsign.KeyID(k1), dropboxsign.KeyID(k2)
	s1 := env.Open(t, MustSealer(t, k1))
	for _, k := range SealKeys {
		if err := s1.Save(ctx, k, nil, SealToken(k)); err != nil {
			t.Fatal(err)
		}
	}
	// Marks, which hold no token: left out.
	if err := s1.Save(ctx, "refused", nil, SealToken("refused")); err != nil {
		t.Fatal(err)
	}
	if err := s1.MarkRefused(ctx, "refused", SealToken("refused")); err != nil {
		t.Fatal(err)
	}
	if err := s1.Disconnect(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	fps := map[string]string{}
	for _, k := range SealKeys {
		fps[k] = env.Fingerprint(t, k)
	}
	changes := env.Changes(t)

	s21 := env.Open(t, MustSealer(t, k2, k1))
	seals := InspectAll(t, s21, 100)
	if got, want := KeysOf(seals), Sorted(SealKeys); !slices.Equal(got, want) {
		t.Fatalf("InspectSeals listed %q, want %q", got, want)
	}
	for _, s := range seals {
		if s.Seal.KeyID != id1 || s.Seal.Current || s.Seal.Plain || s.Seal.Err != nil {
			t.Errorf("%q under [K2, K1]: %+v, want KeyID %s, not current, opens", s.Key, s.Seal, id1)
		}
	}

	// Before the re-seal: [K2] alone opens none of them; [K3] neither.
	s2 := env.Open(t, MustSealer(t, k2))
	r, err := dropboxsign.Census(ctx, s2)
	if err != nil {
		t.Fatal(err)
	}
	n := len(SealKeys)
	if r.Tokens != n || r.ByKey[id1] != n || r.Current != 0 || r.Unopenable[id1] != n || r.Plain != 0 {
		t.Errorf("census under [K2] before the re-seal: %+v, want %d tokens under K1, all unopenable", r, n)
	}
	for _, sk := range []struct {
		name string
		s    dropboxsign.SealInspector
	}{{"[K2]", s2}, {"[K3]", env.Open(t, MustSealer(t, k3))}} {
		_, err := sk.s.Load(ctx, SealKeys[0])
		var mk *dropboxsign.MissingKeyError
		if !errors.As(err, &mk) || mk.KeyID != id1 || dropboxsign.Classify(err) != dropboxsign.Misconfigured {
			t.Errorf("Load under %s: %v, want a *MissingKeyError naming %s, Misconfigured", sk.name, err, id1)
		}
	}

	var reports int
	p, err := dropboxsign.Reseal(ctx, s21, dropboxsign.ResealOptions{PerSecond: 1e6, Progress: func(dropboxsign.ResealProgress) { reports++ }})
	if err != nil {
		t.Fatal(err)
	}
	if p.Visited != n || p.Resealed != n || p.Changed != 0 || p.Unopenable != 0 || p.Last != Sorted(SealKeys)[n-1] || reports == 0 {
		t.Errorf("Reseal: %+v (%d reports), want %d visited and resealed", p, reports, n)
	}
	// The compare-and-swap compared token material: the fingerprints are
	// the same; and the re-seal told no watcher of a change.
	for _, k := range SealKeys {
		if fp := env.Fingerprint(t, k); fp != fps[k] || fp == "" {
			t.Errorf("%q: fingerprint %q after the re-seal, was %q", k, fp, fps[k])
		}
	}
	if c := env.Changes(t); c != changes {
		t.Errorf("the change log has %d entries after the re-seal, had %d: a re-seal would make watchers reload", c, changes)
	}

	r, err = dropboxsign.Census(ctx, s2)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens != n || r.ByKey[id2] != n || r.Current != n || len(r.Unopenable) != 0 {
		t.Errorf("census under [K2] after the re-seal: %+v, want %d tokens under K2, all current and openable", r, n)
	}
	for _, k := range SealKeys {
		tok, err := s2.Load(ctx, k)
		if err != nil || tok.AccessToken != "at-"+k || tok.RefreshToken != "rt-"+k {
			t.Errorf("Load(%q) under [K2] after the re-seal: %v, %v", k, tok, err)
		}
	}
	// A second re-seal has nothing to do.
	if p, err := dropboxsign.Reseal(ctx, s21, dropboxsign.ResealOptions{PerSecond: 1e6}); err != nil || p.Resealed != 0 || p.Visited != n {
		t.Errorf("second Reseal: %+v, %v", p, err)
	}
	if _, err := env.Open(t, MustSealer(t, k3)).Load(ctx, SealKeys[0]); err == nil {
		t.Error("Load under [K3] after the re-seal succeeded")
	} else if mk := (*dropboxsign.MissingKeyError)(nil); !errors.As(err, &mk) || mk.KeyID != id2 {
		t.Errorf("Load under [K3] after the re-seal: %v, want a *MissingKeyError naming %s", err, id2)
	}
}

// testSealPlain: tokens in plain JSON are Plain (current for a store
// without keys); a value that is no token reports Err and the listing goes
// on; a re-seal with a key seals the tokens and leaves the rest.
func testSealPlain(t *testing.T, env SealEnv) {
	ctx := ctxFor(t)
	plain := env.Open(t, nil)
	for _, k := range SealKeys {
		if err := plain.Save(ctx, k, nil, SealToken(k)); err != nil {
			t.Fatal(err)
		}
	}
	env.SetBlob(t, "junk", []byte("not a token"))
	n := len(SealKeys)
	seals := InspectAll(t, plain, 4)
	if got, want := KeysOf(seals), Sorted(append(slices.Clone(SealKeys), "junk")); !slices.Equal(got, want) {
		t.Fatalf("InspectSeals listed %q, want %q", got, want)
	}
	for _, s := range seals {
		if !s.Seal.Plain || s.Seal.Current != (s.Key != "junk") || s.Seal.KeyID != "" || (s.Seal.Err != nil) != (s.Key == "junk") { // a token that does not open is never Current
			t.Errorf("%q without keys: %+v", s.Key, s.Seal)
		}
	}
	k1 := SealKey(1)
	sealed := env.Open(t, MustSealer(t, k1))
	r, err := dropboxsign.Census(ctx, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens != n+1 || r.Plain != n+1 || r.Current != 0 || r.Unopenable[""] != 1 || len(r.ByKey) != 0 {
		t.Errorf("census of plain tokens under [K1]: %+v", r)
	}
	p, err := dropboxsign.Reseal(ctx, sealed, dropboxsign.ResealOptions{PerSecond: 1e6})
	if err != nil || p.Resealed != n || p.Unopenable != 1 || p.Visited != n+1 {
		t.Errorf("Reseal of plain tokens: %+v, %v", p, err)
	}
	r, err = dropboxsign.Census(ctx, env.Open(t, MustSealer(t, k1).RefusePlaintext()))
	if err != nil {
		t.Fatal(err)
	}
	if id := dropboxsign.KeyID(k1); r.Tokens != n+1 || r.ByKey[id] != n || r.Current != n || r.Plain != 1 || r.Unopenable[""] != 1 || len(r.Unopenable) != 1 {
		t.Errorf("census after sealing plain tokens: %+v", r)
	}
}

// testSealPaging: small pages list every token once, in bytewise order
// (not a locale's), leaving marks out, however many marks lie between.
func testSealPaging(t *testing.T, env SealEnv) {
	ctx := ctxFor(t)
	s := env.Open(t, MustSealer(t, SealKey(1)))
	var want []string
	for i, k := range SealKeys {
		for j, kk := range []string{k, k + "-mark1", k + "-mark2"} {
			if err := s.Save(ctx, kk, nil, SealToken(kk)); err != nil {
				t.Fatal(err)
			}
			switch {
			case j == 0:
				want = append(want, kk)
			case (i+j)%2 == 0:
				if err := s.Disconnect(ctx, kk); err != nil {
					t.Fatal(err)
				}
			default:
				if err := s.MarkRefused(ctx, kk, SealToken(kk)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	slices.Sort(want)
	for _, limit := range []int{1, 2, 3, 5, 100} {
		if got := KeysOf(InspectAll(t, s, limit)); !slices.Equal(got, want) {
			t.Errorf("limit %d: listed %q, want %q", limit, got, want)
		}
	}
	if _, err := s.InspectSeals(ctx, "", 0); err == nil {
		t.Error("InspectSeals with limit 0: no error")
	}
}

// MustSealer is dropboxsign.NewSealer(keys...), or t fails.
func MustSealer(t *testing.T, keys ...[]byte) *dropboxsign.Sealer {
	s, err := dropboxsign.NewSealer(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
