package dropboxsign

import (
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// This file makes each grant spent once per process, whatever number of
// sources hold it. A refresh token, or an authorization code, may be
// presented once: Dropbox Sign rotates refresh tokens and refuses a spent
// one, so two sources made from one stored token (a client per request,
// as much x/oauth2 code builds them) would spend it twice, and the second
// would be told the user must reconnect. flight.go shares one run among
// the callers of one source; here, sources that present the same grant at
// the same time share one token request (singleflight), and a source that
// presents a grant this process spent less than grantMemory ago gets the
// token that request brought, without a request of its own.
//
// A grant is known by a SHA-256 of the token URL, the client ID and the
// refresh token (or the code and its state): no secret is a key. What is
// remembered is the token a request brought, which is a secret: it is kept
// for grantMemory, as long as the source that asked holds it at the least,
// in at most grantMemoryEntries entries. Failures are shared by the
// requests in flight, never remembered. With a store, its lock and
// compare-and-swap stay the authority: a remembered token is handed to a
// source that then saves it as it would its own (and finds it stored, if
// the first source stored it).

// grantMemory is how long the token a spent grant brought is remembered.
const grantMemory = time.Minute

// grantMemoryEntries bounds the memory: beyond it, the oldest entries go
// first. A token takes about 300 bytes here (see TestGrantMemoryIsBounded).
const grantMemoryEntries = 4096

type grantKey [sha256.Size]byte

func newGrantKey(op, url, clientID string, secrets ...string) grantKey {
	h := sha256.New()
	for _, s := range append([]string{"dropboxsign-grant", op, url, clientID}, secrets...) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var k grantKey
	h.Sum(k[:0])
	return k
}

// grantTable is the process's table of grants: in flight, and spent.
type grantTable struct {
	flights singleflight.Group

	mu    sync.Mutex
	spent map[grantKey]spentGrant
	order []grantKey // insertion order: every entry lives grantMemory, so the oldest expires first
}

type spentGrant struct {
	tok *oauth2.Token
	at  time.Time
}

var grants = newGrantTable()

func newGrantTable() *grantTable { return &grantTable{spent: map[grantKey]spentGrant{}} }

// recall returns the token the grant brought if it was spent less than
// grantMemory ago, or nil.
func (g *grantTable) recall(k grantKey, now time.Time) *oauth2.Token {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.spent[k]
	if !ok || now.Sub(e.at) >= grantMemory || now.Before(e.at.Add(-grantMemory)) {
		return nil
	}
	return e.tok
}

// remember records the token the grant brought.
func (g *grantTable) remember(k grantKey, tok *oauth2.Token, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire(now)
	for len(g.order) >= grantMemoryEntries {
		delete(g.spent, g.order[0])
		g.order = g.order[1:]
	}
	if _, ok := g.spent[k]; !ok {
		g.order = append(g.order, k)
	}
	g.spent[k] = spentGrant{tok: tok, at: now}
}

// expire drops the entries older than grantMemory; the caller holds g.mu.
func (g *grantTable) expire(now time.Time) {
	n := 0
	for n < len(g.order) {
		if e, ok := g.spent[g.order[n]]; ok && now.Sub(e.at) < grantMemory {
			break
		}
		delete(g.spent, g.order[n])
		n++
	}
	if n > 0 {
		// A fresh slice, not a resliced one: the dropped keys' array would
		// otherwise stay reachable for good.
		g.order = append(make([]grantKey, 0, len(g.order)-n+16), g.order[n:]...)
	}
}

// len returns the number of grants remembered, for tests.
func (g *grantTable) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.spent)
}

// spend presents the grant k with request, once for the whole process: a
// call for a grant spent moments ago gets the token it brought; calls for
// one in flight share its request, which runs with the first caller's
// context values but no caller's cancellation (each caller's ctx bounds
// only its own wait), bounded by timeout. requested reports whether this
// call's own request brought the outcome. The token returned is a copy of
// the caller's own.
func (g *grantTable) spend(ctx context.Context, k grantKey, timeout time.Duration,
	request func(context.Context) (*oauth2.Token, error)) (*oauth2.Token, bool, error) {
	if ctx == nil {
		ctx = context.Background() // Exchange(nil, …) worked before it shared requests
	}
	if tok := g.recall(k, grantClock()); tok != nil {
		return copyToken(tok), false, nil
	}
	reqCtx := context.WithoutCancel(ctx)
	var mine atomic.Bool // set by this call's function, if it is the one that runs
	ch := g.flights.DoChan(string(k[:]), func() (any, error) {
		if tok := g.recall(k, grantClock()); tok != nil { // spent while this call was starting
			return tok, nil
		}
		mine.Store(true)
		rctx, cancel := context.WithTimeout(reqCtx, timeout)
		defer cancel()
		if d, ok := ctx.Deadline(); ok {
			// The first caller's own deadline still bounds the request, as
			// a request made without sharing would be.
			var cancelD context.CancelFunc
			rctx, cancelD = context.WithDeadline(rctx, d)
			defer cancelD()
		}
		tok, err := request(rctx)
		if err == nil {
			g.remember(k, tok, grantClock())
		}
		return tok, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, mine.Load(), r.Err
		}
		return copyToken(r.Val.(*oauth2.Token)), mine.Load(), nil
	case <-ctx.Done():
		return nil, false, context.Cause(ctx)
	}
}

// copyToken returns a copy of t that its receiver may change: the extras
// are shared, read-only.
func copyToken(t *oauth2.Token) *oauth2.Token {
	c := *t
	return &c
}

// grantClock is the memory's clock: the process's, whoever asks (a test
// may replace it).
var grantClock = time.Now
