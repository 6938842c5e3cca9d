package dropboxsign

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// A SealInspector is a [Store] that can tell how each stored token is
// sealed without handing tokens out: [Census] and [Reseal] need one. Every
// store of this repository is one.
type SealInspector interface {
	Store
	// InspectSeals returns how the tokens of up to limit accounts are
	// stored (see [Sealer.Inspect]), for the accounts whose keys sort
	// after after (bytewise), in key order; an empty list when there are
	// no more; an error for a limit below 1. Records without token
	// material (refusal and disconnection marks) are left out; a record
	// the store cannot read as a token or a mark is listed, with Seal.Err
	// saying why, so that a census counts it rather than stops at it.
	// (The empty key, which no account may have, sorts after nothing and
	// is never listed.)
	InspectSeals(ctx context.Context, after string, limit int) ([]StoredSeal, error)
}

// A SealSampler is a [SealInspector] that can also tell how a few of its
// tokens are sealed at a small, bounded cost, in no particular order:
// [Accounts.Check] asks it rather than for a page of InspectSeals, which
// walks the whole store where keys have no order to seek in (Redis, a
// PostgreSQL column whose collation is not bytewise).
type SealSampler interface {
	SealInspector
	// SampleSeals returns how at most n stored tokens are sealed (marks
	// left out), any n it finds first: possibly fewer, even when more
	// are stored.
	SampleSeals(ctx context.Context, n int) ([]StoredSeal, error)
}

// StoredSeal is how one account's token is stored.
type StoredSeal struct {
	Key  string
	Seal Seal
}

// CensusReport counts the tokens of a store by how they are sealed.
type CensusReport struct {
	// Tokens counts the records that hold a token, or that the store
	// cannot read as a token or a mark (these count in Unopenable only);
	// marks are not counted.
	Tokens int
	Plain  int            // in plain JSON
	ByKey  map[string]int // key ID → tokens sealed under that key
	// Current counts the tokens stored as the store's Sealer now writes
	// (under its first key, or plain for a store without keys): the others
	// are what a [Reseal] would write again.
	Current int
	// Unopenable counts the tokens the store's Sealer cannot open, by key
	// ID ("" for plain tokens a Sealer refuses, or records that are not
	// tokens): each would fail at its next use.
	Unopenable map[string]int
}

// Census reads how every token in store is sealed, a page at a time, and
// counts them. It reads no token out and makes no token request.
func Census(ctx context.Context, store SealInspector) (CensusReport, error) {
	r := CensusReport{ByKey: map[string]int{}, Unopenable: map[string]int{}}
	after := ""
	for {
		page, err := store.InspectSeals(ctx, after, censusPage)
		if err != nil {
			return r, err
		}
		if len(page) == 0 {
			return r, nil
		}
		for _, s := range page {
			// Each key after the one before: a store that lists a key twice,
			// or goes back, would have the census count a token twice, or
			// never end.
			if s.Key <= after {
				return r, fmt.Errorf("dropboxsign: census: the store listed keys out of order (%q after %q)", s.Key, after)
			}
			after = s.Key
			r.Tokens++
			switch {
			case s.Seal.Plain:
				r.Plain++
			case s.Seal.KeyID != "":
				r.ByKey[s.Seal.KeyID]++
			}
			if s.Seal.Current {
				r.Current++
			}
			if s.Seal.Err != nil {
				r.Unopenable[s.Seal.KeyID]++
			}
		}
	}
}

// censusPage is how many records a census or re-seal asks for at once.
const censusPage = 500

// ResealOptions tune [Reseal].
type ResealOptions struct {
	// After resumes a re-seal: only accounts whose keys sort after it are
	// visited (a [ResealProgress]'s Last from an interrupted run).
	After string
	// PerSecond bounds the re-seal's saves per second (default 50), so
	// that it does not crowd the store out for the fleet.
	PerSecond float64
	// Progress, if set, is called after each page of accounts, and at the
	// end, with the counts so far.
	Progress func(ResealProgress)
}

