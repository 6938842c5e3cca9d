package redisstore_test

// Second review of issue 19's redisstore: the watch against a hostile or
// unlucky Redis. Each test stands for one finding of the review. (A
// failover that loses log entries newer than a watcher's cursor is a loss
// of acknowledged writes, documented in Watch's doc and docs/redis.md, not
// tested here.)

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/redis/go-redis/v9"
)

// lastEntry returns the ID of the newest entry of the change log.
func lastEntry(t *testing.T, c redis.Cmdable, stream string) string {
	t.Helper()
	last, err := c.XRevRangeN(ctxFor(t), stream, "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatalf("XREVRANGE %s: %v, %v", stream, last, err)
	}
	return last[0].ID
}

// logRaw appends an entry to the change log as Disconnect's script does,
// with its prev chain, but publishes nothing: a change whose push this
// watcher did not get (its subscription was being made again, Redis's
// output buffer limit dropped it, ...), which the log is there to recover.
func logRaw(t *testing.T, c redis.Cmdable, stream, id, key string) string {
	t.Helper()
	prev := lastEntry(t, c, stream)
	got, err := c.XAdd(ctxFor(t), &redis.XAddArgs{Stream: stream, ID: id, Values: []any{"key", key, "op", "disconnect", "prev", prev}}).Result()
	if err != nil {
		t.Fatalf("XADD %s %s: %v", stream, id, err)
	}
	return got
}

func reported(seen []dropboxsign.Change, key string) bool {
	return slices.ContainsFunc(seen, func(c dropboxsign.Change) bool { return c.Key == key || c.All })
}

// Anyone who may PUBLISH on <prefix>changes (or another app using the same
// prefix in another Redis database: pub/sub is server-wide) can hide a
// logged change from every watcher. The watcher remembers the entry IDs it
// was pushed, and its poll skips a logged entry with such an ID without
// looking at the key: a message "<ID> decoy" whose ID is that of a later
// entry for another account (entry IDs are <ms>-<seq>, as predictable as
// the clock) makes the poll skip that entry, and if its own push was lost,
// the account is never reported, nor All.
func TestReview19bForgedPushHidesLoggedChange(t *testing.T) {
	e := standaloneEnv(t)
	p := prefix()
	c := e.client(t, "")
	store := newStore(t, c, p)
	w := e.watch(t, store, p, 100*time.Millisecond)
	stream := p + "changes"

	// An ID the log will use: a change a minute from now, say (here
	// written with that very ID, so that the test does not race the clock).
	future := redisNow(t, c).Add(time.Minute).UnixMilli()
	victimID := strconv.FormatInt(future, 10) + "-0"
	if err := c.Publish(ctxFor(t), stream, victimID+" decoy").Err(); err != nil {
		t.Fatal(err)
	}
	w.await(t, "the forged message", isKey("decoy"))

	// The victim's disconnection, logged, its push lost; then a sentinel,
	// also unpushed: once it is reported, the poll has read past the victim.
	logRaw(t, c, stream, victimID, "victim")
	logRaw(t, c, stream, strconv.FormatInt(future, 10)+"-1", "sentinel")
	seen := w.await(t, "the sentinel, read from the log", isKey("sentinel"))
	if !reported(seen, "victim") {
		t.Fatalf("the victim's logged change was never reported, nor All (a forged push with its entry ID made the poll skip it); reported: %s", describe(seen))
	}
}
