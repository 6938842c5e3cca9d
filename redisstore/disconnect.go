package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/redis/go-redis/v9"
)

// markLua defines mark(v), true if v is a disconnection mark's time as
// markMillis reads it.
const markLua = `
local function mark(v)
  return v and string.len(v) <= 15 and string.match(v, '^%d+$') ~= nil
end
`

// disconnectScript replaces whatever KEYS[1] holds, of any type, with a
// disconnection mark and nothing else: the time of the mark it holds
// already, if it is one with a time, or else Redis's clock now.
var disconnectScript = redis.NewScript(markLua + `
local since
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
  local d = redis.call('HGET', KEYS[1], 'disconnected')
  if mark(d) then since = d end
end
if not since then
  local t = redis.call('TIME')
  since = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'disconnected', since)
return 1
`)

// Disconnect replaces whatever key holds (a token, a refusal mark, a
// record of any shape, a Redis key of another type, or nothing) with a
// disconnection mark, the hash {disconnected: milliseconds since the epoch,
// by Redis's clock}, which holds nothing of the grant: its blob,
// fingerprint and checksum are deleted with the rest (see
// dropboxsign.Store). A key marked already keeps its mark's time. The
// mark is written in one script, so atomically with respect to Save and
// MarkRefused, which never overwrite it; it is as durable as a Save (with
// Options.WaitReplicas, it waits for replicas as a Save does).
//
// Then Disconnect appends key to the change log and publishes it (see
// Watch), a second command: in a cluster the log's stream and the account's
// hash are in different slots, which no one script may touch. The order
// makes it safe: a watcher that learns of the change reads the mark, which
// was written before; and Disconnect returns nil only after both, so that
// a caller told nil knows every watcher will learn of it (a Disconnect that
// failed between the two, or whose process died there, left the mark but
// maybe no log entry: the caller, told an error or nothing, must call it
// again, which logs it).
func (s *Store) Disconnect(ctx context.Context, key string) error {
	v, err := s.run(ctx, "disconnect", key, disconnectScript, true)
	if err == nil && v != written {
		err = fmt.Errorf("redisstore: disconnect %q: the script answered %d", key, v)
	}
	return s.changed(ctx, "disconnect", key, v, err)
}

// forgetScript deletes KEYS[1] if it holds a disconnection mark older than
// ARGV[1] (milliseconds since the epoch): 1 if it did, or if the key holds
// nothing (as Load reads it); 0 if it holds anything else; {-1, type} for
// a key that is no hash.
var forgetScript = redis.NewScript(markLua + `
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return 1 end
if t ~= 'hash' then return {-1, t} end
local f = redis.call('HMGET', KEYS[1], 'disconnected', 'refused', 'blob')
if not f[1] then
  if f[2] or f[3] then return 0 end
  return 1
end
if not mark(f[1]) or tonumber(f[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// Forget erases key's disconnection mark, leaving no Redis key, if it was
// recorded before before (see dropboxsign.Store), atomically, in one
// script. It returns nil if key holds nothing (as Load reads it: a hash of
// another application under the prefix is left alone), and
// dropboxsign.ErrConflict if it holds a token, a refusal mark, a later
// mark, or a mark whose time is unreadable (written by hand: Disconnect
// stamps such a mark with its own time, after which Forget can erase it).
// The mark's time is Redis's clock; before is compared with it as is, so
// any skew between the two clocks shifts the bound. A key of another Redis
// type is an error that names its type.
//
// The change log (see Watch) may still name key afterwards: its entries
// leave it a day old (at the next write or watcher's poll), or sooner when
// 10,000 later changes push them out.
func (s *Store) Forget(ctx context.Context, key string, before time.Time) error {
	// The mark m (milliseconds) was recorded before before iff m < the
	// first millisecond not before before.
	ms := before.UnixMilli()
	if time.UnixMilli(ms).Before(before) {
		ms++
	}
	v, err := s.run(ctx, "forget", key, forgetScript, false, strconv.FormatInt(ms, 10))
	switch {
	case err != nil:
		return err
	case v != written:
		return dropboxsign.ErrConflict
	}
	return nil
}
