package redisstore_test

import (
	"fmt"
	"testing"
	"time"
)

// Regression guard: a message on the channel that is not the store's
// ("<ID> <key>") is no change and does not stop the watch; the changes
// logged around it are all reported.
func TestReview19bMalformedPushes(t *testing.T) {
	e := standaloneEnv(t)
	p := prefix()
	c := e.client(t, "")
	store := newStore(t, c, p)
	w := e.watch(t, store, p, time.Hour)
	stream := p + "changes"
	for i, msg := range []string{"", " ", "x", "1-", "-1 k", "18446744073709551616-0 k", "1-0", "nonsense with spaces", string(make([]byte, 1<<16))} {
		if err := c.Publish(ctxFor(t), stream, msg).Err(); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("k%d", i)
		if err := store.Disconnect(ctxFor(t), key); err != nil {
			t.Fatal(err)
		}
		w.await(t, key, isKey(key))
	}
}
