package dropboxsign

import (
	"context"
	"errors"

	"golang.org/x/oauth2"
)

// Login completes an authorization for account: it exchanges code and
// state (see [Exchange]) and stores the token under account's key,
// replacing whatever is stored there (a re-login, or a refused grant; a
// record the store cannot read too, if the store is a [Replacer]), so that
// every replica's next call for the account uses it. It returns the token,
// as Exchange does. An account key no account may have (see
// [Accounts.TokenSource]) is refused before the code is spent.
//
// If the exchange succeeds but the token cannot be stored, the error says
// so (a [*SaveError], which wraps the store's error) and the token is
// returned with it; the account's source in this process uses it, but
// other replicas do not know it: try the store again, or the login.
func (a *Accounts) Login(ctx context.Context, account, code, state string) (*oauth2.Token, error) {
	if !a.cfg.enter() {
		return nil, ErrShutdown
	}
	defer a.cfg.leave()
	if a.cfg.configErr != nil {
		return nil, a.cfg.configErr
	}
	if err := checkAccountKey(account); err != nil {
		return nil, err // before the code is spent
	}
	s := a.TokenSource(account)
	reqCtx := a.cfg.requestStarted(ctx, "exchange", account)
	started := a.cfg.opts.now()
	tok, err := a.cfg.client.exchange(reqCtx, code, state)
	s.emit(reqCtx, requestEvent("exchange", started, a.cfg.opts.now(), tok, err))
	if err != nil {
		return nil, err
	}
	if err := s.install(ctx, tok); err != nil {
		s.emit(ctx, Event{Kind: EventSaveFailed, Err: err, Expiry: tok.Expiry, Failures: 1})
		return tok, err
	}
	s.emit(ctx, Event{Kind: EventLogin, Expiry: tok.Expiry})
	return tok, nil
}

// install stores tok, from a new login, under the source's key, replacing
// whatever the store holds, and makes it the source's token.
func (s *TokenSource) install(ctx context.Context, tok *oauth2.Token) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.opts.timeout)
	defer cancel()
	kept := slim(tok)
	var prev *oauth2.Token
	var err error
	for range maxInstallRounds {
		if prev, _, err = s.load(ctx); err != nil {
			// A record the store cannot read (corrupt, or sealed with a
			// key rotated out) is what a new login repairs.
			if r, ok := s.cfg.opts.store.(Replacer); ok {
				if rerr := s.storeReplace(ctx, r, kept); rerr == nil {
					prev, err = kept, nil
				} else {
					err = errors.Join(err, rerr)
				}
			}
			break
		}
		if err = s.storeSave(ctx, prev, kept); !errors.Is(err, ErrConflict) {
			break
		}
	}
	next := newState(kept, s.cfg.opts.window)
	next.stored = prev // if the save failed, what it must replace (nil when unreadable)
	if err == nil {
		next.stored = kept
	} else {
		err = s.storeError("save", err, kept)
		r := newRedactor(s.clientSecret(), kept.AccessToken, kept.RefreshToken)
		t := next.edit()
		t.saveErr = &SaveError{Err: err, text: "dropboxsign: new token not saved: " + r.textN(err.Error(), 4*maxTextRunes)}
		t.saveFailures, t.saveRetryAt = 1, s.cfg.opts.now().Add(backoff(1))
		err = t.saveErr
	}
	s.state.Store(next)
	if err != nil && s.cfg.pin != nil {
		s.cfg.pin(s) // Accounts may have let it go during the exchange
	}
	return err
}

// maxInstallRounds bounds how often a login tries again when the stored
// token keeps changing under it (replicas refreshing the old grant).
const maxInstallRounds = 8
