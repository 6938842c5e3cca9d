package dropboxsign

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"golang.org/x/oauth2"
)

// This file lets a source report a token that a Sealer with keys read in
// plain JSON: stores have no logger, and a Store's Load returns a bare
// *oauth2.Token. The Sealer remembers the tokens it opened from plain JSON,
// weakly (the token's identity, not a copy, and only while the token
// lives), and the source that loads one emits EventPlaintextToken, once in
// its lifetime. Tokens and sources are not changed, nor kept alive.

var plaintext struct {
	live   atomic.Int64 // tokens in tokens: with none, loads pay nothing
	tokens sync.Map     // weak.Pointer[oauth2.Token] → struct{}
	noted  sync.Map     // weak.Pointer[TokenSource] → struct{}: sources that reported one
}

// markPlaintext remembers t as read in plain JSON by a Sealer with keys.
func markPlaintext(t *oauth2.Token) {
	wp := weak.Make(t)
	if _, loaded := plaintext.tokens.LoadOrStore(wp, struct{}{}); loaded {
		return
	}
	plaintext.live.Add(1)
	runtime.AddCleanup(t, func(wp weak.Pointer[oauth2.Token]) {
		plaintext.tokens.Delete(wp)
		plaintext.live.Add(-1)
	}, wp)
}

// wasPlaintext reports whether t is a token a Sealer with keys read in
// plain JSON (the very value it returned, not a copy).
func wasPlaintext(t *oauth2.Token) bool {
	if t == nil || plaintext.live.Load() == 0 {
		return false
	}
	_, ok := plaintext.tokens.Load(weak.Make(t))
	return ok
}

// notePlaintext emits EventPlaintextToken if t, just loaded from the store,
// is a token that the store's Sealer, which has keys, read in plain JSON:
// once per source, so that a source that loads it again (each refresh reads
// the store twice) adds nothing. The memory this takes is one entry per
// source that reported, dropped with the source; an Accounts that lets an
// idle account go and loads it again makes a new source, which reports
// again if the token is still in plain JSON.
func (s *TokenSource) notePlaintext(ctx context.Context, t *oauth2.Token) {
	if s.cfg.events == nil || !wasPlaintext(t) {
		return
	}
	wp := weak.Make(s)
	if _, loaded := plaintext.noted.LoadOrStore(wp, struct{}{}); loaded {
		return
	}
	runtime.AddCleanup(s, func(wp weak.Pointer[TokenSource]) { plaintext.noted.Delete(wp) }, wp)
	s.emit(context.WithoutCancel(ctx), Event{Kind: EventPlaintextToken, Op: "load"})
}