// ResealProgress counts what a [Reseal] did so far.
type ResealProgress struct {
	Visited  int // tokens looked at
	Resealed int // written again under the store's first key
	// Changed counts the tokens that changed between the re-seal's read
	// and its write (a refresh, a login, a disconnection): left as they
	// are, since whoever changed them wrote them with the store's Sealer.
	Changed int
	// Unopenable counts the tokens the store's Sealer cannot open (see
	// [CensusReport]): a re-seal cannot help them.
	Unopenable int
	// Last is the key of the last account visited: pass it as
	// ResealOptions.After to resume.
	Last string
}

// Reseal writes every token of store that is not stored as its Sealer now
// writes (see [Seal].Current) again, through the store, so that it is
// sealed under the Sealer's first key (or, for a store whose Sealer is
// [Sealer.OpenOnly], written in plain JSON): after a key rotation, once
// every replica seals with the new key, a Reseal empties the old key, and a
// [Census] shows when it may be removed.
//
// It runs while the fleet runs: each token is read with Load and written
// with a compare-and-swap Save over itself, under the key's refresh lock
// (Store.Lock, held for the two calls only), so a token refreshed,
// replaced or disconnected meanwhile is left to that change (counted as
// Changed), no refresh token is ever written back over a newer one, and
// no replica's mark of a refresh token it is spending is written over. It
// makes no token request. It stops at ctx's end, or at the first store
// error, with the progress so far: resume with ResealOptions.After. A
// PerSecond that is NaN is an error.
func Reseal(ctx context.Context, store SealInspector, opts ResealOptions) (ResealProgress, error) {
	p := ResealProgress{Last: opts.After}
	rate := opts.PerSecond
	switch {
	case math.IsNaN(rate):
		return p, errors.New("dropboxsign: reseal: PerSecond is NaN, want a number of saves per second (0: the default, 50)")
	case rate <= 0:
		rate = 50
	}
	// At most about 31 years: below about 1e-10 a second, the division
	// overflows a Duration, which would turn the bound off.
	interval := time.Duration(min(float64(time.Second)/rate, 1e9*float64(time.Second)))
	var next time.Time
	report := func() {
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}
	defer report()
	for {
		page, err := store.InspectSeals(ctx, p.Last, censusPage)
		if err != nil {
			return p, err
		}
		if len(page) == 0 {
			return p, nil
		}
		for _, s := range page {
			if err := ctx.Err(); err != nil {
				return p, err
			}
			if s.Key <= p.Last {
				return p, fmt.Errorf("dropboxsign: reseal: the store listed keys out of order (%q after %q)", s.Key, p.Last)
			}
			switch {
			case s.Seal.Err != nil:
				p.Unopenable++
			case s.Seal.Current:
			default:
				if wait := time.Until(next); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-ctx.Done():
						t.Stop()
						return p, ctx.Err()
					case <-t.C:
					}
				}
				next = time.Now().Add(interval)
				changed, err := resealOne(ctx, store, s.Key)
				if err != nil {
					return p, fmt.Errorf("dropboxsign: reseal of account %q: %w", s.Key, err)
				}
				if changed {
					p.Changed++
				} else {
					p.Resealed++
				}
			}
			p.Visited++
			p.Last = s.Key
		}
		report()
	}
}

// resealOne writes key's token over itself; changed reports a token that
// changed (or went) between the read and the write.
//
// It holds key's refresh lock from the read to the write. Save compares
// the access and refresh tokens only, so without the lock a replica's
// spending mark (spending.go: the same tokens, a different ExpiresIn),
// written between the read and the write, would pass the comparison and
// be written over: had that replica then failed to store what it got, the
// next replica would present the spent refresh token.
func resealOne(ctx context.Context, store Store, key string) (changed bool, err error) {
	unlock, err := store.Lock(ctx, key)
	if err != nil {
		return false, err
	}
	defer unlock()
	tok, err := store.Load(ctx, key)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDisconnected) || isRefused(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	err = store.Save(ctx, key, tok, tok)
	if errors.Is(err, ErrConflict) {
		return true, nil
	}
	return false, err
}

func isRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}

// KeyCounts returns the census's key IDs in a stable order: the most
// tokens first, then by ID.
func (r CensusReport) KeyCounts() []string {
	ids := slices.Collect(maps.Keys(r.ByKey))
	slices.SortFunc(ids, func(a, b string) int {
		if r.ByKey[a] != r.ByKey[b] {
			return r.ByKey[b] - r.ByKey[a]
		}
		if a < b {
			return -1
		}
		return 1
	})
	return ids
}
