package dropboxsign_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// Review of issue 19 (failing tests: the lead fixes the code).

// steeredStore is a dropboxsigntest.Store whose watch reports only what
// the test sends, each send returning once report has returned, and whose
// Load can be held, once armed, after it has read the store.
type steeredStore struct {
	*dropboxsigntest.Store
	changes chan dropboxsign.Change
	handled chan struct{}

	mu      sync.Mutex
	hold    bool
	loaded  chan struct{} // closed when a held Load has read the store
	release chan struct{} // closed to let it return
}

func newSteeredStore(mem *dropboxsigntest.Store) *steeredStore {
	return &steeredStore{Store: mem, changes: make(chan dropboxsign.Change), handled: make(chan struct{})}
}

func (s *steeredStore) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-s.changes:
			report(c)
			s.handled <- struct{}{}
		}
	}
}

// send has the watch report c and returns once report has returned.
func (s *steeredStore) send(t *testing.T, ctx context.Context, c dropboxsign.Change) {
	t.Helper()
	select {
	case s.changes <- c:
	case <-ctx.Done():
		t.Fatal("the watch never took the change")
	}
	select {
	case <-s.handled:
	case <-ctx.Done():
		t.Fatal("the report never returned")
	}
}

// armLoad holds the next Load once it has read the store.
func (s *steeredStore) armLoad() (loaded, release chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold, s.loaded, s.release = true, make(chan struct{}), make(chan struct{})
	return s.loaded, s.release
}

func (s *steeredStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	tok, err := s.Store.Load(ctx, key)
	s.mu.Lock()
	hold, loaded, release := s.hold, s.loaded, s.release
	s.hold = false
	s.mu.Unlock()
	if hold {
		close(loaded)
		<-release
	}
	return tok, err
}

// Two changes of one account in quick succession (a login on one replica,
// then a disconnection on another): the first has replica b read the store
// again; the second comes while that read is under way, after it has read
// the store. The second must not be lost: b's next call reads the store
// again and finds the mark. (recheck returns without a new state when the
// state already has recheck set, so publish, which sees the state it
// started from, carries nothing over.)
func TestReviewASecondChangeDuringTheRecheckIsNotLost(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	steer := newSteeredStore(mem)
	a := dropboxsign.NewAccounts(ctx, srv.Config(), mem, dropboxsign.AsAnotherProcess(), dropboxsign.WithWatchPoll(time.Hour))
	b := dropboxsign.NewAccounts(ctx, srv.Config(), steer, dropboxsign.AsAnotherProcess(), dropboxsign.WithWatchPoll(time.Hour))
	defer a.Shutdown(ctx)
	defer b.Shutdown(ctx)
	connected(t, ctx, mem, srv, "kim", a, b)

	// The first change: b reads the store again at its next call.
	steer.send(t, ctx, dropboxsign.Change{Key: "kim"})
	loaded, release := steer.armLoad()
	done := make(chan error, 1)
	go func() {
		_, err := b.TokenSource("kim").TokenContext(ctx)
		done <- err
	}()
	select {
	case <-loaded: // b's run has read the store: the token, not yet the mark
	case <-ctx.Done():
		t.Fatal("b never read the store")
	}
	if err := a.Disconnect(ctx, "kim"); err != nil {
		t.Fatal(err)
	}
	steer.send(t, ctx, dropboxsign.Change{Key: "kim"}) // b hears of the disconnection
	close(release)
	<-done // handed out before the news: fine
	before := srv.Stats()
	tok, err := b.TokenSource("kim").TokenContext(ctx)
	if err == nil {
		t.Fatalf("replica b serves %.8s… after the store told it of the disconnection; want ErrDisconnected", tok.AccessToken)
	}
	wantDisconnected(t, err, "replica b")
	if after := srv.Stats(); after.TokenRequests != before.TokenRequests {
		t.Fatalf("token requests %d -> %d", before.TokenRequests, after.TokenRequests)
	}
}

// plainStore is a Store and nothing more (no Watcher, no Lister): this
// process learns of nothing but by reading it. Its Disconnect calls
// before, if set, first.
type plainStore struct {
	dropboxsign.Store
	before func()
}

func (p *plainStore) Disconnect(ctx context.Context, key string) error {
	if p.before != nil {
		p.before()
	}
	return p.Store.Disconnect(ctx, key)
}

// A source made while Disconnect's store call is under way (a request for
// the account that comes at that moment) reads the token before the mark
// is written; Disconnect looked for the account's source before, found
// none, and cuts nothing. Once Disconnect has returned nil, its doc says,
// "every call for the account fails": here the next call serves the grant
// from memory. (disconnect.go: lookup and cut only before the store call.)
func TestReviewASourceMadeDuringDisconnectStopsWhenItReturns(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	store := &plainStore{Store: mem}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store)
	defer a.Shutdown(ctx)
	tok := srv.IssueToken()
	if err := mem.Save(ctx, "lea", nil, tok); err != nil {
		t.Fatal(err)
	}
	store.before = func() {
		// A request for the account, at this moment: it is served.
		if _, err := a.TokenSource("lea").TokenContext(ctx); err != nil {
			t.Errorf("the call during Disconnect: %v", err)
		}
	}
	if err := a.Disconnect(ctx, "lea"); err != nil {
		t.Fatal(err)
	}
	got, err := a.TokenSource("lea").TokenContext(ctx)
	if err == nil {
		t.Fatalf("after Disconnect returned nil, this process serves %.8s…; want ErrDisconnected", got.AccessToken)
	}
	wantDisconnected(t, err, "the call after Disconnect")
}

