package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/redis/go-redis/v9"
)

// The change log: Disconnect and Replace append the account's key to the
// stream <prefix>changes, as an entry {key, op, prev}, where prev is the ID
// of the entry before it (empty for the first entry of a stream), and
// publish "<entry ID> <key>" on the channel <prefix>changes. A watcher keeps
// a cursor, the last entry it read, and reads what follows it; the prev
// chain tells it whether entries after its cursor were lost (trimmed before
// it read them, or the stream deleted or recreated): then it reports All.
// Trimming removes the oldest entries, which the watchers have read; so
// does the deletion of the cursor entry itself, and the chain still holds.
// Entries older than a day are trimmed at each write and each poll; the
// newest, once a day old, is first followed by an entry of no account, so
// that no account's key stays, and no watcher's cursor is left without a
// successor (which would read as a log deleted).
const (
	// changeLogLen is how many entries the log keeps at least (MAXLEN ~:
	// Redis trims whole nodes of 100 entries, bounded work per write).
	changeLogLen = 10000
	// changeLogAge is how long an entry stays at most (trimmed exactly, by
	// the entry ID's time, at each write and each watcher's poll: an
	// account's key leaves the log within a day, and a poll, of its last
	// change).
	changeLogAge = 24 * time.Hour
	// pollBatch is how many entries a poll reads per round trip.
	pollBatch = 1000
	// maxPushed bounds the IDs a watcher remembers having had pushed, so
	// as not to report them again when its poll reads them.
	maxPushed = 10000
)

func (s *Store) changesKey() string { return s.prefix + "changes" }

// logScript appends a change (ARGV[2] the key, ARGV[3] the op) to the log
// KEYS[1], trims it (ARGV[1] entries at least; none older than ARGV[4]
// milliseconds), and publishes it on channel ARGV[5]. It returns the new
// entry's ID.
var logScript = redis.NewScript(`
local prev = ''
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then prev = last[1][1] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'key', ARGV[2], 'op', ARGV[3], 'prev', prev)
local t = redis.call('TIME')
redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', t[1] * 1000 - tonumber(ARGV[4])))
redis.call('PUBLISH', ARGV[5], id .. ' ' .. ARGV[2])
return id
`)

// logChange appends key's change to the log and publishes it, after the
// write it reports (see Disconnect for why that order), waiting for
// replicas as the write did.
func (s *Store) logChange(ctx context.Context, op, key string) error {
	ck := s.changesKey()
	_, short, err := s.eval(ctx, ck, logScript, true, changeLogLen, key, op, changeLogAge.Milliseconds(), ck)
	switch {
	case err != nil:
		return fmt.Errorf("redisstore: %s %q: written, but logging the change in %s failed (other processes learn of it at their next read of the account; call it again): %w", op, key, ck, err)
	case short != nil:
		return fmt.Errorf("redisstore: %s %q: written and logged in %s, but %w", op, key, ck, short)
	}
	return nil
}

// pollScript reads the log KEYS[1] after the cursor ARGV[1], ARGV[2]
// entries at most. It answers {'ok', id, key, id, key, ...} (key nil for
// an entry of no account), or {'reset', id} where id is the newest entry:
// when there is no cursor (ARGV[1] empty: the watcher starts), or when the
// entries after the cursor do not follow it (entries lost). An empty log
// gets an entry of no account, so that there is always one to be the
// cursor, and so that a log deleted later is told from one still empty.
// Then it trims the entries older than ARGV[3] milliseconds, after adding
// an entry of no account if the newest is one of them.
var pollScript = redis.NewScript(`
local function field(e, name)
  for i = 1, #e[2], 2 do
    if e[2][i] == name then return e[2][i + 1] end
  end
  return nil
end
local function reset()
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #last > 0 then return {'reset', last[1][1]} end
  return {'reset', redis.call('XADD', KEYS[1], '*', 'op', 'watch', 'prev', '')}
end
local function read()
  local cur = ARGV[1]
  if cur == '' then return reset() end
  local r = redis.call('XRANGE', KEYS[1], cur, '+', 'COUNT', tonumber(ARGV[2]) + 1)
  local from = 1
  if #r > 0 and r[1][1] == cur then from = 2 end
  if from > #r then
    -- Nothing after the cursor. Trimming always leaves an entry after it:
    -- a missing cursor with nothing after it means the log was deleted or
    -- emptied.
    if from == 2 then return {'ok'} end
    return reset()
  end
  local out = {'ok'}
  local prev = cur
  for i = from, #r do
    if field(r[i], 'prev') ~= prev then return reset() end
    prev = r[i][1]
    out[#out + 1] = prev
    out[#out + 1] = field(r[i], 'key') or false
  end
  return out
end
local function expire()
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #last == 0 then return end
  local t = redis.call('TIME')
  local minid = t[1] * 1000 - tonumber(ARGV[3])
  if tonumber(string.match(last[1][1], '^%d+')) < minid then
    redis.call('XADD', KEYS[1], '*', 'op', 'watch', 'prev', last[1][1])
  end
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', minid))
end
local res = read()
expire()
return res
`)

