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
//   - the keys (Misconfigured): on a store that is a [SealInspector], the
//     first 100 stored tokens in key order, which the store's Sealer must
//     open; an error names the IDs of keys it lacks, never a key.
//
// It makes no token request, changes nothing, and costs one store read and,
// on a SealInspector, one page of the listing; bound it with ctx. A full
// count of every token is [Census].
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

// unopenable summarizes the tokens of page the store's Sealer cannot open:
// how many, under which key IDs; nil when it opens them all.
func unopenable(page []StoredSeal) error {
	byKey := map[string]int{}
	var missing error
	n := 0
	for _, s := range page {
		if s.Seal.Err == nil {
			continue
		}
		n++
		byKey[s.Seal.KeyID]++
		var mk *MissingKeyError
		if missing == nil && errors.As(s.Seal.Err, &mk) {
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
		name := id
		if name == "" {
			name = "plain or unreadable"
		}
		parts = append(parts, fmt.Sprintf("%d under key %s", byKey[id], name))
	}
	return &unopenableError{msg: fmt.Sprintf("dropboxsign: %d of the %d stored tokens checked cannot be opened with the configured keys (%s)", n, len(page), strings.Join(parts, ", ")), cause: missing}
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
