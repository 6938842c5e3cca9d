package dropboxsign

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"golang.org/x/oauth2"
)

// sourceConfig is what token sources share: one NewTokenSource's source has
// one of its own; every source of an Accounts shares the Accounts' one. Only
// its lifecycle fields change after construction.
type sourceConfig struct {
	client    *tokenClient
	configErr error           // why client is nil
	ctx       context.Context // supplies values only
	opts      options
	events    *eventQueue // nil without observers
	// pin, set by an Accounts, holds a source again that it had let go
	// once the source has a token not yet stored, which must not be
	// collected with it.
	pin func(*TokenSource)
	// owed: sources whose newest token awaits its save (see owed.go).
	owed owedSaves
	// logins serializes the logins of each account (by a hash of its key):
	// two at once must not store one token and keep the other.
	logins   [64]sync.Mutex
	loginKey maphash.Seed
	// disconnecting: the accounts with a Store.Disconnect call that has not
	// returned, abandoned at its deadline or not (see disconnect.go).
	disconnecting inflight

	// Accounts.Shutdown: closed stops new work; busy counts the runs and
	// logins under way, and idle is closed when the last one ends.
	closed atomic.Bool
	mu     sync.Mutex
	busy   int
	idle   chan struct{}
}

func newSourceConfig(ctx context.Context, c *oauth2.Config, opts []Option) *sourceConfig {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg := &sourceConfig{ctx: context.WithoutCancel(ctx), opts: defaultOptions(), loginKey: maphash.MakeSeed()}
	for _, opt := range opts {
		if opt != nil {
			opt(&cfg.opts)
		}
	}
	cfg.client, cfg.configErr = newTokenClient(c, cfg.opts.timeout, cfg.opts.now)
	if cfg.client != nil {
		cfg.client.http = contextClient(cfg.ctx) // resolved once: runs use their callers' contexts
		if cfg.opts.grants != nil {
			cfg.client.grants = cfg.opts.grants
		}
	}
	if len(cfg.opts.observers) > 0 {
		cfg.events = &eventQueue{observers: cfg.opts.observers}
	}
	return cfg
}

// ErrShutdown is returned by every call of an [Accounts] (but Stats, an
// observation, and Shutdown itself), and of its token sources and clients,
// once [Accounts.Shutdown] has begun.
var ErrShutdown = errors.New("dropboxsign: the Accounts has been shut down")

// enter registers a piece of work (a run, a login) unless Shutdown has begun.
func (cfg *sourceConfig) enter() bool {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if cfg.closed.Load() {
		return false
	}
	cfg.busy++
	return true
}

func (cfg *sourceConfig) leave() {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	cfg.busy--
	if cfg.busy == 0 && cfg.idle != nil {
		close(cfg.idle)
		cfg.idle = nil
	}
}

// shutdown stops new work and waits, until ctx ends, for the work under way.
func (cfg *sourceConfig) shutdown(ctx context.Context) error {
	cfg.mu.Lock()
	cfg.closed.Store(true)
	if cfg.busy == 0 {
		cfg.mu.Unlock()
		return nil
	}
	if cfg.idle == nil {
		cfg.idle = make(chan struct{})
	}
	idle := cfg.idle
	cfg.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loginLock returns the lock that serializes the logins of account key.
func (cfg *sourceConfig) loginLock(key string) *sync.Mutex {
	if cfg.loginKey == (maphash.Seed{}) {
		return &cfg.logins[0] // a configuration made without newSourceConfig
	}
	return &cfg.logins[maphash.String(cfg.loginKey, key)%uint64(len(cfg.logins))]
}
