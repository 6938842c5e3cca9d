package dropboxsign

import (
	"context"
	"errors"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// Login completes an authorization for account: it exchanges code and
// state (see [Exchange]) and stores the token under account's key,
// replacing whatever is stored there (a re-login, a refused or
// disconnected grant, or a record the store cannot read). It
// returns the token, as Exchange does. An account key no account may have
// (see [Accounts.TokenSource]) is refused before the code is spent.
//
// This process's next call for the account uses the new token, even if a
// refresh of the old grant was under way. Another replica uses it once it
// learns of it: at once where the store pushes changes (see [Watcher]),
// within [WithWatchPoll] when the push is down, and in any case at its next
// read of the store (its next refresh, or a 401); until then it acts with
// the old grant (for the user's previous Dropbox Sign account, if they
// connected another). A login after [Accounts.Disconnect] connects the
// account again.
//
// A code Dropbox Sign refuses (invalid_grant, or the invalid_request it
// answers for a code already used, expired, or given to another client or
// state: a double submit, the back button, a stale link) is the user's to
// fix by connecting again, not the operator's: the error, and the
// exchange's [Event], are classed Reauthorize, and the
// [*oauth2.RetrieveError] stays reachable with [errors.As]. Bad client
// credentials (invalid_client) stay Misconfigured.
//
// If the exchange succeeds but the token cannot be stored, the error says
// so (a [*SaveError], which wraps the store's error) and the token is
// returned with it. This process uses it, and stores it over whatever the
// store holds by then at its next attempts (see [WithOnRefresh] for their
// schedule), until one succeeds; other replicas do not know it until then.
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
	tok, requested, err := a.cfg.client.exchangeOnce(reqCtx, code, state)
	err = codeRefused(err)
	if requested {
		// One event per request Dropbox Sign saw: a double submit that
		// shared another call's exchange made none.
		s.emit(reqCtx, requestEvent("exchange", started, a.cfg.opts.now(), tok, err))
	}
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
// whatever the store holds, and makes it the source's token. Logins of one
// account in one process are installed one at a time; a run under way
// publishes nothing over the login's token (see publish). If the store
// fails, the token is kept, and replaces whatever the store holds at its
// next save (see trouble.replace): never taken for "another writer's".
func (s *TokenSource) install(ctx context.Context, tok *oauth2.Token) error {
	mu := s.cfg.loginLock(s.key)
	mu.Lock()
	defer mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.opts.timeout)
	defer cancel()
	kept := slim(tok)
	err := s.cfg.disconnecting.wait(ctx, s.key)
	if err == nil {
		err = s.writeOver(ctx, kept)
	}
	if err != nil {
		err = s.storeError("save", err, kept)
	} else if s.cfg.opts.onRefresh != nil {
		err = s.callOnRefresh(ctx, kept) // every token it obtains, a login's too
	}
	next := newState(kept, s.cfg.opts.window)
	next.stored = kept
	if err != nil {
		r := newRedactor(s.clientSecret(), kept.AccessToken, kept.RefreshToken)
		next.stored = nil // unknown: the next save replaces whatever is there
		t := next.edit()
		t.saveErr = &SaveError{Err: err, text: "dropboxsign: new token not saved: " + r.textN(err.Error(), 4*maxTextRunes)}
		t.saveFailures, t.saveRetryAt, t.replace, t.loggedIn = 1, s.cfg.opts.now().Add(backoff(1)), true, s.cfg.opts.now()
		err = t.saveErr
	}
	s.state.Store(next)
	if err != nil {
		if s.cfg.pin != nil {
			s.cfg.pin(s) // Accounts may have let it go during the exchange
		}
		s.cfg.owe(s)
	}
	return err
}

// writeOver stores tok, a new login's, over whatever the store holds under
// the source's key (see [Store.Replace]): the previous grant's token, which
// other replicas may be refreshing meanwhile (their saves then conflict), a
// refusal or disconnection mark, or a record the store cannot read, which a
// new login repairs.
func (s *TokenSource) writeOver(ctx context.Context, tok *oauth2.Token) error {
	return s.storeReplace(ctx, tok)
}

// writeLogin retries the save of tok, a login's token whose save failed:
// over whatever the store holds, unless a later login in this process has
// replaced tok meanwhile (its own save then speaks for the account; this
// one does nothing, and the run that called it publishes nothing), or the
// app disconnected the account after the login, or may have (the clocks
// may disagree by maxMarkSkew): then it returns the *DisconnectedError,
// and the login is dropped.
func (s *TokenSource) writeLogin(ctx context.Context, tok *oauth2.Token, loggedIn time.Time) error {
	mu := s.cfg.loginLock(s.key)
	mu.Lock()
	defer mu.Unlock()
	if st := s.state.Load(); st.tok != tok || st.cut {
		return errOvertaken
	}
	if err := s.cfg.disconnecting.wait(ctx, s.key); err != nil {
		return err
	}
	// A record that cannot be read is no disconnection mark: the login
	// repairs it (see writeOver).
	cur, mark, lerr := s.load(ctx)
	if d, ok := mark.(*DisconnectedError); ok && (d.Since.IsZero() || !loggedIn.After(d.Since.Add(maxMarkSkew))) {
		return d
	}
	if cur == nil && mark == nil && lerr == nil && !s.cfg.opts.now().Before(loggedIn.Add(RestoreHorizon)) {
		// Nothing stored, and the login is older than any mark is kept: a
		// disconnection since may have been forgotten.
		return &notConnectedError{s.key}
	}
	return s.writeOver(ctx, tok)
}

// errOvertaken is a run's save given up because a login replaced the token
// it was saving: the login's token speaks for the account, and the run's
// outcome is not published (see publish).
var errOvertaken = errors.New("dropboxsign: overtaken by a login")

// codeRefused wraps an exchange's refusal of the code itself (see
// [Accounts.Login]) so that [Classify] says Reauthorize: alone, Dropbox
// Sign's invalid_request (400) reads Misconfigured, and the alert on that
// would page an operator for a user's double submit. Other errors are
// returned as they are.
func codeRefused(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusBadRequest &&
		(re.ErrorCode == "invalid_grant" || re.ErrorCode == "invalid_request") {
		return &connectError{msg: "dropboxsign: the authorization code was refused (already used, expired, or not for this app): connect again", err: err}
	}
	return err
}
