package storetest

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// WithSealers lets the suite open one backend of the store under several
// Sealers, as replicas configured with different keys do during a key
// rotation: open returns a store that seals with s (nil: plain JSON), over
// the backend of t: every call with the same t must give a store over the
// same records (the same directory, database table or key prefix), and a
// new t a backend of its own (or at least one that holds no key an earlier
// t used). The suite then checks, through [dropboxsign.SealInspector], how
// the store reports the tokens of each key, and [dropboxsign.Census] and
// [dropboxsign.Reseal] over it: that a re-seal moves every token to the
// first key, resumes, is rate-bounded, leaves alone a token changed
// between its read and its write, and writes plain JSON under
// [dropboxsign.Sealer.OpenOnly]. Without it the suite checks only the
// listing of InspectSeals (order, paging, marks left out), on the stores
// Run's newStore returns.
func WithSealers(open func(t *testing.T, s *dropboxsign.Sealer) dropboxsign.Store) Option {
	return func(c *config) { c.sealers = open }
}

// runSeal runs the SealInspector tests: part of [Run].
func runSeal(t *testing.T, newStore func(t *testing.T) dropboxsign.Store, c config) {
	t.Run("InspectSeals", func(t *testing.T) {
		s := newStore(t)
		si, ok := s.(dropboxsign.SealInspector)
		if !ok {
			t.Skipf("%T is not a SealInspector", s)
		}
		testInspectSeals(t, si)
	})
	sealed := func(name string, test func(t *testing.T, open func(*dropboxsign.Sealer) dropboxsign.SealInspector)) {
		t.Run(name, func(t *testing.T) {
			if c.sealers == nil {
				t.Skip("no WithSealers: the store cannot be opened under other keys")
			}
			open := func(s *dropboxsign.Sealer) dropboxsign.SealInspector {
				t.Helper()
				st := c.sealers(t, s)
				si, ok := st.(dropboxsign.SealInspector)
				if !ok {
					t.Fatalf("%T is not a SealInspector", st)
				}
				return si
			}
			test(t, open)
		})
	}
	sealed("SealsByKey", testSealsByKey)
	sealed("ResealMovesToFirstKey", testResealMoves)
	sealed("ResealResumes", testResealResumes)
	sealed("ResealLeavesChangedTokens", testResealChanged)
	sealed("ResealKeepsSpendingMark", testResealSpendingMark)
	sealed("ResealRateBounded", testResealRate)
	sealed("ResealOpenOnlyWritesPlain", testResealOpenOnly)
}

// inspectAll pages through s's InspectSeals, limit at a time, checking
// what every page must be.
func inspectAll(t *testing.T, s dropboxsign.SealInspector, after string, limit int) []dropboxsign.StoredSeal {
	t.Helper()
	ctx := ctxFor(t)
	var all []dropboxsign.StoredSeal
	for {
		page, err := s.InspectSeals(ctx, after, limit)
		if err != nil {
			t.Fatalf("InspectSeals(%q, %d): %v", after, limit, err)
		}
		if len(page) > limit {
			t.Fatalf("InspectSeals(%q, %d) returned %d records", after, limit, len(page))
		}
		if len(page) == 0 {
			return all
		}
		for _, r := range page {
			if r.Key <= after {
				t.Fatalf("InspectSeals listed %q after %q: out of order, or not after the key asked for", r.Key, after)
			}
			after = r.Key
		}
		all = append(all, page...)
	}
}

func sealKeys(list []dropboxsign.StoredSeal) []string {
	var keys []string
	for _, r := range list {
		keys = append(keys, r.Key)
	}
	return keys
}

