package redisstore_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/redistest"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

// A deadline for what a watcher must report: generous, for a busy machine;
// the tests assert what is reported, not how soon.
const reportWithin = 30 * time.Second

// watching runs a store's Watch until the test ends, and collects what it
// reports.
type watching struct {
	changes chan dropboxsign.Change
	// gate, held by the test (hold), blocks the watcher in its next
	// report; waiting counts the reports blocked so.
	gate    sync.Mutex
	waiting atomic.Int32
	cancel  context.CancelFunc
	done    chan struct{}
}

// startWatch calls store.Watch in a goroutine of its own: a change may be
// made before Watch is called, and not be reported. (watchEnv.watch waits
// until it is.)
func startWatch(t *testing.T, store *redisstore.Store, poll time.Duration) *watching {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watching{changes: make(chan dropboxsign.Change, 1<<16), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		store.Watch(ctx, poll, func(c dropboxsign.Change) {
			w.waiting.Add(1)
			w.gate.Lock()
			//lint:ignore SA2001 an empty critical section: waiting for the test to release the gate
			w.gate.Unlock()
			w.waiting.Add(-1)
			select {
			case w.changes <- c:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// hold blocks the watcher in its next report, until release: it reads
// nothing meanwhile.
func (w *watching) hold()    { w.gate.Lock() }
func (w *watching) release() { w.gate.Unlock() }

// held waits until the watcher is blocked in a report.
func (w *watching) held(t *testing.T) {
	t.Helper()
	waitFor(t, "the watcher blocked in a report", func() bool { return w.waiting.Load() > 0 })
}

// stop ends the watch and waits until Watch returns.
func (w *watching) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(reportWithin):
		t.Errorf("Watch did not return within %v of its context's end", reportWithin)
	}
}

// await reads reports until one matches, and returns them all; it fails the
// test if none does within reportWithin.
func (w *watching) await(t *testing.T, what string, match func(dropboxsign.Change) bool) []dropboxsign.Change {
	t.Helper()
	var seen []dropboxsign.Change
	deadline := time.After(reportWithin)
	for {
		select {
		case c := <-w.changes:
			seen = append(seen, c)
			if match(c) {
				return seen
			}
		case <-deadline:
			t.Fatalf("%s: not reported within %v; reported meanwhile: %s", what, reportWithin, describe(seen))
		}
	}
}

// drain returns what was reported and not read yet.
func (w *watching) drain() []dropboxsign.Change {
	var seen []dropboxsign.Change
	for {
		select {
		case c := <-w.changes:
			seen = append(seen, c)
		default:
			return seen
		}
	}
}

func isKey(key string) func(dropboxsign.Change) bool {
	return func(c dropboxsign.Change) bool { return c.Key == key }
}
func isAll(c dropboxsign.Change) bool { return c.All }
func isErr(c dropboxsign.Change) bool { return c.Err != nil }

func describe(cs []dropboxsign.Change) string {
	var b strings.Builder
	for i, c := range cs {
		if i == 20 {
			fmt.Fprintf(&b, " ... (%d in all)", len(cs))
			break
		}
		switch {
		case c.Err != nil:
			fmt.Fprintf(&b, " Err(%v)", c.Err)
		case c.All:
			b.WriteString(" All")
		default:
			fmt.Fprintf(&b, " %q", c.Key)
		}
	}
	if b.Len() == 0 {
		return "nothing"
	}
	return b.String()
}

// watchEnv is a Redis, one server or a cluster, for the watch tests.
type watchEnv struct {
	// client connects as another process would, as user (default: the
	// default user).
	client func(t *testing.T, user string) redis.UniversalClient
	// nodes are every server's address.
	nodes []string
	// masterOf returns the address of the master that holds key.
	masterOf func(key string) string
	// down stops Redis, up starts it again, empty (nil for a cluster).
	down, up func()
}

func standaloneEnv(t *testing.T) watchEnv {
	r := startRedis(t)
	return watchEnv{
		client: func(t *testing.T, user string) redis.UniversalClient {
			opts := &redis.Options{Addr: r.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second}
			if user != "" {
				opts.Username, opts.Password = user, "pw-"+user
			}
			c := redis.NewClient(opts)
			t.Cleanup(func() { c.Close() })
			return c
		},
		nodes:    []string{r.Addr},
		masterOf: func(string) string { return r.Addr },
		down:     r.Stop,
		up:       r.Start,
	}
}

func clusterEnv(c *redistest.Cluster) watchEnv {
	return watchEnv{
		client: func(t *testing.T, user string) redis.UniversalClient {
			opts := &redis.ClusterOptions{Addrs: c.Addrs(), MaxRedirects: 16, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second}
			if user != "" {
				opts.Username, opts.Password = user, "pw-"+user
			}
			cc := redis.NewClusterClient(opts)
			t.Cleanup(func() { cc.Close() })
			return cc
		},
		nodes: c.Addrs(),
		masterOf: func(key string) string {
			m, _ := c.MasterOf(key)
			return m.Addr
		},
	}
}

// cmd runs a command on every node (ACL and CLIENT KILL are per server)
// and returns the sum of their integer answers.
func (e watchEnv) cmd(t *testing.T, args ...string) int {
	t.Helper()
	sum := 0
	for _, addr := range e.nodes {
		out, err := redistest.Cmd(addr, args...)
		if err != nil || strings.HasPrefix(out, "ERR") || strings.HasPrefix(out, "(error)") {
			t.Fatalf("%v on %s: %q, %v", args, addr, out, err)
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(out, "(integer) "))
		sum += n
	}
	return sum
}

// user creates an ACL user that may do everything, on every node.
func (e watchEnv) user(t *testing.T, name string) {
	e.cmd(t, "ACL", "SETUSER", name, "on", ">pw-"+name, "~*", "&*", "+@all")
}

// subscribers returns how many clients are subscribed to channel, on all
// nodes.
func (e watchEnv) subscribers(t *testing.T, channel string) int {
	t.Helper()
	n := 0
	for _, addr := range e.nodes {
		out, err := redistest.Cmd(addr, "PUBSUB", "NUMSUB", channel)
		if err != nil {
			t.Fatalf("PUBSUB NUMSUB on %s: %q, %v", addr, out, err)
		}
		lines := strings.Fields(out)
		if len(lines) == 2 {
			k, _ := strconv.Atoi(lines[1])
			n += k
		}
	}
	return n
}

// watch starts a watcher of store (whose prefix is p) and waits until it
// has subscribed: it has read the log before (its cursor is set), so any
// change from then on is reported.
func (e watchEnv) watch(t *testing.T, store *redisstore.Store, p string, poll time.Duration) *watching {
	t.Helper()
	n := e.subscribers(t, p+"changes")
	w := startWatch(t, store, poll)
	waitFor(t, "the watcher subscribed", func() bool { return e.subscribers(t, p+"changes") > n })
	return w
}

// waitFor polls cond (a question to Redis, not a clock) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(reportWithin); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, reportWithin)
		}
	}
}

