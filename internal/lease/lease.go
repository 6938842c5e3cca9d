// Package lease is the refresh lock of the stores whose lock is a lease in
// a shared server (redisstore, pgstore): taken by polling, renewed while
// held, released in the background. Each store supplies the three
// operations on its server; this package supplies the timing, once.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Ops are one lease's operations on the store's server, for the owner
// Take passes them. take reports whether the lease was free (or lapsed)
// and is now the owner's; renew whether the owner still held it and
// extended it by ttl; release gives it up if the owner holds it.
type Ops struct {
	Take    func(ctx context.Context, owner string) (bool, error)
	Renew   func(ctx context.Context, owner string) (bool, error)
	Release func(ctx context.Context, owner string)
}

// Take takes the lease for a random owner, trying again (5 ms, doubling to
// 100 ms) until it is free or ctx ends, and renews it every ttl/3 until
// unlock is called. If a renewal finds the lease gone (the server lost it,
// or this holder was cut off past its ttl), renewing stops: the store's
// compare-and-swap saves still protect the stored token. unlock returns at
// once and may be called more than once; the release runs in the
// background (if it fails, the lease lapses), and its goroutine ends
// within ttl.
func Take(ctx context.Context, ttl time.Duration, ops Ops) (unlock func(), err error) {
	owner := randomOwner()
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		ok, err := ops.Take(ctx, owner)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}

	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		tick := time.NewTicker(ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				rctx, cancel := context.WithTimeout(context.Background(), ttl/3)
				held, err := ops.Renew(rctx, owner)
				cancel()
				if err == nil && !held {
					return // the lease is gone; nothing left to renew
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			// Release without holding up the caller, who may have a token
			// to hand out.
			go func() {
				<-renewed
				rctx, cancel := context.WithTimeout(context.Background(), ttl)
				defer cancel()
				ops.Release(rctx, owner)
			}()
		})
	}, nil
}

func randomOwner() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