// testInspectSeals: InspectSeals lists the keys that hold a token, in
// bytewise order, after the key given, at most limit at a time, without
// marks; the store's own tokens are stored as its Sealer writes them
// (Current) and open.
func testInspectSeals(t *testing.T, s dropboxsign.SealInspector) {
	ctx := ctxFor(t)
	long := strings.Repeat("L", 300) // a file name too long for FileStore: a hash
	tokens := []string{"a", "a b", "a/b", "a0", "B", "%", "ü", "z", long, "m"}
	for i, k := range tokens {
		if err := s.Save(ctx, k, nil, token(i)); err != nil {
			t.Fatalf("%q: %v", k, err)
		}
	}
	for i, k := range []string{"mark-refused", "mark-disconnected", "a-refused"} {
		if err := s.Save(ctx, k, nil, token(100+i)); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(k, "refused") {
			if err := s.MarkRefused(ctx, k, token(100+i)); err != nil {
				t.Fatal(err)
			}
		} else if err := s.Disconnect(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Disconnect(ctx, "mark-nothing"); err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(tokens))
	for _, limit := range []int{1000, 1, 3} {
		all := inspectAll(t, s, "", limit)
		if got := sealKeys(all); !slices.Equal(got, want) {
			t.Fatalf("InspectSeals a page of %d at a time listed %q, want %q (bytewise order, marks left out)", limit, got, want)
		}
		for _, r := range all {
			if r.Seal.Err != nil || !r.Seal.Current {
				t.Errorf("%q, just saved: %+v; want Current, and no error", r.Key, r.Seal)
			}
		}
	}
	// After a key that is not stored, and after the last.
	if got := sealKeys(inspectAll(t, s, "a!", 2)); !slices.Equal(got, []string{"a/b", "a0", "m", "z", "ü"}) {
		t.Errorf("after %q: %q", "a!", got)
	}
	if page, err := s.InspectSeals(ctx, "ü", 10); err != nil || len(page) != 0 {
		t.Errorf("after the last key: %v, %v; want an empty list", page, err)
	}
	if page, err := s.InspectSeals(ctx, "", 2); err != nil || len(page) != 2 {
		t.Errorf("a limit of 2: %d records, %v", len(page), err)
	}
	if _, err := s.InspectSeals(ctx, "", 0); err == nil {
		t.Error("InspectSeals with limit 0: no error")
	}
	checkSample(t, s)
}

// checkSample checks, on a store that is a [dropboxsign.SealSampler], that
// samples of a few sizes hold at most the size asked for, each key once,
// each one InspectSeals lists (so no mark) with the same Seal; and that a
// size below 1 is an error. A sample may hold fewer (a Redis server with
// many keys besides the store's), so it is not asked to be complete.
func checkSample(t *testing.T, s dropboxsign.SealInspector) {
	t.Helper()
	ss, ok := s.(dropboxsign.SealSampler)
	if !ok {
		return
	}
	ctx := ctxFor(t)
	listed := map[string]dropboxsign.Seal{}
	for _, r := range inspectAll(t, s, "", 1000) {
		listed[r.Key] = r.Seal
	}
	for _, n := range []int{1, 3, 100} {
		sample, err := ss.SampleSeals(ctx, n)
		if err != nil {
			t.Fatalf("SampleSeals(%d): %v", n, err)
		}
		if len(sample) > n {
			t.Errorf("SampleSeals(%d) returned %d records", n, len(sample))
		}
		seen := map[string]bool{}
		for _, r := range sample {
			want, ok := listed[r.Key]
			switch {
			case seen[r.Key]:
				t.Errorf("SampleSeals(%d) returned %q twice", n, r.Key)
			case !ok:
				t.Errorf("SampleSeals(%d) returned %q, which InspectSeals does not list (a mark, or no token)", n, r.Key)
			case r.Seal.Plain != want.Plain || r.Seal.KeyID != want.KeyID || r.Seal.Current != want.Current ||
				(r.Seal.Err == nil) != (want.Err == nil) || !sameErrKind(r.Seal.Err, want.Err):
				t.Errorf("SampleSeals(%d): %q: %+v; InspectSeals says %+v", n, r.Key, r.Seal, want)
			}
			seen[r.Key] = true
		}
	}
	if _, err := ss.SampleSeals(ctx, 0); err == nil {
		t.Error("SampleSeals(0): no error")
	}
}

// sameErrKind tells whether a and b are both, or both not, a
// [*dropboxsign.MissingKeyError] of the same key.
func sameErrKind(a, b error) bool {
	var ma, mb *dropboxsign.MissingKeyError
	okA, okB := errors.As(a, &ma), errors.As(b, &mb)
	return okA == okB && (!okA || ma.KeyID == mb.KeyID && ma.Retired == mb.Retired)
}

// The keys of the sealing tests: k1 and k2 as a rotation has them, k3 a
// key the store is never given.
var (
	key1 = bytes.Repeat([]byte{1}, 32)
	key2 = bytes.Repeat([]byte{2}, 32)
	key3 = bytes.Repeat([]byte{3}, 32)
)

func sealer(t *testing.T, keys ...[]byte) *dropboxsign.Sealer {
	t.Helper()
	s, err := dropboxsign.NewSealer(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// saveAll saves token(first+i) under each key, through s.
func saveAll(t *testing.T, s dropboxsign.Store, first int, keys ...string) {
	t.Helper()
	for i, k := range keys {
		if err := s.Save(ctxFor(t), k, nil, token(first+i)); err != nil {
			t.Fatalf("saving %q: %v", k, err)
		}
	}
}

// loadsAll checks that s loads token(first+i) for each key.
func loadsAll(t *testing.T, s dropboxsign.Store, first int, keys ...string) {
	t.Helper()
	for i, k := range keys {
		got, err := s.Load(ctxFor(t), k)
		if err != nil || !same(got, token(first+i)) {
			t.Errorf("Load(%q) = %+v, %v; want %+v", k, got, err, token(first+i))
		}
	}
}

func census(t *testing.T, s dropboxsign.SealInspector) dropboxsign.CensusReport {
	t.Helper()
	r, err := dropboxsign.Census(ctxFor(t), s)
	if err != nil {
		t.Fatalf("Census: %v", err)
	}
	return r
}

func reseal(t *testing.T, s dropboxsign.SealInspector, opts dropboxsign.ResealOptions) dropboxsign.ResealProgress {
	t.Helper()
	if opts.PerSecond == 0 {
		opts.PerSecond = 1e6
	}
	p, err := dropboxsign.Reseal(ctxFor(t), s, opts)
	if err != nil {
		t.Fatalf("Reseal: %v (progress %+v)", err, p)
	}
	return p
}

// testSealsByKey: InspectSeals tells plain tokens, tokens under an older
// key, under the first key, and under a key the store does not hold, and
// Census counts them.
func testSealsByKey(t *testing.T, open func(*dropboxsign.Sealer) dropboxsign.SealInspector) {
	id1, id2, id3 := dropboxsign.KeyID(key1), dropboxsign.KeyID(key2), dropboxsign.KeyID(key3)
	saveAll(t, open(nil), 0, "plain")
	saveAll(t, open(sealer(t, key1)), 1, "old-1", "old-2")
	saveAll(t, open(sealer(t, key3)), 3, "foreign")
	s := open(sealer(t, key2, key1))
	saveAll(t, s, 4, "new")
	if err := s.Save(ctxFor(t), "gone", nil, token(5)); err != nil {
		t.Fatal(err)
	}
	if err := s.Disconnect(ctxFor(t), "gone"); err != nil {
		t.Fatal(err)
	}
	type want struct {
		plain, current bool
		keyID          string
		missing        bool
	}
	wants := map[string]want{
		"foreign": {keyID: id3, missing: true},
		"new":     {keyID: id2, current: true},
		"old-1":   {keyID: id1},
		"old-2":   {keyID: id1},
		"plain":   {plain: true},
	}
	all := inspectAll(t, s, "", 2)
	if got := sealKeys(all); !slices.Equal(got, slices.Sorted(maps.Keys(wants))) {
		t.Fatalf("listed %q, want %q", got, slices.Sorted(maps.Keys(wants)))
	}
	for _, r := range all {
		w := wants[r.Key]
		if r.Seal.Plain != w.plain || r.Seal.Current != w.current || r.Seal.KeyID != w.keyID {
			t.Errorf("%q: %+v; want Plain %v, Current %v, KeyID %q", r.Key, r.Seal, w.plain, w.current, w.keyID)
		}
		var missing *dropboxsign.MissingKeyError
		switch {
		case !w.missing && r.Seal.Err != nil:
			t.Errorf("%q: %v; want it to open", r.Key, r.Seal.Err)
		case w.missing && !errors.As(r.Seal.Err, &missing):
			t.Errorf("%q: Err = %v; want a *MissingKeyError", r.Key, r.Seal.Err)
		case w.missing && (missing.KeyID != w.keyID || missing.Retired):
			t.Errorf("%q: %+v; want KeyID %s, not retired", r.Key, missing, w.keyID)
		}
		if r.Seal.Err != nil && strings.Contains(r.Seal.Err.Error(), token(3).RefreshToken) {
			t.Errorf("%q: the error shows the token: %v", r.Key, r.Seal.Err)
		}
	}
	checkSample(t, s)
	got := census(t, s)
	if got.Tokens != 5 || got.Plain != 1 || got.Current != 1 ||
		!maps.Equal(got.ByKey, map[string]int{id1: 2, id2: 1, id3: 1}) || !maps.Equal(got.Unopenable, map[string]int{id3: 1}) {
		t.Errorf("Census = %+v; want 5 tokens, 1 plain, 1 current, by key {%s: 2, %s: 1, %s: 1}, unopenable {%s: 1}", got, id1, id2, id3, id3)
	}
	// A store told that key1 was retired reports its tokens as such.
	for _, r := range inspectAll(t, open(sealer(t, key2).Retired(id1)), "", 10) {
		var missing *dropboxsign.MissingKeyError
		if strings.HasPrefix(r.Key, "old-") && (!errors.As(r.Seal.Err, &missing) || !missing.Retired || missing.KeyID != id1) {
			t.Errorf("%q, under a retired key: %v; want a *MissingKeyError, Retired, KeyID %s", r.Key, r.Seal.Err, id1)
		}
	}
}

// testResealMoves: a re-seal writes every token that opens under the first
// key (plain ones too), leaves those it cannot open, and then a store
// without the old key loads every token.
func testResealMoves(t *testing.T, open func(*dropboxsign.Sealer) dropboxsign.SealInspector) {
	id1, id2, id3 := dropboxsign.KeyID(key1), dropboxsign.KeyID(key2), dropboxsign.KeyID(key3)
	olds := []string{"r-1", "r-2", "r-3"}
	saveAll(t, open(sealer(t, key1)), 0, olds...)
	saveAll(t, open(nil), 3, "r-plain")
	saveAll(t, open(sealer(t, key3)), 4, "r-foreign")
	s := open(sealer(t, key2, key1))
	saveAll(t, s, 5, "r-new")
	var reports []dropboxsign.ResealProgress
	p := reseal(t, s, dropboxsign.ResealOptions{Progress: func(p dropboxsign.ResealProgress) { reports = append(reports, p) }})
	want := dropboxsign.ResealProgress{Visited: 6, Resealed: 4, Unopenable: 1, Last: "r-plain"}
	if p != want {
		t.Errorf("Reseal = %+v, want %+v", p, want)
	}
	if len(reports) == 0 || reports[len(reports)-1] != p {
		t.Errorf("Progress saw %+v; want the end, %+v, last", reports, p)
	}
	got := census(t, s)
	if got.ByKey[id1] != 0 || got.Plain != 0 || got.ByKey[id2] != 5 || got.ByKey[id3] != 1 || got.Current != 5 {
		t.Errorf("Census after the re-seal: %+v; want none under %s, none plain, 5 under %s (all current), 1 under %s", got, id1, id2, id3)
	}
	only := open(sealer(t, key2))
	loadsAll(t, only, 0, olds...)
	loadsAll(t, only, 3, "r-plain")
	loadsAll(t, only, 5, "r-new")
	if again := reseal(t, s, dropboxsign.ResealOptions{}); again.Resealed != 0 || again.Visited != 6 {
		t.Errorf("a second re-seal: %+v; want nothing written", again)
	}
}

// testResealResumes: ResealOptions.After skips the keys up to it.
func testResealResumes(t *testing.T, open func(*dropboxsign.Sealer) dropboxsign.SealInspector) {
	id1, id2 := dropboxsign.KeyID(key1), dropboxsign.KeyID(key2)
	saveAll(t, open(sealer(t, key1)), 0, "s-1", "s-2", "s-3", "s-4")
	s := open(sealer(t, key2, key1))
	p := reseal(t, s, dropboxsign.ResealOptions{After: "s-2"})
	if want := (dropboxsign.ResealProgress{Visited: 2, Resealed: 2, Last: "s-4"}); p != want {
		t.Errorf("Reseal after s-2 = %+v, want %+v", p, want)
	}
	for _, r := range inspectAll(t, s, "", 10) {
		want := id2
		if r.Key <= "s-2" {
			want = id1
		}
		if r.Seal.KeyID != want {
			t.Errorf("%q is under %s, want %s", r.Key, r.Seal.KeyID, want)
		}
	}
}

// hooked is a store whose Load calls loaded with what it loaded, before it
// returns it: another replica's write, between a re-seal's read and its
// write.
type hooked struct {
	dropboxsign.SealInspector
	loaded func(key string, t *oauth2.Token)
}

func (h *hooked) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	t, err := h.SealInspector.Load(ctx, key)
	if err == nil && h.loaded != nil {
		h.loaded(key, t)
	}
	return t, err
}

// testResealChanged: a token refreshed between the re-seal's read and its
// write is left as the refresh wrote it, and counted as Changed.
func testResealChanged(t *testing.T, open func(*dropboxsign.Sealer) dropboxsign.SealInspector) {
	saveAll(t, open(sealer(t, key1)), 0, "c-1", "c-2", "c-3")
	s := open(sealer(t, key2, key1))
	h := &hooked{SealInspector: s, loaded: func(key string, tok *oauth2.Token) {
		if key == "c-2" {
			if err := s.Save(ctxFor(t), key, tok, token(10)); err != nil {
				t.Errorf("the refresh's save: %v", err)
			}
		}
	}}
	p := reseal(t, h, dropboxsign.ResealOptions{})
	if want := (dropboxsign.ResealProgress{Visited: 3, Resealed: 2, Changed: 1, Last: "c-3"}); p != want {
		t.Errorf("Reseal = %+v, want %+v", p, want)
	}
	loadsAll(t, s, 10, "c-2")
	loadsAll(t, open(sealer(t, key2)), 10, "c-2")
}

// testResealSpendingMark: a replica marks the stored token as being spent
// (the same tokens, another ExpiresIn) under the refresh lock; the re-seal
// must not write over the mark, as a save of what it read before the mark
// would (the tokens compare equal).
func testResealSpendingMark(t *testing.T, open func(*dropboxsign.Sealer) dropboxsign.SealInspector) {
	saveAll(t, open(sealer(t, key1)), 0, "sm")
	s := open(sealer(t, key2, key1))
	marked := token(0)
	marked.ExpiresIn = -(1900000000<<29 | 3600)
	done := make(chan error, 1)
	h := &hooked{SealInspector: s, loaded: func(key string, tok *oauth2.Token) {
		go func() {
			unlock, err := s.Lock(ctxFor(t), key)
			if err != nil {
				done <- err
				return
			}
			defer unlock()
			done <- s.Save(ctxFor(t), key, tok, marked)
		}()
		// A re-seal that holds the lock keeps the mark from being written
		// until it has saved; one that does not lets it be written now,
		// before its save: wait for that a while. (On a machine too slow
		// to mark within the wait, the mark comes after the save, and the
		// test proves nothing, but fails no correct store.)
		select {
		case err := <-done:
			done <- err
		case <-time.After(200 * time.Millisecond):
		}
	}}
	reseal(t, h, dropboxsign.ResealOptions{})
	if err := <-done; err != nil {
		t.Fatalf("the mark: %v", err)
	}
	got, err := s.Load(ctxFor(t), "sm")
	if err != nil || !same(got, marked) {
		t.Errorf("after the re-seal and the mark: %+v, %v; want the mark, %+v (the re-seal wrote over it)", got, err, marked)
	}
}

// testResealRate: at PerSecond r, a re-seal that writes n tokens takes at
// least (n-1)/r: a lower bound only, which a slow machine makes no less
// true. (Measured from before the call: the gaps between the saves
// themselves also hold each token's Lock and Load, which vary.)
func testResealRate(t *testing.T, open func(*dropboxsign.Sealer) dropboxsign.SealInspector) {
	const n, rate = 5, 10.0
	keys := []string{"p-1", "p-2", "p-3", "p-4", "p-5"}
	saveAll(t, open(sealer(t, key1)), 0, keys...)
	s := open(sealer(t, key2, key1))
	var saves atomic.Int64
	counted := &savesAt{SealInspector: s, saved: func() { saves.Add(1) }}
	start := time.Now()
	p := reseal(t, counted, dropboxsign.ResealOptions{PerSecond: rate})
	took := time.Since(start)
	if p.Resealed != n || saves.Load() != n {
		t.Fatalf("Reseal = %+v, with %d saves; want %d", p, saves.Load(), n)
	}
	least := time.Duration(float64(n-1) / rate * float64(time.Second))
	if took < least {
		t.Errorf("%d saves at %v a second took %v, want at least %v", n, rate, took, least)
	}
}

// savesAt calls saved at each Save.
type savesAt struct {
	dropboxsign.SealInspector
	saved func()
}

func (s *savesAt) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	s.saved()
	return s.SealInspector.Save(ctx, key, prev, t)
}

// testResealOpenOnly: under an OpenOnly Sealer (turning encryption off, or
// the first step of turning it on), sealed tokens are current no more, and
// a re-seal writes them in plain JSON.
func testResealOpenOnly(t *testing.T, open func(*dropboxsign.Sealer) dropboxsign.SealInspector) {
	saveAll(t, open(sealer(t, key1)), 0, "o-1", "o-2")
	saveAll(t, open(nil), 2, "o-plain")
	s := open(sealer(t, key1).OpenOnly())
	for _, r := range inspectAll(t, s, "", 10) {
		if r.Seal.Current != r.Seal.Plain || r.Seal.Err != nil {
			t.Errorf("%q under OpenOnly: %+v; want plain ones current, sealed ones not", r.Key, r.Seal)
		}
	}
	if p := reseal(t, s, dropboxsign.ResealOptions{}); p.Resealed != 2 || p.Visited != 3 {
		t.Errorf("Reseal = %+v; want 2 written of 3", p)
	}
	if got := census(t, s); got.Plain != 3 || len(got.ByKey) != 0 || got.Current != 3 {
		t.Errorf("Census after: %+v; want 3 plain, all current", got)
	}
	loadsAll(t, open(nil), 0, "o-1", "o-2", "o-plain")
}
