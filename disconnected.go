package dropboxsign

import (
	"errors"
	"fmt"
	"time"
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
