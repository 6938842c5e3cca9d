package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/auth"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// The four ways to hold a token per account that the benchmarks compare.
// Each is set up as a careful user of its library would, loads every
// account from the same store, and answers the same question: the access
// token of this account, valid now.

// holder holds a token per account.
type holder interface {
	// accessToken returns the account's access token, valid now.
	accessToken(ctx context.Context, account string) (string, error)
}

// expiryWindow is how long before expiry a holder replaces a token:
// dropboxsign's default, given to Google's and AWS's caches too. The naive
// x/oauth2 map keeps x/oauth2's default (10 s), as naive code does.
const expiryWindow = dropboxsign.DefaultExpiryWindow

// benchConfig is the client configuration of every holder: the holders
// never refresh here (the tokens are valid), so it names no live server.
func benchConfig() *oauth2.Config {
	return &oauth2.Config{ClientID: "id", ClientSecret: "secret", Endpoint: dropboxsign.Endpoint}
}

// dropboxsignHolder is the package under test: an Accounts over the store.
type dropboxsignHolder struct{ a *dropboxsign.Accounts }

func newDropboxsign(ctx context.Context, store dropboxsign.Store, held int) *dropboxsignHolder {
	return &dropboxsignHolder{dropboxsign.NewAccounts(ctx, benchConfig(), store, dropboxsign.WithMaxAccounts(held))}
}

func (h *dropboxsignHolder) accessToken(ctx context.Context, account string) (string, error) {
	tok, err := h.a.TokenSource(account).TokenContext(ctx)
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// naiveHolder is what an app writes with x/oauth2 alone: a map of
// Config.TokenSource (an oauth2.ReuseTokenSource over x/oauth2's
// refresher) behind a RWMutex, filled from the store on first use.
type naiveHolder struct {
	ctx  context.Context
	conf *oauth2.Config
	load func(string) (*oauth2.Token, error)
	mu   sync.RWMutex
	srcs map[string]oauth2.TokenSource
}

func newNaive(ctx context.Context, load func(string) (*oauth2.Token, error)) *naiveHolder {
	return &naiveHolder{ctx: ctx, conf: benchConfig(), load: load, srcs: map[string]oauth2.TokenSource{}}
}

func (h *naiveHolder) accessToken(_ context.Context, account string) (string, error) {
	h.mu.RLock()
	src := h.srcs[account]
	h.mu.RUnlock()
	if src == nil {
		tok, err := h.load(account)
		if err != nil {
			return "", err
		}
		h.mu.Lock()
		if src = h.srcs[account]; src == nil {
			src = h.conf.TokenSource(h.ctx, tok)
			h.srcs[account] = src
		}
		h.mu.Unlock()
	}
	tok, err := src.Token()
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// googleHolder is a map of cloud.google.com/go/auth cached token
// providers behind a RWMutex. The provider under each cache returns the
// account's token, as one that refreshes it would until it refreshes; it
// keeps the refresh token, which auth.Token has no field for.
type googleHolder struct {
	load  func(string) (*oauth2.Token, error)
	mu    sync.RWMutex
	cache map[string]auth.TokenProvider
}

type googleProvider struct {
	tok          *auth.Token
	refreshToken string // what a real provider would refresh with
}

func (p *googleProvider) Token(context.Context) (*auth.Token, error) { return p.tok, nil }

func newGoogle(load func(string) (*oauth2.Token, error)) *googleHolder {
	return &googleHolder{load: load, cache: map[string]auth.TokenProvider{}}
}

func (h *googleHolder) accessToken(ctx context.Context, account string) (string, error) {
	h.mu.RLock()
	tp := h.cache[account]
	h.mu.RUnlock()
	if tp == nil {
		tok, err := h.load(account)
		if err != nil {
			return "", err
		}
		h.mu.Lock()
		if tp = h.cache[account]; tp == nil {
			p := &googleProvider{tok: &auth.Token{Value: tok.AccessToken, Type: tok.TokenType, Expiry: tok.Expiry}, refreshToken: tok.RefreshToken}
			// Refreshed in the background once in the window, as
			// dropboxsign does (asynchronous refresh is the default).
			tp = auth.NewCachedTokenProvider(p, &auth.CachedTokenProviderOptions{ExpireEarly: expiryWindow})
			h.cache[account] = tp
		}
		h.mu.Unlock()
	}
	tok, err := tp.Token(ctx)
	if err != nil {
		return "", err
	}
	return tok.Value, nil
}

// awsHolder is a map of aws-sdk-go-v2 CredentialsCaches behind a RWMutex.
// The OAuth token is carried as credentials: the access token as the key
// ID, the refresh token as the secret (both must be set for the cache to
// keep them), its expiry as theirs.
type awsHolder struct {
	load  func(string) (*oauth2.Token, error)
	mu    sync.RWMutex
	cache map[string]*aws.CredentialsCache
}

type awsProvider struct{ creds aws.Credentials }

func (p *awsProvider) Retrieve(context.Context) (aws.Credentials, error) { return p.creds, nil }

func newAWS(load func(string) (*oauth2.Token, error)) *awsHolder {
	return &awsHolder{load: load, cache: map[string]*aws.CredentialsCache{}}
}

func (h *awsHolder) accessToken(ctx context.Context, account string) (string, error) {
	h.mu.RLock()
	c := h.cache[account]
	h.mu.RUnlock()
	if c == nil {
		tok, err := h.load(account)
		if err != nil {
			return "", err
		}
		h.mu.Lock()
		if c = h.cache[account]; c == nil {
			p := &awsProvider{aws.Credentials{AccessKeyID: tok.AccessToken, SecretAccessKey: tok.RefreshToken, CanExpire: true, Expires: tok.Expiry}}
			// The cache retrieves anew once the (shortened) expiry has
			// passed; without jitter, as dropboxsign's window has none.
			c = aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = expiryWindow })
			h.cache[account] = c
		}
		h.mu.Unlock()
	}
	creds, err := c.Retrieve(ctx)
	if err != nil {
		return "", err
	}
	return creds.AccessKeyID, nil
}