func newStore(t *testing.T, c redis.UniversalClient, p string) *redisstore.Store {
	s, err := redisstore.New(c, redisstore.Options{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tok(n int) *oauth2.Token {
	return &oauth2.Token{AccessToken: fmt.Sprint("at-", n), RefreshToken: fmt.Sprint("rt-", n), Expiry: time.Now().Add(time.Hour)}
}

// runWatchTests runs the watch tests on e.
func runWatchTests(t *testing.T, e watchEnv) {
	t.Run("TwoProcesses", func(t *testing.T) { testWatchTwoProcesses(t, e) })
	t.Run("PushCut", func(t *testing.T) { testWatchPushCut(t, e) })
	t.Run("LogTrimmed", func(t *testing.T) { testWatchLogTrimmed(t, e) })
	t.Run("LogFlushed", func(t *testing.T) { testWatchLogFlushed(t, e) })
	t.Run("EndsCleanly", func(t *testing.T) { testWatchEnds(t, e) })
}

func TestWatch(t *testing.T) { runWatchTests(t, standaloneEnv(t)) }

// Two stores on clients of their own, as two processes: each one's
// watcher reports the other's Disconnect and Replace, and its own, by push
// (the poll is an hour): one report each, no failure.
func testWatchTwoProcesses(t *testing.T, e watchEnv) {
	ctx := ctxFor(t)
	p := prefix()
	a, b := newStore(t, e.client(t, ""), p), newStore(t, e.client(t, ""), p)
	wa, wb := e.watch(t, a, p, time.Hour), e.watch(t, b, p, time.Hour)
	// Until both watchers have subscribed, a change may come by the read of
	// the log they make then: a first change, seen by both, ends that.
	if err := a.Replace(ctx, "warm-up", tok(0)); err != nil {
		t.Fatal(err)
	}
	wa.await(t, "a's watcher: warm-up", isKey("warm-up"))
	wb.await(t, "b's watcher: warm-up", isKey("warm-up"))
	steps := []struct {
		who  *redisstore.Store
		op   string
		key  string
		name string
	}{
		{a, "disconnect", "alice", "a"}, {b, "replace", "alice", "b"}, {b, "disconnect", "bob", "b"}, {a, "replace", "carol", "a"},
	}
	for i, st := range steps {
		var err error
		if st.op == "disconnect" {
			err = st.who.Disconnect(ctx, st.key)
		} else {
			err = st.who.Replace(ctx, st.key, tok(i+1))
		}
		if err != nil {
			t.Fatalf("%s: %s %s: %v", st.name, st.op, st.key, err)
		}
		for name, w := range map[string]*watching{"a": wa, "b": wb} {
			seen := w.await(t, fmt.Sprintf("%s's watcher: %s's %s of %s", name, st.name, st.op, st.key), isKey(st.key))
			if len(seen) != 1 {
				t.Errorf("%s's watcher reported %s before %s's %s of %s; want that alone", name, describe(seen[:len(seen)-1]), st.name, st.op, st.key)
			}
		}
	}
	for name, w := range map[string]*watching{"a": wa, "b": wb} {
		if extra := w.drain(); len(extra) > 0 {
			t.Errorf("%s's watcher also reported %s", name, describe(extra))
		}
	}
	// Save and MarkRefused are no changes to watch.
	if err := a.Save(ctx, "dave", nil, tok(9)); err != nil {
		t.Fatal(err)
	}
	if err := a.MarkRefused(ctx, "dave", tok(9)); err != nil {
		t.Fatal(err)
	}
	if err := a.Disconnect(ctx, "erin"); err != nil {
		t.Fatal(err)
	}
	for name, w := range map[string]*watching{"a": wa, "b": wb} {
		if seen := w.await(t, name+"'s watcher: erin", isKey("erin")); len(seen) != 1 {
			t.Errorf("%s's watcher reported %s before erin; want nothing for a Save or MarkRefused", name, describe(seen))
		}
	}
}

// The subscription's connection killed (CLIENT KILL TYPE pubsub): the
// watchers report the failure, subscribe again, and go on reporting by
// push. Then kept from subscribing (the watchers' ACL user loses its
// channels, and Redis drops their subscriptions), a change published to
// nobody is reported all the same: by the poll of the watcher that polls
// often, and, by the watcher that polls every hour, when it subscribes
// again and reads the log; after which push works again.
func testWatchPushCut(t *testing.T, e watchEnv) {
	ctx := ctxFor(t)
	p := prefix()
	e.user(t, "watcher")
	writer := newStore(t, e.client(t, ""), p)
	often := e.watch(t, newStore(t, e.client(t, "watcher"), p), p, 300*time.Millisecond)
	seldom := e.watch(t, newStore(t, e.client(t, "watcher"), p), p, time.Hour)
	channel := p + "changes"
	if err := writer.Replace(ctx, "warm-up", tok(0)); err != nil {
		t.Fatal(err)
	}
	often.await(t, "often: warm-up", isKey("warm-up"))
	seldom.await(t, "seldom: warm-up", isKey("warm-up"))

	// Killed, then reconnected.
	if n := e.cmd(t, "CLIENT", "KILL", "TYPE", "pubsub"); n < 2 {
		t.Fatalf("CLIENT KILL TYPE pubsub killed %d connections, want the 2 watchers'", n)
	}
	often.await(t, "often: the broken subscription", isErr)
	seldom.await(t, "seldom: the broken subscription", isErr)
	if err := writer.Disconnect(ctx, "k0"); err != nil {
		t.Fatal(err)
	}
	often.await(t, "often: k0", isKey("k0"))
	seldom.await(t, "seldom: k0", isKey("k0")) // pushed, or read when it subscribed again
	if err := writer.Disconnect(ctx, "k0b"); err != nil {
		t.Fatal(err)
	}
	seldom.await(t, "seldom: k0b, pushed once subscribed again", isKey("k0b"))

	// Kept out.
	e.cmd(t, "ACL", "SETUSER", "watcher", "resetchannels")
	e.cmd(t, "CLIENT", "KILL", "TYPE", "pubsub") // Redis 7 has dropped them already
	waitFor(t, "no subscriber left", func() bool { return e.subscribers(t, channel) == 0 })
	often.drain()
	seldom.drain()
	often.await(t, "often: a failure to subscribe", isErr)
	seldom.await(t, "seldom: a failure to subscribe", isErr)
	if err := writer.Disconnect(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if n := e.subscribers(t, channel); n != 0 {
		t.Fatalf("%d subscribers while the watchers may not subscribe", n)
	}
	often.await(t, "often: k1, published to nobody, read from the log", isKey("k1"))

	// Let in again.
	e.cmd(t, "ACL", "SETUSER", "watcher", "allchannels")
	seldom.await(t, "seldom: k1, read from the log once subscribed again", isKey("k1"))
	if err := writer.Disconnect(ctx, "k2"); err != nil {
		t.Fatal(err)
	}
	seldom.await(t, "seldom: k2, pushed", isKey("k2"))
	often.await(t, "often: k2", isKey("k2"))
}

// More changes than the log keeps, while a watcher is stuck: its cursor is
// trimmed away, and it reports All. The log keeps 10,000 entries (and 100
// more at most).
func testWatchLogTrimmed(t *testing.T, e watchEnv) {
	ctx := ctxFor(t)
	p := prefix()
	c := e.client(t, "")
	store := newStore(t, c, p)
	w := e.watch(t, store, p, 200*time.Millisecond)
	if err := store.Replace(ctx, "warm-up", tok(0)); err != nil {
		t.Fatal(err)
	}
	w.await(t, "warm-up", isKey("warm-up"))
	w.hold()
	held := true
	defer func() {
		if held {
			w.release()
		}
	}()
	if err := store.Disconnect(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	w.held(t) // reporting "first", pushed or read: its cursor is at most there
	first, err := c.XRevRangeN(ctx, p+"changes", "+", "-", 1).Result()
	if err != nil || len(first) != 1 {
		t.Fatalf("the log: %v, %v", first, err)
	}
	// 10,300 changes: the log keeps 10,000 at least and trims 100 at a time.
	const n, writers = 10300, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Go(func() {
			for i := g; i < n; i += writers {
				if err := store.Replace(ctx, fmt.Sprint("k", i), tok(i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	length, err := c.XLen(ctx, p+"changes").Result()
	if err != nil || length < 10000 || length > 10100 {
		t.Errorf("the log holds %d entries (%v), want 10,000 to 10,100", length, err)
	}
	if left, _ := c.XRange(ctx, p+"changes", first[0].ID, first[0].ID).Result(); len(left) != 0 {
		t.Fatalf("the entry of the first change is still in the log: nothing for the test to show")
	}
	w.release()
	held = false
	w.await(t, "All", isAll)
}

// The log deleted (FLUSHALL, as a failover to a replica without the log
// or a restart without persistence would): the watcher reports All, both
// when nothing was logged since and when a change was logged anew before
// the watcher read the log again.
func testWatchLogFlushed(t *testing.T, e watchEnv) {
	ctx := ctxFor(t)
	p := prefix()
	store := newStore(t, e.client(t, ""), p)
	w := e.watch(t, store, p, 200*time.Millisecond)
	if err := store.Disconnect(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	}
	w.await(t, "warm-up", isKey("warm-up"))
	master := e.masterOf(p + "changes")
	flush := func() {
		if out, err := redistest.Cmd(master, "FLUSHALL"); err != nil || out != "OK" {
			t.Fatalf("FLUSHALL: %q, %v", out, err)
		}
	}
	flush()
	w.await(t, "All after the log was deleted", isAll)

	if err := store.Disconnect(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	w.await(t, "x", isKey("x"))
	w.hold()
	if err := store.Disconnect(ctx, "y"); err != nil {
		w.release()
		t.Fatal(err)
	}
	w.held(t) // reporting y: it reads the log no more until released
	flush()
	err := store.Disconnect(ctx, "z")
	w.release()
	if err != nil {
		t.Fatal(err)
	}
	w.await(t, "All after the log was deleted, and begun anew by z", isAll)
}

// Watch returns when its context ends, leaving no goroutine of its own and
// no connection: while it works, and while Redis is down. Started while
// Redis is down, it reports failures, goes on, and once Redis is back
// reports All (it could not tell what changed meanwhile), then changes.
func testWatchEnds(t *testing.T, e watchEnv) {
	ctx := ctxFor(t)
	p := prefix()
	store := newStore(t, e.client(t, ""), p)
	channel := p + "changes"
	before := watchGoroutines()
	ended := func(w *watching) {
		t.Helper()
		w.stop(t)
		waitFor(t, "Watch's goroutines gone", func() bool { return watchGoroutines() <= before })
	}
	w := e.watch(t, store, p, 200*time.Millisecond)
	ended(w)
	waitFor(t, "its subscription closed", func() bool { return e.subscribers(t, channel) == 0 })
	if e.down == nil {
		return
	}

	e.down()
	w = startWatch(t, store, 200*time.Millisecond)
	w.await(t, "a failure while Redis is down", isErr)
	w.await(t, "another: it goes on trying", isErr)
	e.up()
	w.await(t, "All once Redis is back", isAll)
	if err := store.Disconnect(ctx, "back"); err != nil {
		t.Fatal(err)
	}
	w.await(t, "a change once Redis is back", isKey("back"))
	ended(w)
	waitFor(t, "its subscription closed", func() bool { return e.subscribers(t, channel) == 0 })

	e.down()
	defer e.up()
	w = startWatch(t, store, 200*time.Millisecond)
	w.await(t, "a failure while Redis is down", isErr)
	ended(w)
}

// watchGoroutines counts the goroutines running this package's code.
func watchGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "/redisstore.") {
			count++
		}
	}
	return count
}

// The change log forgets, within a day, the accounts it names: an entry a
// day old is trimmed at the next write, and at the next watcher's poll,
// without making any watcher report All (its cursor, trimmed, is followed
// by an entry of no account). The log here is one left by hand, as if from
// changes long ago.
func TestChangeLogForgetsOldEntries(t *testing.T) {
	e := standaloneEnv(t)
	c := e.client(t, "")
	ctx := ctxFor(t)
	oldLog := func(p string) {
		for _, x := range []redis.XAddArgs{
			{Stream: p + "changes", ID: "1700000000000-0", Values: []string{"key", "alice", "op", "disconnect", "prev", ""}},
			{Stream: p + "changes", ID: "1700000000001-0", Values: []string{"key", "bob", "op", "replace", "prev", "1700000000000-0"}},
		} {
			if err := c.XAdd(ctx, &x).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	named := func(p string) []string {
		entries, err := c.XRange(ctx, p+"changes", "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, x := range entries {
			if k, ok := x.Values["key"].(string); ok {
				keys = append(keys, k)
			}
		}
		return keys
	}

	// At a write.
	p := prefix()
	oldLog(p)
	store := newStore(t, c, p)
	if err := store.Disconnect(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	entries, err := c.XRange(ctx, p+"changes", "-", "+").Result()
	if err != nil || len(entries) != 1 || entries[0].Values["key"] != "carol" || entries[0].Values["prev"] != "1700000000001-0" {
		t.Errorf("after a write, the log holds %v (%v); want carol's entry alone, after bob's", entries, err)
	}

	// At a poll.
	p = prefix()
	oldLog(p)
	store = newStore(t, c, p)
	evals := func() int {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, cmd := range []string{"evalsha", "eval"} {
			if i := strings.Index(info, "cmdstat_"+cmd+":calls="); i >= 0 {
				v, _, _ := strings.Cut(info[i+len("cmdstat_"+cmd+":calls="):], ",")
				k, _ := strconv.Atoi(v)
				n += k
			}
		}
		return n
	}
	w := e.watch(t, store, p, 200*time.Millisecond)
	if keys := named(p); len(keys) != 0 {
		t.Errorf("once a watcher has read the log, it still names %v", keys)
	}
	// Three more scripts run: two polls at least, the first past the
	// trimmed cursor.
	n := evals()
	waitFor(t, "two more polls", func() bool { return evals() >= n+3 })
	if err := store.Disconnect(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	seen := w.await(t, "dave", isKey("dave"))
	for _, c := range append(seen, w.drain()...) {
		if c.All || c.Key == "alice" || c.Key == "bob" {
			t.Errorf("the watcher reported %s; want dave alone", describe(seen))
			break
		}
	}
}
