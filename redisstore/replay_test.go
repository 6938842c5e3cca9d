package redisstore_test

import (
	"testing"
	"time"
)

// A watch reports the changes logged in the minute before it was called:
// a process that read the store before its watch began (an Accounts'
// first calls race its watch's start) hears of a disconnection made in
// between. It fails if Watch reports only from its call on.
func TestWatchReportsTheMinuteBeforeItsCall(t *testing.T) {
	e := standaloneEnv(t)
	ctx := ctxFor(t)
	p := prefix()
	store := newStore(t, e.client(t, ""), p)
	if err := store.Disconnect(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, store, time.Hour)
	w.await(t, "the disconnection made before the watch began", isKey("before"))
}
