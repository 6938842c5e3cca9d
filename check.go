package dropboxsign

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// checkSample is how many stored tokens [Accounts.Check] inspects.
const checkSample = 100

// Check tells whether this Accounts can work, for a readiness probe at
// start-up (and after): it returns nil, or every problem it found, joined
// ([errors.Join]), each classed for who must act:
//   - the configuration (Misconfigured): a client ID, a client secret, a
//     token URL it can use (https, or http on loopback);
//   - the store (Temporary): one Load of a key no account has, which must
//     answer "not found";
//   - the keys (Misconfigured): on a store that is a [SealInspector], up to
//     100 stored tokens (a [SealSampler]'s sample, else the first 100 in
//     key order) must not be sealed under a key the store's Sealer lacks
//     (a [*MissingKeyError]): a configuration that differs from the
//     fleet's. An error names the key IDs and counts, never a key. Other
//     tokens that do not open (tampered with, copied under another
//     account, not a token) are the data's problem, not the replica's:
//     they fail their own calls, and do not fail Check.
//
// It makes no token request and changes nothing. It costs one store read
// and, on a SealSampler, one bounded sample (every store of this
// repository: FileStore reads its directory's names and 100 files; Redis,
// at most 3 SCAN steps per master; PostgreSQL, one query that reads 100
// rows, no sort); on another
// SealInspector, one page of InspectSeals. Bound it with ctx. A full count
// of every token is [Census].
func (a *Accounts) Check(ctx context.Context) error {
	if !a.cfg.enter() {
		return ErrShutdown
	}
	defer a.cfg.leave()
	var errs []error
	if a.cfg.configErr != nil {
		errs = append(errs, a.cfg.configErr)
	} else if strings.TrimSpace(a.cfg.client.clientSecret) == "" {
		errs = append(errs, errNoClientSecret)
	}
	store := a.cfg.opts.store
	if store == nil {
		return errors.Join(errs...) // errNoStore is the configuration's error
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.opts.timeout)
	defer cancel()
	_, err := callOut(ctx, "Store.Load", func() (any, error) {
		_, err := store.Load(ctx, checkProbeKey)
		return nil, err
	}, nil)
	if !errors.Is(err, ErrNotFound) {
		if err == nil {
			err = errors.New("Store.Load returned a token for a key no account has")
		}
		return errors.Join(append(errs, &checkStoreError{err: err})...)
	}
	si, ok := store.(SealInspector)
	if !ok {
		return errors.Join(errs...)
	}
	page, err := callOut(ctx, "Store.InspectSeals", func() ([]StoredSeal, error) {
		if ss, ok := si.(SealSampler); ok {
			return ss.SampleSeals(ctx, checkSample)
		}
		return si.InspectSeals(ctx, "", checkSample)
	}, nil)
	if err != nil {
		return errors.Join(append(errs, &checkStoreError{err: err})...)
	}
	if err := unopenable(page); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkProbeKey is the key Check loads: a valid key (every store takes
// it) that no app gives an account, starting with U+FFFF, a noncharacter;
// so the store must answer "not found".
const checkProbeKey = "\uffffdropboxsign/readiness-probe"

// checkStoreError is a store that did not answer Check as it should.
type checkStoreError struct{ err error }

func (e *checkStoreError) Error() string {
	return "dropboxsign: the store is not ready: " + e.err.Error()
}
func (e *checkStoreError) Unwrap() error { return e.err }

// unopenable summarizes the tokens of page sealed under keys the store's
// Sealer lacks: how many, under which key IDs; nil when there are none.
func unopenable(page []StoredSeal) error {
	byKey := map[string]int{}
	var missing error
	n := 0
	for _, s := range page {
		var mk *MissingKeyError
		if !errors.As(s.Seal.Err, &mk) {
			continue // opens, or the data's problem: see Check
		}
		n++
		byKey[s.Seal.KeyID]++
		if missing == nil {
			missing = mk
		}
	}
	if n == 0 {
		return nil
	}
	var parts []string
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range byKey {
			if !yield(id) {
				return
			}
		}
	}) {
		parts = append(parts, fmt.Sprintf("%d under key %s", byKey[id], id))
	}
	return &unopenableError{msg: fmt.Sprintf("dropboxsign: %d of the %d stored tokens checked are sealed with encryption keys not configured here (%s): this replica's keys differ from the fleet's (see docs/operating.md, the key runbook)", n, len(page), strings.Join(parts, ", ")), cause: missing}
}

// unopenableError is Misconfigured: the keys are the operator's to fix.
type unopenableError struct {
	msg   string
	cause error // the first *MissingKeyError, if any
}

func (e *unopenableError) Error() string { return e.msg }
func (e *unopenableError) Unwrap() error { return e.cause }
func (e *unopenableError) Is(target error) bool {
	return target == errBadConfig
}
