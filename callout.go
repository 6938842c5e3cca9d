package dropboxsign

import (
	"context"
	"fmt"

	"golang.org/x/oauth2"
)

// This file calls out of the package, into a Store or a WithOnRefresh
// function: code that may ignore its context, hang in a system call (a
// dead network file system), panic or exit its goroutine. None of that may
// hang a run, whose outcome callers wait for, nor crash the process.

// callOut runs fn on a goroutine of its own and waits for it until ctx
// ends. A panic or runtime.Goexit in fn becomes an error. If ctx ends first,
// the call is abandoned with an error: its goroutine finishes by itself, and
// then late, if given, undoes what fn did too late to be of use (releases a
// lock it took, say).
func callOut[T any](ctx context.Context, what string, fn func() (T, error), late func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		returned := false
		defer func() {
			if !returned {
				if p := recover(); p != nil {
					r.err = fmt.Errorf("dropboxsign: %s panicked: %v", what, p)
				} else {
					r.err = fmt.Errorf("dropboxsign: %s exited without returning", what)
				}
			}
			done <- r
		}()
		r.v, r.err = fn()
		returned = true
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
	}
	select {
	case r := <-done: // it returned just as time ran out: take it
		return r.v, r.err
	default:
	}
	if late != nil {
		go func() {
			if r := <-done; r.err == nil {
				late(r.v)
			}
		}()
	}
	var zero T
	return zero, fmt.Errorf("dropboxsign: %s did not return within its deadline (does it ignore its context?): %w", what, ctx.Err())
}

// The source's store calls, each bounded by ctx.

func (s *TokenSource) storeLoad(ctx context.Context) (*oauth2.Token, error) {
	return callOut(ctx, "Store.Load", func() (*oauth2.Token, error) { return s.cfg.opts.store.Load(ctx, s.key) }, nil)
}

func (s *TokenSource) storeSave(ctx context.Context, prev, t *oauth2.Token) error {
	_, err := callOut(ctx, "Store.Save", func() (struct{}, error) {
		return struct{}{}, s.cfg.opts.store.Save(ctx, s.key, prev, t)
	}, nil)
	return err
}

func (s *TokenSource) storeLock(ctx context.Context) (func(), error) {
	unlock, err := callOut(ctx, "Store.Lock", func() (func(), error) { return s.cfg.opts.store.Lock(ctx, s.key) },
		func(unlock func()) {
			if unlock != nil {
				unlock()
			}
		})
	if err == nil && unlock == nil {
		unlock = func() {} // a store that returned no unlock function
	}
	return unlock, err
}

func (s *TokenSource) storeReplace(ctx context.Context, t *oauth2.Token) error {
	_, err := callOut(ctx, "Store.Replace", func() (struct{}, error) {
		return struct{}{}, s.cfg.opts.store.Replace(ctx, s.key, t)
	}, nil)
	return err
}

func (s *TokenSource) storeMarkRefused(ctx context.Context, refused *oauth2.Token) error {
	_, err := callOut(ctx, "Store.MarkRefused", func() (struct{}, error) {
		return struct{}{}, s.cfg.opts.store.MarkRefused(ctx, s.key, refused)
	}, nil)
	return err
}

func (s *TokenSource) callOnRefresh(ctx context.Context, tok *oauth2.Token) error {
	ctx = context.WithValue(ctx, accountKey{}, s.key)
	_, err := callOut(ctx, "the WithOnRefresh function", func() (struct{}, error) {
		return struct{}{}, s.cfg.opts.onRefresh(ctx, tok)
	}, nil)
	return err
}

type accountKey struct{}

// AccountFromContext returns the account (the store key) whose token a
// [WithOnRefresh] function is given, from the context it is given: with
// [Accounts], one function serves every account.
func AccountFromContext(ctx context.Context) string {
	key, _ := ctx.Value(accountKey{}).(string)
	return key
}