// The same window with a source held and cut: the store reports a change
// of the account (a login on another replica, just before) while
// Disconnect's store call is under way. recheck clears the cut state's
// retryAt, a call starts a run from the cut state, the run reads the
// login's token (the mark is not yet written) and publishes it: publish
// only drops runs that began before the cut (cur.cut && cur != from).
// Disconnect then returns nil and this process serves the grant.
func TestReviewARunStartedFromTheCutStateDoesNotOutliveDisconnect(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	steer := newSteeredStore(mem)
	hooked := &steeredDisconnect{steeredStore: steer}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), hooked, dropboxsign.WithWatchPoll(time.Hour))
	defer a.Shutdown(ctx)
	connected(t, ctx, mem, srv, "mo", a)
	hooked.before = func() {
		// Another replica's login, reported now.
		if err := mem.Replace(ctx, "mo", srv.IssueToken()); err != nil {
			t.Error(err)
		}
		steer.send(t, ctx, dropboxsign.Change{Key: "mo"})
		a.TokenSource("mo").TokenContext(ctx) // a call at this moment
	}
	if err := a.Disconnect(ctx, "mo"); err != nil {
		t.Fatal(err)
	}
	got, err := a.TokenSource("mo").TokenContext(ctx)
	if err == nil {
		t.Fatalf("after Disconnect returned nil, this process serves %.8s…; want ErrDisconnected", got.AccessToken)
	}
	wantDisconnected(t, err, "the call after Disconnect")
}

type steeredDisconnect struct {
	*steeredStore
	before func()
}

func (s *steeredDisconnect) Disconnect(ctx context.Context, key string) error {
	if s.before != nil {
		s.before()
	}
	return s.steeredStore.Disconnect(ctx, key)
}

// hangingDisconnect is a store whose Disconnect does not return until
// release is closed, whatever its context (a network partition with no
// deadline set, or a store that ignores ctx).
type hangingDisconnect struct {
	dropboxsign.Store
	entered, release chan struct{}
}

func (h *hangingDisconnect) Disconnect(ctx context.Context, key string) error {
	close(h.entered)
	<-h.release
	return h.Store.Disconnect(ctx, key)
}

// Disconnect holds the account's login lock (one of 64 stripes, shared
// with other accounts) across a store call bounded only by the caller's
// context: every other store call of the package is bounded by
// WithTimeout. With a context without deadline and a store that does not
// answer, a Login of the account, whose own context has a deadline, never
// returns (install takes the same lock, without a context). Expected: the
// store call is bounded (WithTimeout), Disconnect returns an error, and
// the Login goes on.
func TestReviewAHungDisconnectDoesNotHangLogins(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	conf := srv.Config()
	hang := &hangingDisconnect{Store: dropboxsigntest.NewStore(), entered: make(chan struct{}), release: make(chan struct{})}
	defer close(hang.release)
	a := dropboxsign.NewAccounts(ctx, conf, hang, dropboxsign.WithTimeout(50*time.Millisecond))
	disconnected := make(chan error, 1)
	go func() { disconnected <- a.Disconnect(context.Background(), "ned") }()
	<-hang.entered
	code := authorize(t, srv, conf, "st-ned")
	loginCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	loggedIn := make(chan error, 1)
	go func() { _, err := a.Login(loginCtx, "ned", code, "st-ned"); loggedIn <- err }()
	wait, cancelWait := context.WithTimeout(ctx, 10*time.Second)
	defer cancelWait()
	select {
	case <-loggedIn:
	case <-wait.Done():
		t.Fatal("Login (deadline 200ms) has not returned after 10s: Disconnect holds the account's login lock across an unbounded store call")
	}
	select {
	case <-disconnected:
	case <-wait.Done():
		t.Fatal("Disconnect with a store that does not answer never returns (not bounded by WithTimeout)")
	}
}