// Watch reports every key that a Disconnect or a Replace of any process
// using the same Redis and prefix changes, until ctx ends (see
// dropboxsign.Watcher); then it returns, having closed its connection and
// ended its goroutine.
//
// It subscribes to the channel <prefix>changes (one connection of its own,
// from the client's pub/sub pool; a ClusterClient's, to one node: Redis
// Cluster forwards a PUBLISH to every node) and reports each key as it is
// pushed. It also reads the change log, the stream <prefix>changes, from
// its cursor: every poll, and whenever its subscription is (re)established,
// so that what was published while it was down is reported all the same.
// Once it has its cursor it reports the changes of the minute before it
// (by Redis's clock; All if it cannot read them): its caller may have read
// the store before it called. It reports All if entries after its cursor
// were lost before it read them
// (more than 10,000 changes, or a day, since its last read; the stream
// deleted: FLUSHALL, eviction, a failover to a replica that lacked the
// entry the cursor names), or if it could not read the log when it
// started. A failover that loses only entries written after the cursor's
// (acknowledged writes lost: see Options.WaitReplicas) goes unnoticed, as
// it would for the marks and tokens themselves. Each
// failure (the subscription broken or unanswered, a read of the log
// failed) it reports as Err and retries: the subscription with a backoff
// up to 5 s, the log at the next poll. It pings an idle subscription every
// poll (at least 1 s apart, at most 30 s), to find a connection that died
// silently.
//
// A poll is one script on the stream's node. A change is read by each
// watcher twice (pushed, then read back by a poll) and reported once,
// unless the poll reads it before it is pushed, or the push named another
// key for its ID (a message forged by another publisher on the channel:
// the log's key is reported all the same). A poll of 0 or less means
// dropboxsign.DefaultWatchPoll; one below 10 ms, 10 ms.
func (s *Store) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	if poll <= 0 {
		poll = dropboxsign.DefaultWatchPoll
	}
	poll = max(poll, 10*time.Millisecond)
	if ctx.Err() != nil {
		return
	}
	w := &watch{s: s, report: report, pushed: map[string]uint64{}, seed: maphash.MakeSeed()}
	// The cursor first: a change from now on is after it in the log. Then
	// the last minute before it: the caller may have read the store before
	// Watch was called (see dropboxsign.Watcher).
	w.poll(ctx)
	if w.cursor != "" {
		w.replay(ctx, replayWindow)
	}
	events := make(chan pushEvent)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.listen(ctx, min(max(poll, time.Second), 30*time.Second), events) })
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			w.poll(ctx)
		case ev := <-events:
			switch {
			case ev.err != nil:
				report(dropboxsign.Change{Err: ev.err})
			case ev.subscribed:
				w.poll(ctx)
			default:
				w.pushed1(ctx, ev.payload)
			}
		}
	}
}

// watch is one Watch call's state, used by its goroutine only.
type watch struct {
	s      *Store
	report func(dropboxsign.Change)
	cursor string // the last entry read; "" before the first read
	missed bool   // the first read failed: changes since Watch began are unknown
	// pushed holds the IDs after the cursor that were pushed and reported,
	// each with a hash of the key it was pushed with: a poll that reads
	// the same ID with the same key does not report it again. The key
	// counts: anyone who can PUBLISH on the channel can announce an ID to
	// come with another key, and the entry's own key must still be
	// reported.
	pushed map[string]uint64
	seed   maphash.Seed
}

// pushed1 reports the change a message announced.
func (w *watch) pushed1(ctx context.Context, payload string) {
	id, key, ok := strings.Cut(payload, " ")
	if !ok || !validID(id) {
		// Not one of ours (another program publishing on the channel?): the
		// log says what changed.
		w.poll(ctx)
		return
	}
	w.report(dropboxsign.Change{Key: key})
	if w.cursor != "" && idLess(w.cursor, id) && len(w.pushed) < maxPushed {
		w.pushed[id] = maphash.String(w.seed, key)
	}
}

