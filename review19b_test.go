package dropboxsign_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// Second review of issue 19 (f590726's fixes).

// lateDisconnect is a store whose Disconnect waits for release, whatever
// its context, then writes the mark: a store that does not heed ctx (a
// hung network file system, a driver that sends the command and then
// waits) and whose write lands late. finished is closed once it has.
type lateDisconnect struct {
	*dropboxsigntest.Store
	entered, release, finished chan struct{}
}

func (l *lateDisconnect) Disconnect(ctx context.Context, key string) error {
	close(l.entered)
	<-l.release
	defer close(l.finished)
	return l.Store.Disconnect(context.Background(), key)
}

// f590726 bounds Disconnect's store call by WithTimeout, and Disconnect
// then lets go of the account's login lock and returns an error ("the
// account may still be connected: try again") while the store call goes
// on. A Login of the account in this process then succeeds (nil) and
// stores the new grant; the abandoned Disconnect lands after it and
// replaces the new login's token with a mark: the user, told they are
// connected, is disconnected, on every replica, with nothing logged. The
// lock should be held until the store call has actually returned (or the
// login should fail, not succeed, while a Disconnect of the account is
// still in flight).
func TestReview19bAnAbandonedDisconnectDoesNotUndoALaterLogin(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	conf := srv.Config()
	mem := dropboxsigntest.NewStore()
	late := &lateDisconnect{Store: mem, entered: make(chan struct{}), release: make(chan struct{}), finished: make(chan struct{})}
	a := dropboxsign.NewAccounts(ctx, conf, late, dropboxsign.WithTimeout(50*time.Millisecond), dropboxsign.WithWatchPoll(time.Hour))
	defer a.Shutdown(ctx)
	connected(t, ctx, mem, srv, "uma", a)

	if err := a.Disconnect(ctx, "uma"); err == nil {
		t.Fatal("Disconnect returned nil though its store call did not return")
	}
	<-late.entered
	code := authorize(t, srv, conf, "st-uma")
	tok, loginErr := a.Login(ctx, "uma", code, "st-uma")
	close(late.release) // the abandoned Disconnect lands now
	<-late.finished
	if loginErr != nil {
		return // a Login told it failed: the app knows to try again
	}
	stored, err := mem.Load(ctx, "uma")
	var d *dropboxsign.DisconnectedError
	if errors.As(err, &d) {
		t.Fatalf("Login returned nil, then the Disconnect abandoned before it replaced the new grant with a mark")
	}
	if err != nil || stored.AccessToken != tok.AccessToken {
		t.Fatalf("the store holds %v, %v; want the login's token", stored, err)
	}
}