// WithStore's doc: "A t given anyway seeds an empty store (it is stored
// before it is handed out)". A token given without ExpiresIn (one the app
// kept in its own columns: ExpiresIn is only set from a token response)
// no longer seeds: mayRestore says no, and the source says "not
// connected" (run.go: the !mayRestore case comes before the seed case).
func TestReviewAGivenTokenStillSeedsAnEmptyStore(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	issued := srv.IssueToken()
	given := &oauth2.Token{AccessToken: issued.AccessToken, TokenType: "Bearer", RefreshToken: issued.RefreshToken, Expiry: issued.Expiry}
	ts := dropboxsign.NewTokenSource(ctx, srv.Config(), given, dropboxsign.WithStore(mem, "oz"))
	got, err := ts.TokenContext(ctx)
	if err != nil {
		t.Fatalf("a given token, empty store: %v; WithStore says it seeds the store", err)
	}
	if got.AccessToken != given.AccessToken {
		t.Fatal("not the given token")
	}
	if stored, err := mem.Load(ctx, "oz"); err != nil || stored.AccessToken != given.AccessToken {
		t.Fatalf("the store holds %v, %v; want the given token", stored, err)
	}
}

// brokenOnceWatch is a store whose first Watch call waits for fail, then
// panics (a bug in a store's watch, or a driver's); later calls watch the
// store underneath. calls counts the calls begun.
type brokenOnceWatch struct {
	*dropboxsigntest.Store
	fail  chan struct{}
	mu    sync.Mutex
	calls int
}

func (b *brokenOnceWatch) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	b.mu.Lock()
	b.calls++
	first := b.calls == 1
	b.mu.Unlock()
	if first {
		select {
		case <-b.fail:
			panic("the watch broke")
		case <-ctx.Done():
			return
		}
	}
	b.Store.Watch(ctx, poll, report)
}

func (b *brokenOnceWatch) started() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

// Accounts starts a Watch again when one returns before its end (a
// panic), after a backoff; the new Watch reports only what changes from
// the moment it is called (Watcher's contract). What changed meanwhile is
// reported by nobody: the restart should report Change{All} (every held
// account reads the store again), as a watch that lost track does. Here a
// disconnection made while the watch was down is never learnt by replica
// b, which serves the grant until its next refresh (an hour).
// (accounts_watch.go: the restart loop reports Err only.)
func TestReviewChangesWhileTheWatchRestartsAreNotLost(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	mem := dropboxsigntest.NewStore()
	broken := &brokenOnceWatch{Store: mem, fail: make(chan struct{})}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), mem, dropboxsign.AsAnotherProcess())
	b := dropboxsign.NewAccounts(ctx, srv.Config(), broken, dropboxsign.AsAnotherProcess(), dropboxsign.WithWatchPoll(20*time.Millisecond))
	defer a.Shutdown(ctx)
	defer b.Shutdown(ctx)
	connected(t, ctx, mem, srv, "pia", a, b)
	until(t, ctx, "b's watch begins", func() bool { return broken.started() == 1 })
	close(broken.fail)                               // the watch breaks ...
	if err := a.Disconnect(ctx, "pia"); err != nil { // ... and the account is disconnected while it is down
		t.Fatal(err)
	}
	until(t, ctx, "b's watch starts again", func() bool { return broken.started() == 2 })
	wait, cancel := context.WithTimeout(ctx, 5*time.Second) // 250 polls of the restarted watch
	defer cancel()
	for {
		if _, err := b.TokenSource("pia").TokenContext(ctx); err != nil {
			wantDisconnected(t, err, "replica b")
			return
		}
		select {
		case <-wait.Done():
			t.Fatal("replica b serves the grant of an account disconnected while its watch was down; the restarted watch never tells it")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// shutdownWatch is a store whose Watch takes a moment to end once its
// context ends (closing a LISTEN connection, say), and records it.
type shutdownWatch struct {
	*dropboxsigntest.Store
	called   atomic.Bool
	returned chan struct{}
}

func (s *shutdownWatch) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	s.called.Store(true)
	s.Store.Watch(ctx, poll, report)
	time.Sleep(50 * time.Millisecond) // not synchronization: the cleanup's length
	close(s.returned)
}

// Shutdown's doc: it "stops the watch of the store's changes ... and
// waits until those under way have ended"; "every call after Shutdown
// begins ... touches neither the store nor Dropbox Sign". Shutdown cancels
// the watch's context and returns without waiting for Watch to return: an
// app that closes its pool or client right after Shutdown races the
// watch, and a goroutine-leak check after Shutdown finds it.
func TestReviewShutdownWaitsForTheWatch(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	s := &shutdownWatch{Store: dropboxsigntest.NewStore(), returned: make(chan struct{})}
	a := dropboxsign.NewAccounts(ctx, srv.Config(), s)
	connected(t, ctx, s.Store, srv, "qi", a)
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.returned:
	default:
		if s.called.Load() { // (a Shutdown that came before the watch started has none to wait for)
			t.Fatal("Shutdown returned while the store's Watch was still running")
		}
	}
}

// dropboxsigntest.Store.Watch with a poll of 0 or less panics
// (time.NewTicker); FileStore, pgstore and redisstore take it for
// DefaultWatchPoll. Bad input: an error or a default, never a panic.
func TestReviewMemoryStoreWatchTakesAZeroPoll(t *testing.T) {
	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Watch with poll 0 panicked: %v", p)
		}
	}()
	dropboxsigntest.NewStore().Watch(ctx, 0, func(dropboxsign.Change) {})
}
