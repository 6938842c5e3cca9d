package storetest

import (
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

const (
	// waitFor bounds every wait for a report, or for Watch to return: far
	// beyond any push or poll of a store on a busy machine, so that only a
	// report that never comes (or a Watch that never returns) fails.
	waitFor = 10 * time.Second
	// watchPoll is the poll the tests give Watch: reports may come by push
	// or from the log, the suite does not tell which.
	watchPoll = 200 * time.Millisecond
	// warmKey is the key the tests replace until a new Watch reports it.
	warmKey = "watch-warm"
)

// recorder is a Watch's report function, and what it was called with. It
// never calls t: a Watch that outlives its test may still call it.
type recorder struct {
	mu      sync.Mutex
	changes []dropboxsign.Change
	signal  chan struct{} // one pending wake-up at most

	inReport   atomic.Int32
	overlapped atomic.Int32 // calls made while another was running
	late       atomic.Int32 // calls made after Watch returned
	ended      atomic.Bool  // Watch returned
}

func (r *recorder) report(c dropboxsign.Change) {
	if r.inReport.Add(1) != 1 {
		r.overlapped.Add(1)
	}
	defer r.inReport.Add(-1)
	if r.ended.Load() {
		r.late.Add(1)
	}
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// mark returns how many changes were reported so far.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes)
}

// wait waits up to d for a report, after the first from, of key (or of All,
// if all says it will do: All covers every key), and says whether one came.
func (r *recorder) wait(key string, from int, d time.Duration, all bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, c := range r.changes[from:] {
			if c.Err == nil && (c.Key == key || all && c.All) {
				r.mu.Unlock()
				return true
			}
		}
		r.mu.Unlock()
		select {
		case <-r.signal:
		case <-deadline.C:
			return false
		}
	}
}

// summary says what was reported, for a failure's message.
func (r *recorder) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	count := map[string]int{}
	var errs []string
	all := 0
	for _, c := range r.changes {
		switch {
		case c.Err != nil:
			errs = append(errs, c.Err.Error())
		case c.All:
			all++
		default:
			if count[c.Key] == 0 {
				keys = append(keys, c.Key)
			}
			count[c.Key]++
		}
	}
	var b strings.Builder
	b.WriteString("keys [")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%q×%d", k, count[k])
	}
	fmt.Fprintf(&b, "], %d All, errors %q", all, errs)
	return b.String()
}

// errs returns the failures reported.
func (r *recorder) errs() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, c := range r.changes {
		if c.Err != nil {
			errs = append(errs, c.Err)
		}
	}
	return errs
}

// A watch is a Watch running in a goroutine of its own.
type watch struct {
	name   string
	rec    *recorder
	cancel context.CancelFunc
	done   chan struct{}
}

func startWatch(t *testing.T, w dropboxsign.Watcher, name string) *watch {
	ctx, cancel := context.WithCancel(context.Background())
	wt := &watch{name: name, rec: &recorder{signal: make(chan struct{}, 1)}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(wt.done)
		w.Watch(ctx, watchPoll, wt.rec.report)
		wt.rec.ended.Store(true)
	}()
	t.Cleanup(func() { wt.stop(t) })
	return wt
}

// awaitStarted replaces warmKey through s until the watch reports it: from
// then on it is watching (a change made before Watch was called need not be
// reported, and the suite cannot tell when the goroutine called it).
func (wt *watch) awaitStarted(t *testing.T, s dropboxsign.Store) {
	t.Helper()
	ctx := ctxFor(t)
	deadline := time.Now().Add(waitFor)
	try := 10 * time.Millisecond // each try longer: a slow store's report has time to come
	for n := 1; ; n++ {
		from := wt.rec.mark()
		if err := s.Replace(ctx, warmKey, token(n)); err != nil {
			t.Fatalf("Replace(%q): %v", warmKey, err)
		}
		if wt.rec.wait(warmKey, from, try, false) {
			return
		}
		try = min(2*try, time.Second)
		if time.Now().After(deadline) {
			t.Fatalf("a Watch on %s reported none of %d Replaces of %q in %v; it reported %s", wt.name, n, warmKey, waitFor, wt.rec.summary())
		}
	}
}

// stop ends the watch's context and waits for Watch to return.
func (wt *watch) stop(t *testing.T) {
	t.Helper()
	wt.cancel()
	select {
	case <-wt.done:
	case <-time.After(waitFor):
		t.Errorf("Watch on %s did not return within %v of its context's end", wt.name, waitFor)
		return
	}
	if n := wt.rec.overlapped.Load(); n > 0 {
		t.Errorf("Watch on %s called report while another call was running (%d times): one call at a time", wt.name, n)
	}
	if n := wt.rec.late.Load(); n > 0 {
		t.Errorf("Watch on %s called report %d times after it returned", wt.name, n)
	}
}

