package dropboxsign

import (
	"sync"
	"time"
	"weak"
)

// This file retries failed saves in the background. A token whose save
// failed may carry the only valid refresh token of its account, and the
// other replicas wait for it to be stored only so long (see spending.go):
// a replica that gets no calls for the account must not leave it unstored
// until its next call. So while any source of a configuration owes a save,
// one goroutine of that configuration starts each retry once its backoff
// has passed, as a call would; it ends when nothing is owed any more, or
// at Accounts.Shutdown (which retries what is owed itself). It holds the
// sources weakly: a source the app has let go (one of NewTokenSource's
// that nothing references) is not kept alive by its owed save; an
// Accounts holds its own until their saves succeed (see Accounts.pin).

type owedSaves struct {
	mu      sync.Mutex
	sources map[weak.Pointer[TokenSource]]struct{}
	running bool
	wake    chan struct{}
}

// owedCheck is the longest the goroutine sleeps between looks: the clock
// may jump, and a retry's outcome moves the next one.
const owedCheck = time.Second

// owe records that s's newest token awaits its save.
func (cfg *sourceConfig) owe(s *TokenSource) {
	o := &cfg.owed
	o.mu.Lock()
	if o.sources == nil {
		o.sources, o.wake = map[weak.Pointer[TokenSource]]struct{}{}, make(chan struct{}, 1)
	}
	o.sources[weak.Make(s)] = struct{}{}
	start := !o.running
	o.running = true
	o.mu.Unlock()
	if start {
		go cfg.retryOwed()
		return
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// retryOwed starts the save retries that are due, until none is owed.
func (cfg *sourceConfig) retryOwed() {
	o := &cfg.owed
	timer := time.NewTimer(owedCheck)
	defer timer.Stop()
	for {
		now := cfg.opts.now()
		wait := owedCheck
		var due []*TokenSource
		o.mu.Lock()
		for wp := range o.sources {
			s := wp.Value()
			if s == nil {
				delete(o.sources, wp) // let go by the app, and collected
				continue
			}
			st := s.state.Load()
			switch {
			case st.tr.saveErr == nil || cfg.closed.Load():
				delete(o.sources, wp)
			case st.saveDue(now):
				due = append(due, s)
			default:
				wait = min(wait, st.tr.saveRetryAt.Sub(now))
			}
		}
		if len(o.sources) == 0 {
			o.running = false
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		for _, s := range due {
			s.kick()
		}
		timer.Reset(max(wait, 10*time.Millisecond))
		select {
		case <-timer.C:
		case <-o.wake:
			if !timer.Stop() {
				<-timer.C
			}
		}
	}
}
