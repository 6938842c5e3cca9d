package dropboxsign

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// ErrDisconnected is matched, with errors.Is, by every error of a call for
// an account that the app disconnected ([Accounts.Disconnect]): a
// [*DisconnectedError]. [Classify] says Reauthorize for it: only the user,
// connecting again, brings a token back.
var ErrDisconnected = errors.New("dropboxsign: the account was disconnected by the app")

// A DisconnectedError reports that the app disconnected the account
// ([Accounts.Disconnect]): no replica acts for it any more, and its tokens
// are gone from the store. It is not a refusal by Dropbox Sign (that is a
// [*RefusedError]). A Store's Load returns one for a key that holds a
// disconnection mark.
type DisconnectedError struct {
	Key   string    // the account
	Since time.Time // when the disconnection was recorded; zero if unknown
}

// Error says which account was disconnected, and when.
func (e *DisconnectedError) Error() string {
	s := fmt.Sprintf("dropboxsign: account %q was disconnected by the app", e.Key)
	if !e.Since.IsZero() {
		s += " (" + e.Since.UTC().Format(time.RFC3339) + ")"
	}
	return s + ": it must be connected again before acting for it"
}

// Is reports whether target is [ErrDisconnected].
func (e *DisconnectedError) Is(target error) bool { return target == ErrDisconnected }

// ErrNotConnected is matched, with errors.Is, by the error of a call for
// an account that has nothing stored: never connected, or forgotten
// ([Accounts.Forget]). [Classify] says Reauthorize for it.
var ErrNotConnected = errors.New("dropboxsign: the account is not connected")

// notConnectedError is ErrNotConnected for one account.
type notConnectedError struct{ key string }

func (e *notConnectedError) Error() string {
	return fmt.Sprintf("dropboxsign: account %q is not connected: the store holds no token for it (the user must connect it first)", e.key)
}

func (e *notConnectedError) Is(target error) bool { return target == ErrNotConnected }

// A storeMark is a mark a store holds instead of a token: a *RefusedError
// or a *DisconnectedError.
type storeMark interface{ error }

// overrides reports whether st's token, not yet stored, is to be stored
// over mark rather than give way to it: a token newer than a refused one
// (see holdsNewer), or a login's made after the disconnection (by more
// than the clocks may disagree). A disconnection is never undone by a
// refresh's token, nor by a login's that may have come before it.
func (st *state) overrides(mark storeMark) bool {
	if d, ok := mark.(*DisconnectedError); ok {
		return st.tr.replace && st.tok != nil && !d.Since.IsZero() && st.tr.loggedIn.After(d.Since.Add(maxMarkSkew))
	}
	return st.holdsNewer(nil)
}

// RestoreHorizon is how long after obtaining a token a replica may store
// it back into a store that holds nothing for its account (a store that
// lost its data). A replica holding an older token takes the account for
// not connected instead. So a disconnection mark older than this (plus the
// clocks' disagreement) may be erased: no replica writes the grant back
// (see [Accounts.Forget]).
const RestoreHorizon = 48 * time.Hour

// ForgetAfter is how old a disconnection mark must be before
// [Accounts.Forget] erases it: [RestoreHorizon] plus the most the clocks of
// a fleet are taken to disagree.
const ForgetAfter = RestoreHorizon + maxMarkSkew

// mayRestore reports whether tok, held in memory, may be stored into a
// store that holds nothing for its account: it was obtained less than
// RestoreHorizon ago (its Expiry less its lifetime).
func mayRestore(tok *oauth2.Token, now time.Time) bool {
	if tok == nil || tok.ExpiresIn <= 0 || tok.ExpiresIn > maxExpiresIn || tok.Expiry.IsZero() {
		return false
	}
	obtained := tok.Expiry.Add(-time.Duration(tok.ExpiresIn) * time.Second)
	return now.Before(obtained.Add(RestoreHorizon))
}