// The accounts: keys and tokens, in an in-memory store.

// accountKey is account i's key: an app's own user ID.
func accountKey(i int) string { return fmt.Sprintf("user-%07d", i) }

// realisticToken is shaped like Dropbox Sign's (see memory_test.go in the
// core): 88 characters of base64 each for the access and refresh tokens.
func realisticToken(expiry time.Time) *oauth2.Token {
	a, r := make([]byte, 64), make([]byte, 64)
	rand.Read(a)
	rand.Read(r)
	return &oauth2.Token{AccessToken: base64.StdEncoding.EncodeToString(a), TokenType: "Bearer",
		RefreshToken: base64.StdEncoding.EncodeToString(r), Expiry: expiry, ExpiresIn: 3600}
}

// seedStore returns an in-memory store holding n accounts, keys 0 to n-1,
// with valid tokens, and the keys.
func seedStore(tb testing.TB, n int) (*dropboxsigntest.Store, []string) {
	tb.Helper()
	ctx := context.Background()
	store := dropboxsigntest.NewStore()
	keys := make([]string, n)
	expiry := time.Now().Add(time.Hour)
	for i := range keys {
		keys[i] = accountKey(i)
		if err := store.Save(ctx, keys[i], nil, realisticToken(expiry)); err != nil {
			tb.Fatal(err)
		}
	}
	return store, keys
}

// decoding is a Store whose loads return tokens with strings of their own,
// as a store that decodes what it reads does (files, Redis): the in-memory
// store would otherwise share its strings with every token it hands out,
// and the memory a held account costs would leave out its token.
type decoding struct{ dropboxsign.Store }

func (d decoding) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	t, err := d.Store.Load(ctx, key)
	if t != nil {
		t = &oauth2.Token{AccessToken: strings.Clone(t.AccessToken), TokenType: strings.Clone(t.TokenType),
			RefreshToken: strings.Clone(t.RefreshToken), Expiry: t.Expiry, ExpiresIn: t.ExpiresIn}
	}
	return t, err
}

// loader returns the competitors' load function: from store, decoded.
func loader(store dropboxsign.Store) func(string) (*oauth2.Token, error) {
	d := decoding{store}
	return func(key string) (*oauth2.Token, error) { return d.Load(context.Background(), key) }
}

// competitor is one way to hold the accounts, by name, made over store.
type competitor struct {
	name string
	make func(ctx context.Context, store dropboxsign.Store, held int) holder
}

var competitors = []competitor{
	{"dropboxsign", func(ctx context.Context, s dropboxsign.Store, held int) holder {
		return newDropboxsign(ctx, decoding{s}, held)
	}},
	{"x-oauth2-map", func(ctx context.Context, s dropboxsign.Store, _ int) holder { return newNaive(ctx, loader(s)) }},
	{"google-auth-map", func(_ context.Context, s dropboxsign.Store, _ int) holder { return newGoogle(loader(s)) }},
	{"aws-cache-map", func(_ context.Context, s dropboxsign.Store, _ int) holder { return newAWS(loader(s)) }},
}

// fill makes h hold every account of keys, by using each once.
func fill(tb testing.TB, ctx context.Context, h holder, keys []string) {
	tb.Helper()
	for _, k := range keys {
		if _, err := h.accessToken(ctx, k); err != nil {
			tb.Fatalf("first use of %s: %v", k, err)
		}
	}
}

// size is n, or small under -short (CI runs every benchmark once, so that
// none of them rots, in seconds).
func size(n, short int) int {
	if testing.Short() {
		return short
	}
	return n
}