// poll reads the log from the cursor to its end and reports what it finds.
func (w *watch) poll(ctx context.Context) {
	ck := w.s.changesKey()
	for {
		res, err := pollScript.Run(ctx, w.s.client, []string{ck}, w.cursor, pollBatch, changeLogAge.Milliseconds()).Slice()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if w.cursor == "" {
				w.missed = true
			}
			w.report(dropboxsign.Change{Err: fmt.Errorf("redisstore: watch: reading the change log %s: %w", ck, err)})
			return
		}
		var kind, id string
		if len(res) > 0 {
			kind, _ = res[0].(string)
		}
		if len(res) == 2 {
			id, _ = res[1].(string)
		}
		switch {
		case kind == "reset" && validID(id):
			lost := w.cursor != "" || w.missed
			w.cursor, w.missed = id, false
			clear(w.pushed)
			if lost {
				w.report(dropboxsign.Change{All: true})
			}
			return
		case kind != "ok" || len(res)%2 != 1:
			w.report(dropboxsign.Change{Err: fmt.Errorf("redisstore: watch: reading the change log %s: the script answered %v", ck, res)})
			return
		}
		for i := 1; i < len(res); i += 2 {
			id, _ := res[i].(string)
			if !validID(id) {
				w.report(dropboxsign.Change{Err: fmt.Errorf("redisstore: watch: reading the change log %s: the script answered an entry ID %v", ck, res[i])})
				return
			}
			w.cursor = id
			key, isKey := res[i+1].(string)
			h, wasPushed := w.pushed[id]
			delete(w.pushed, id)
			if isKey && !(wasPushed && h == maphash.String(w.seed, key)) {
				w.report(dropboxsign.Change{Key: key})
			}
		}
		for id := range w.pushed {
			if !idLess(w.cursor, id) {
				delete(w.pushed, id)
			}
		}
		if (len(res)-1)/2 < pollBatch {
			return
		}
	}
}

// validID says whether id is a stream entry ID, <ms>-<seq>.
func validID(id string) bool {
	_, _, ok := parseID(id)
	return ok
}

func parseID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}

// idLess says whether stream entry ID a comes before b.
func idLess(a, b string) bool {
	am, as, _ := parseID(a)
	bm, bs, _ := parseID(b)
	return am < bm || am == bm && as < bs
}

// pushEvent is what the subscription tells Watch's loop: a message's
// payload, that it is (re)subscribed, or a failure.
type pushEvent struct {
	payload    string
	subscribed bool
	err        error
}

// listen keeps a subscription to the change channel until ctx ends, and
// sends what it receives to events. A broken subscription (or one that
// leaves a PING unanswered for idle) it replaces with a new one, after a
// backoff from 0 (the first retry) to 5 s.
func (s *Store) listen(ctx context.Context, idle time.Duration, events chan<- pushEvent) {
	ch := s.changesKey()
	send := func(ev pushEvent) bool {
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// The subscription in use, closed when ctx ends: that ends a
	// ReceiveTimeout blocked on it, which ctx does not.
	var mu sync.Mutex
	var ps *redis.PubSub
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if ps != nil {
			ps.Close()
		}
	})
	defer stop()
	subscribe := func() *redis.PubSub {
		p := s.client.Subscribe(ctx, ch)
		mu.Lock()
		defer mu.Unlock()
		if ps != nil {
			ps.Close()
		}
		ps = p
		if ctx.Err() != nil { // the AfterFunc ran before: close it here
			p.Close()
		}
		return p
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		ps.Close()
	}()
	var backoff time.Duration
	p, pinged := subscribe(), false
	for {
		msg, err := p.ReceiveTimeout(ctx, idle)
		if ctx.Err() != nil {
			return
		}
		if err != nil && isTimeout(err) {
			if !pinged {
				if err = p.Ping(ctx); err == nil {
					pinged = true
					continue
				}
			} else {
				err = fmt.Errorf("no answer to a PING within %v", idle)
			}
		}
		if err != nil {
			if !send(pushEvent{err: fmt.Errorf("redisstore: watch: the subscription to %s is down (changes come at the next poll meanwhile): %w", ch, err)}) {
				return
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			p, pinged = subscribe(), false
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				backoff = 0
				if !send(pushEvent{subscribed: true}) {
					return
				}
			}
		case *redis.Message:
			if !send(pushEvent{payload: m.Payload}) {
				return
			}
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// replayWindow is how far back Watch reports the log's changes from before
// it was called.
const replayWindow = time.Minute

// replay reports the keys the log holds from the window before the cursor
// (by Redis's clock): changes a caller may have missed between its first
// reads of the store and its call of Watch. If it cannot, it reports All.
func (w *watch) replay(ctx context.Context, window time.Duration) {
	now, err := w.s.client.Time(ctx).Result()
	var entries []redis.XMessage
	if err == nil {
		start := strconv.FormatInt(now.Add(-window).UnixMilli(), 10)
		entries, err = w.s.client.XRangeN(ctx, w.s.changesKey(), start, w.cursor, replayMax).Result()
	}
	if err != nil || len(entries) == replayMax {
		w.report(dropboxsign.Change{All: true})
		return
	}
	for _, e := range entries {
		if key, ok := e.Values["key"].(string); ok && key != "" {
			w.report(dropboxsign.Change{Key: key})
		}
	}
}

// replayMax bounds the entries replay reads; more means All.
const replayMax = 10000