// testWatch: a Watch reports the Disconnects and Replaces made through the
// store it was called on, and, given a second handle on the same backend
// (WithPeer), those made through either handle, to watches on both.
func testWatch(t *testing.T, s, peer dropboxsign.Store) {
	ctx := ctxFor(t)
	type handle struct {
		name string
		s    dropboxsign.Store
	}
	handles := []handle{{"the store", s}}
	if peer != nil {
		handles = append(handles, handle{"a second handle on its backend", peer})
	} else {
		t.Log("no WithPeer: the Watch is checked with changes made through the same handle only")
	}
	// What the steps change is set up before the watches start, and
	// each step changes a key of its own: a late or repeated report of
	// one step's key (allowed) cannot pass for another's.
	key := func(i int, what string) string { return fmt.Sprintf("w-%d-%s", i, what) }
	for i, h := range handles {
		if err := h.s.Save(ctx, key(i, "token"), nil, secretToken()); err != nil {
			t.Fatal(err)
		}
		refused := secretToken()
		if err := h.s.Save(ctx, key(i, "refused"), nil, refused); err != nil {
			t.Fatal(err)
		}
		if err := h.s.MarkRefused(ctx, key(i, "refused"), refused); err != nil {
			t.Fatal(err)
		}
		if err := h.s.Disconnect(ctx, key(i, "mark")); err != nil {
			t.Fatal(err)
		}
	}
	var watches []*watch
	for _, h := range handles {
		w, ok := h.s.(dropboxsign.Watcher)
		if !ok {
			t.Fatalf("%s, %T, is not a Watcher", h.name, h.s)
		}
		wt := startWatch(t, w, h.name)
		wt.awaitStarted(t, s)
		watches = append(watches, wt)
	}
	for i, h := range handles {
		for _, step := range []struct {
			what, key string
			do        func(key string) error
		}{
			{"Disconnect over a token", key(i, "token"), func(k string) error { return h.s.Disconnect(ctx, k) }},
			{"Disconnect over a refusal mark", key(i, "refused"), func(k string) error { return h.s.Disconnect(ctx, k) }},
			{"Disconnect over nothing", key(i, "nothing"), func(k string) error { return h.s.Disconnect(ctx, k) }},
			{"Replace over nothing", key(i, "new"), func(k string) error { return h.s.Replace(ctx, k, secretToken()) }},
			{"Replace over a disconnection mark", key(i, "mark"), func(k string) error { return h.s.Replace(ctx, k, secretToken()) }},
		} {
			from := make([]int, len(watches))
			for j, wt := range watches {
				from[j] = wt.rec.mark()
			}
			if err := step.do(step.key); err != nil {
				t.Fatalf("%s of %q through %s: %v", step.what, step.key, h.name, err)
			}
			for j, wt := range watches {
				if !wt.rec.wait(step.key, from[j], waitFor, true) {
					t.Fatalf("a Watch on %s did not report the %s of %q made through %s within %v; it reported %s",
						wt.name, step.what, step.key, h.name, waitFor, wt.rec.summary())
				}
			}
		}
	}
	for _, wt := range watches {
		wt.stop(t)
		// Failures are reported to be retried; a healthy store has none
		// to report, but a report is not a breach of the contract.
		for _, err := range wt.rec.errs() {
			t.Logf("Watch on %s reported a failure: %v", wt.name, err)
		}
	}
}

// testWatchEnds: Watch returns once its context ends (one that has ended
// already too), and leaves no goroutine behind.
func testWatchEnds(t *testing.T, w dropboxsign.Watcher) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Watch(ended, watchPoll, func(dropboxsign.Change) {})
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatalf("Watch with a context ended already did not return within %v", waitFor)
	}

	// One watch first, to start what the store starts once (connections
	// of a pool, say), and then several, each of which must take with it
	// whatever it started: a goroutine left behind by each adds up.
	cycle := func() {
		wt := startWatch(t, w, "the store")
		wt.awaitStarted(t, w)
		wt.stop(t)
	}
	cycle()
	if t.Failed() {
		return
	}
	const cycles, tolerance = 5, 2
	base := runtime.NumGoroutine()
	for range cycles {
		cycle()
	}
	deadline := time.Now().Add(waitFor)
	for n := runtime.NumGoroutine(); n > base+tolerance; n = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			var dump strings.Builder
			if err := pprof.Lookup("goroutine").WriteTo(&dump, 1); err != nil {
				dump.WriteString(err.Error())
			}
			t.Fatalf("%d goroutines %v after %d Watches returned, %d before them (tolerance %d): Watch leaves goroutines behind; goroutines:\n%s",
				n, waitFor, cycles, base, tolerance, dump.String())
		}
		time.Sleep(10 * time.Millisecond) // polling for goroutines to exit: nothing to wait on
	}
}
