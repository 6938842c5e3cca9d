//go:build unix

package dropboxsign_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

// FileStore's disconnection marks, Forget, and Watch (issue 19). Every
// test here failed on the FileStore before them, whose Disconnect, Forget,
// Disconnected and Watch did nothing.

// wait bounds every wait for a report or a process: generous, for a busy
// machine; the tests assert what is reported, never how fast.
const wait = 10 * time.Second

// markOnly fails unless key's file holds a disconnection mark and nothing
// else: no token, no sealed blob, no refusal.
func markOnly(t *testing.T, fs *dropboxsign.FileStore, key string) {
	t.Helper()
	b, err := os.ReadFile(fs.Path(key))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	for name := range rec {
		if name != "key" && name != "disconnected_at" && name != "saved_at" {
			t.Errorf("%s: the mark holds %q: %s", key, name, b)
		}
	}
	if _, ok := rec["disconnected_at"]; !ok {
		t.Errorf("%s: no disconnection mark: %s", key, b)
	}
	if bytes.Contains(b, []byte("secret-")) {
		t.Errorf("%s: the file shows a token: %s", key, b)
	}
}

// disconnectedSince returns the time of key's mark, failing unless Load
// reports one.
func disconnectedSince(t *testing.T, fs *dropboxsign.FileStore, key string) time.Time {
	t.Helper()
	tok, err := fs.Load(context.Background(), key)
	var de *dropboxsign.DisconnectedError
	if !errors.As(err, &de) || de.Key != key || !errors.Is(err, dropboxsign.ErrDisconnected) {
		t.Fatalf("Load(%q) = %v, %v; want a *DisconnectedError for it", key, tok, err)
	}
	if de.Since.IsZero() {
		t.Errorf("Load(%q): the mark has no time", key)
	}
	return de.Since
}

// Whatever a key's file holds, Disconnect leaves a mark and nothing of the
// grant.
func TestFileStoreDisconnectReplacesAnything(t *testing.T) {
	ctx := testContext(t)
	dir := filepath.Join(t.TempDir(), "tokens")
	fs, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, bytes.Repeat([]byte{1}, 32))))
	if err != nil {
		t.Fatal(err)
	}
	rotatedOut, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, bytes.Repeat([]byte{2}, 32))))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fs.Save(ctx, "sealed", nil, secretToken("s")))
	must(plain.Save(ctx, "plain", nil, secretToken("p")))
	must(fs.Save(ctx, "refused", nil, secretToken("r")))
	must(fs.MarkRefused(ctx, "refused", secretToken("r")))
	must(rotatedOut.Save(ctx, "rotated", nil, secretToken("o"))) // fs cannot open it
	must(os.WriteFile(fs.Path("corrupt"), []byte(`{"key": "corrupt", "token": {"access_token": "secret-x"`), 0o600))
	b, _ := os.ReadFile(fs.Path("plain"))
	must(os.WriteFile(fs.Path("copied"), b, 0o600)) // another key's file

	before := time.Now()
	keys := []string{"sealed", "plain", "refused", "rotated", "corrupt", "copied", "nothing"}
	for _, key := range keys {
		if err := fs.Disconnect(ctx, key); err != nil {
			t.Fatalf("Disconnect(%q): %v", key, err)
		}
	}
	after := time.Now()
	for _, key := range keys {
		since := disconnectedSince(t, fs, key)
		if since.Before(before.Add(-time.Second)) || since.After(after.Add(time.Second)) {
			t.Errorf("%s: disconnected since %v, not between %v and %v", key, since, before, after)
		}
		markOnly(t, fs, key)
	}
}

// After a mark no save writes a grant back; a second Disconnect keeps the
// first one's time; the listings tell marks apart; Replace (a new login)
// ends it.
func TestFileStoreDisconnectionMark(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	old := secretToken("1")
	if err := fs.Save(ctx, "acct", nil, old); err != nil {
		t.Fatal(err)
	}
	if err := fs.Save(ctx, "refused", nil, secretToken("r")); err != nil {
		t.Fatal(err)
	}
	if err := fs.MarkRefused(ctx, "refused", secretToken("r")); err != nil {
		t.Fatal(err)
	}
	if err := fs.Save(ctx, "token", nil, secretToken("t")); err != nil {
		t.Fatal(err)
	}
	if err := fs.Disconnect(ctx, "acct"); err != nil {
		t.Fatal(err)
	}
	first := disconnectedSince(t, fs, "acct")
	for name, err := range map[string]error{
		"Save(prev = the old token)": fs.Save(ctx, "acct", old, secretToken("2")),
		"Save(prev = nil)":           fs.Save(ctx, "acct", nil, secretToken("2")),
		"MarkRefused(the old token)": fs.MarkRefused(ctx, "acct", old),
	} {
		if !errors.Is(err, dropboxsign.ErrConflict) {
			t.Errorf("%s over a disconnection mark: %v, want ErrConflict", name, err)
		}
	}
	markOnly(t, fs, "acct")
	if err := fs.Disconnect(ctx, "acct"); err != nil {
		t.Fatal(err)
	}
	if again := disconnectedSince(t, fs, "acct"); !again.Equal(first) {
		t.Errorf("a second Disconnect moved the mark from %v to %v", first, again)
	}

	if keys, err := keysOf(fs); err != nil || !slices.Equal(keys, []string{"acct", "refused", "token"}) {
		t.Errorf("Keys = %q, %v", keys, err)
	}
	var refused, disconnected []string
	for e, err := range fs.Refused(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		refused = append(refused, e.Key)
	}
	for e, err := range fs.Disconnected(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if !e.Since.Equal(first) {
			t.Errorf("Disconnected: %s since %v, want %v", e.Key, e.Since, first)
		}
		disconnected = append(disconnected, e.Key)
	}
	if !slices.Equal(refused, []string{"refused"}) || !slices.Equal(disconnected, []string{"acct"}) {
		t.Errorf("Refused = %q, Disconnected = %q; want [refused] and [acct]", refused, disconnected)
	}

	fresh := secretToken("new login")
	if err := fs.Replace(ctx, "acct", fresh); err != nil {
		t.Fatal(err)
	}
	if tok, err := fs.Load(ctx, "acct"); err != nil || tok.AccessToken != fresh.AccessToken {
		t.Fatalf("after Replace: %v, %v", tok, err)
	}
	if err := fs.Save(ctx, "acct", fresh, secretToken("refreshed")); err != nil {
		t.Errorf("Save after Replace: %v", err)
	}
	for e, err := range fs.Disconnected(ctx) {
		t.Errorf("Disconnected after Replace: %v, %v", e, err)
	}
}

// Files written by the version before disconnection marks read as they
// did, and are listed as they were.
func TestFileStoreReadsRecordsOfThePreviousVersion(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	os.WriteFile(fs.Path("plain"), []byte(`{
  "key": "plain",
  "token": {"access_token": "secret-at-p", "token_type": "Bearer", "refresh_token": "secret-rt-p", "expiry": "2030-01-02T03:04:05Z"},
  "saved_at": "2025-01-01T00:00:00Z"
}`), 0o600)
	os.WriteFile(fs.Path("refused"), []byte(`{"key": "refused", "refused_at": "2025-02-03T04:05:06Z", "saved_at": "2025-02-03T04:05:06Z"}`), 0o600)

	tok, err := fs.Load(ctx, "plain")
	if err != nil || tok.AccessToken != "secret-at-p" || tok.RefreshToken != "secret-rt-p" || !tok.Expiry.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("Load(plain) = %+v, %v", tok, err)
	}
	var re *dropboxsign.RefusedError
	if _, err := fs.Load(ctx, "refused"); !errors.As(err, &re) || !re.Since.Equal(time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC)) {
		t.Fatalf("Load(refused) = %v", err)
	}
	for e, err := range fs.Disconnected(ctx) {
		t.Errorf("Disconnected lists %v, %v", e, err)
	}
	n := 0
	for e, err := range fs.Refused(ctx) {
		if err != nil || e.Key != "refused" {
			t.Errorf("Refused: %v, %v", e, err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("Refused listed %d keys, want 1", n)
	}
	if err := fs.Save(ctx, "plain", tok, secretToken("p2")); err != nil {
		t.Errorf("Save over an old token: %v", err)
	}
	if err := fs.Save(ctx, "refused", nil, secretToken("r2")); err != nil {
		t.Errorf("Save over an old refusal: %v", err)
	}
}

// Forget erases a mark old enough, and every name of the key in the
// directory with it; it changes nothing else.
func TestFileStoreForget(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	dir := filepath.Dir(fs.Path("x"))
	far := time.Now().Add(time.Hour)
	if err := fs.Forget(ctx, "never", far); err != nil {
		t.Errorf("Forget of a key with nothing: %v", err)
	}
	if err := fs.Save(ctx, "token", nil, secretToken("t")); err != nil {
		t.Fatal(err)
	}
	if err := fs.Save(ctx, "refused", nil, secretToken("r")); err != nil {
		t.Fatal(err)
	}
	if err := fs.MarkRefused(ctx, "refused", secretToken("r")); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"token", "refused"} {
		if err := fs.Forget(ctx, key, far); !errors.Is(err, dropboxsign.ErrConflict) {
			t.Errorf("Forget(%q): %v, want ErrConflict", key, err)
		}
	}
	if tok, err := fs.Load(ctx, "token"); err != nil || tok.AccessToken != "secret-at-t" {
		t.Errorf("the token after a refused Forget: %v, %v", tok, err)
	}
	var re *dropboxsign.RefusedError
	if _, err := fs.Load(ctx, "refused"); !errors.As(err, &re) {
		t.Errorf("the refusal after a refused Forget: %v", err)
	}

	if err := fs.Save(ctx, "gone", nil, secretToken("g")); err != nil {
		t.Fatal(err)
	}
	unlock, err := fs.Lock(ctx, "gone") // leaves its refresh lock file
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if err := fs.Disconnect(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	since := disconnectedSince(t, fs, "gone")
	if err := fs.Forget(ctx, "gone", since); !errors.Is(err, dropboxsign.ErrConflict) {
		t.Errorf("Forget of a mark not older than before: %v, want ErrConflict", err)
	}
	disconnectedSince(t, fs, "gone")
	if err := fs.Forget(ctx, "gone", since.Add(time.Nanosecond)); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	if _, err := fs.Load(ctx, "gone"); !errors.Is(err, dropboxsign.ErrNotFound) {
		t.Errorf("Load after Forget: %v, want ErrNotFound", err)
	}
	if keys, err := keysOf(fs); err != nil || !slices.Equal(keys, []string{"refused", "token"}) {
		t.Errorf("Keys after Forget = %q, %v", keys, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "gone") {
			t.Errorf("Forget left %s", e.Name())
		}
		if b, _ := os.ReadFile(filepath.Join(dir, e.Name())); bytes.Contains(b, []byte("gone")) {
			t.Errorf("Forget left the key in %s: %q", e.Name(), b)
		}
	}
	if err := fs.Forget(ctx, "gone", far); err != nil {
		t.Errorf("a second Forget: %v", err)
	}
	if err := fs.Replace(ctx, "gone", secretToken("back")); err != nil {
		t.Errorf("a login after Forget: %v", err)
	}

	os.WriteFile(fs.Path("bad"), []byte("{"), 0o600)
	if err := fs.Forget(ctx, "bad", far); err == nil || errors.Is(err, dropboxsign.ErrConflict) || !strings.Contains(err.Error(), fs.Path("bad")) {
		t.Errorf("Forget of a file the store cannot read: %v, want an error naming it", err)
	}
	if _, err := os.Stat(fs.Path("bad")); err != nil {
		t.Errorf("Forget removed a file it could not read: %v", err)
	}
}

// A refresh lock that a process holds is left to it by Forget, and still
// excludes others.
func TestFileStoreForgetLeavesAHeldRefreshLock(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	if err := fs.Disconnect(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	unlock, err := fs.Lock(ctx, "held")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if err := fs.Forget(ctx, "held", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if u, err := fs.Lock(short, "held"); err == nil {
		u()
		t.Fatal("a second holder got a refresh lock that is held")
	}
	unlock()
	if u, err := fs.Lock(ctx, "held"); err != nil {
		t.Errorf("the refresh lock once free: %v", err)
	} else {
		u()
	}
}

// Forget removes a key's data lock file while it holds it: saves that
// were waiting on the removed file must still be excluded from those that
// take the new one. Each round, after Forget, exactly one of the racing
// Save(prev = nil) may win. (Before lock checked the file it locked is
// still the one named, two won in some rounds.)
func TestFileStoreForgetKeepsSavesExclusive(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	const rounds, savers = 200, 6
	for round := range rounds {
		if err := fs.Disconnect(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		var won atomic.Int32
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := fs.Forget(ctx, "k", time.Now().Add(time.Hour)); err != nil {
				t.Error(err)
			}
		})
		for i := range savers {
			wg.Go(func() {
				switch err := fs.Save(ctx, "k", nil, secretToken(fmt.Sprint(round, i))); {
				case err == nil:
					won.Add(1)
				case !errors.Is(err, dropboxsign.ErrConflict):
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := won.Load(); n > 1 {
			t.Fatalf("round %d: %d saves from nothing won, one at most may", round, n)
		}
	}
}

// watching is a Watch under test: its reports, and a gate that holds the
// watcher inside report while the test changes the journal under it.
type watching struct {
	t       *testing.T
	fs      *dropboxsign.FileStore
	changes chan dropboxsign.Change
	gated   chan struct{}
	release chan struct{}
	strict  bool // a report with Err fails the waits
}

const gateKey = "watch-gate"

// watch runs fs.Watch until the test ends, and checks that it returns
// then. With started, it returns once the watch is under way (a line of
// its own reported).
func watch(t *testing.T, fs *dropboxsign.FileStore, poll time.Duration, started bool) *watching {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watching{t: t, fs: fs, changes: make(chan dropboxsign.Change, 1<<16),
		gated: make(chan struct{}), release: make(chan struct{}), strict: true}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fs.Watch(ctx, poll, func(c dropboxsign.Change) {
			if c.Key == gateKey {
				select {
				case w.gated <- struct{}{}:
					select {
					case <-w.release:
					case <-ctx.Done():
					}
				case <-ctx.Done():
				}
				return
			}
			select {
			case w.changes <- c:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(wait):
			t.Error("Watch did not return when its context ended")
		}
	})
	if started {
		w.started()
	}
	return w
}

// appendJournal appends s to fs's journal, as a writer (or another
// program) would.
func appendJournal(t *testing.T, fs *dropboxsign.FileStore, s string) {
	t.Helper()
	f, err := os.OpenFile(journalPath(fs, dropboxsign.JournalName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func journalPath(fs *dropboxsign.FileStore, name string) string {
	return filepath.Join(filepath.Dir(fs.Path("x")), name)
}

// started writes probe lines until the watcher reports one: from then on
// it sees every change. The watch reports All once as it starts (its
// caller may have read the store before: see dropboxsign.Watcher), and
// nothing else but the probes.
func (w *watching) started() {
	w.t.Helper()
	deadline := time.After(wait)
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	startAll := false
	for i := 0; ; i++ {
		appendJournal(w.t, w.fs, fmt.Sprintf("watch-probe-%d\n", i))
		for again := false; !again; {
			select {
			case c := <-w.changes:
				if strings.HasPrefix(c.Key, "watch-probe-") {
					return
				}
				if c.All && !startAll && c.Err == nil {
					startAll = true
					continue
				}
				if c.Err != nil || c.All {
					w.t.Fatalf("starting the watch: %+v", c)
				}
			case <-retry.C:
				again = true
			case <-deadline:
				w.t.Fatal("the watch never reported a line of the journal")
			}
		}
	}
}

// next returns the reports until one that match accepts, failing after
// wait; reports with All, or with Err if strict, fail it unless match
// accepts them.
func (w *watching) next(what string, match func(dropboxsign.Change) bool) []dropboxsign.Change {
	w.t.Helper()
	var seen []dropboxsign.Change
	deadline := time.After(wait)
	for {
		select {
		case c := <-w.changes:
			seen = append(seen, c)
			switch {
			case match(c):
				return seen
			case c.All, c.Err != nil && w.strict:
				w.t.Fatalf("waiting for %s: %+v", what, c)
			}
		case <-deadline:
			w.t.Fatalf("no report of %s in %v; reports: %+v", what, wait, seen)
		}
	}
}

// await waits until every key given is reported.
func (w *watching) await(keys ...string) []dropboxsign.Change {
	w.t.Helper()
	missing := map[string]bool{}
	for _, k := range keys {
		missing[k] = true
	}
	return w.next(fmt.Sprintf("%q", keys), func(c dropboxsign.Change) bool {
		if c.Err == nil && !c.All {
			delete(missing, c.Key)
		}
		return len(missing) == 0
	})
}

func (w *watching) awaitAll() {
	w.t.Helper()
	w.next("All", func(c dropboxsign.Change) bool { return c.All })
}

func (w *watching) awaitErr(says string) {
	w.t.Helper()
	w.next("an error saying "+says, func(c dropboxsign.Change) bool {
		return c.Err != nil && strings.Contains(c.Err.Error(), says)
	})
}

// gate holds the watcher in report until open.
func (w *watching) gate() {
	w.t.Helper()
	appendJournal(w.t, w.fs, gateKey+"\n")
	select {
	case <-w.gated:
	case <-time.After(wait):
		w.t.Fatal("the watcher did not report the gate")
	}
}

func (w *watching) open() { w.release <- struct{}{} }

// Two FileStore values on one directory, as two processes have: each sees
// the other's Disconnect and Replace, and its own, from the 50 ms check
// alone (the poll is an hour).
func TestFileStoreWatchSeesAnotherStoresChanges(t *testing.T) {
	ctx := testContext(t)
	dir := filepath.Join(t.TempDir(), "tokens")
	a, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	wa, wb := watch(t, a, time.Hour, true), watch(t, b, time.Hour, true)
	if err := b.Disconnect(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := b.Replace(ctx, "bob", secretToken("b")); err != nil {
		t.Fatal(err)
	}
	wa.await("alice", "bob")
	wb.await("alice", "bob")
	if err := a.Disconnect(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	wb.await("carol")
	wa.await("carol")

	// For the record, not asserted: from Disconnect's return, at a moment
	// unrelated to the watcher's checks, to the other store's report.
	var lat []time.Duration
	for i := range 40 {
		time.Sleep(rand.N(60 * time.Millisecond)) // not a synchronization: a random phase
		key := fmt.Sprint("timed-", i)
		if err := b.Disconnect(ctx, key); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		wa.await(key)
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("propagation between two stores: p50 %v, p99 %v, max %v", lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
}

// The child process of the tests below: a FileStore operation, run in a
// process of its own, which may be killed at a stage of it.
func TestFileStoreChildProcess(t *testing.T) {
	dir := os.Getenv("FILESTORE_CHILD_DIR")
	if dir == "" {
		t.Skip("run by other tests, as a process of its own")
	}
	if stage := os.Getenv("FILESTORE_CHILD_STAGE"); stage != "" {
		dropboxsign.SetFileStoreStage(func(s string) {
			if s == stage {
				fmt.Println("at", s)
				for {
					time.Sleep(time.Hour) // until killed
				}
			}
		})
	}
	fs, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	key := os.Getenv("FILESTORE_CHILD_KEY")
	switch op := os.Getenv("FILESTORE_CHILD_OP"); op {
	case "disconnect":
		err = fs.Disconnect(context.Background(), key)
	case "replace":
		err = fs.Replace(context.Background(), key, secretToken("child"))
	default:
		err = fmt.Errorf("unknown op %q", op)
	}
	fmt.Println("done", err)
}

// child runs TestFileStoreChildProcess; it returns its output's lines.
func child(t *testing.T, fs *dropboxsign.FileStore, op, key, stage string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFileStoreChildProcess$")
	cmd.Env = append(os.Environ(), "FILESTORE_CHILD_DIR="+filepath.Dir(fs.Path("x")),
		"FILESTORE_CHILD_OP="+op, "FILESTORE_CHILD_KEY="+key, "FILESTORE_CHILD_STAGE="+stage)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return cmd, lines
}

// awaitLine waits for the child to print want.
func awaitLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	deadline := time.After(3 * wait) // a process of the race-built test binary to start
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the child ended without printing %q", want)
			}
			if l == want {
				return
			}
		case <-deadline:
			t.Fatalf("the child did not print %q", want)
		}
	}
}

// A real process's Disconnect and Replace reach this one's watch.
func TestFileStoreWatchSeesAnotherProcess(t *testing.T) {
	fs := newFileStore(t)
	w := watch(t, fs, time.Hour, true)
	_, lines := child(t, fs, "disconnect", "by-child", "")
	awaitLine(t, lines, "done <nil>")
	w.await("by-child")
	disconnectedSince(t, fs, "by-child")
	_, lines = child(t, fs, "replace", "by-child", "")
	awaitLine(t, lines, "done <nil>")
	w.await("by-child")
	if tok, err := fs.Load(context.Background(), "by-child"); err != nil || tok.AccessToken != "secret-at-child" {
		t.Errorf("after the child's Replace: %v, %v", tok, err)
	}
}

// A process SIGKILLed in the middle of Disconnect, after its mark is
// durable and before the journal has it ("written"), or holding the
// journal's lock ("journal"): the key holds the whole mark and nothing of
// the grant; the locks it held are free (the kernel released them); the
// Disconnect that did not return nil is done again, and then reported.
func TestFileStoreSurvivesAProcessKilledMidDisconnect(t *testing.T) {
	for _, stage := range []string{"written", "journal"} {
		t.Run(stage, func(t *testing.T) {
			fs := newFileStore(t)
			ctx := testContext(t)
			if err := fs.Save(ctx, "victim", nil, secretToken("v")); err != nil {
				t.Fatal(err)
			}
			w := watch(t, fs, time.Hour, true)
			cmd, lines := child(t, fs, "disconnect", "victim", stage)
			awaitLine(t, lines, "at "+stage)
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()

			disconnectedSince(t, fs, "victim")
			markOnly(t, fs, "victim")
			short, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			if err := fs.Save(short, "victim", nil, secretToken("back")); !errors.Is(err, dropboxsign.ErrConflict) {
				t.Fatalf("Save after the kill: %v, want ErrConflict at once (the data lock free)", err)
			}
			if err := fs.Disconnect(short, "victim"); err != nil {
				t.Fatalf("Disconnect again: %v", err)
			}
			w.await("victim")
			if err := fs.Replace(short, "victim", secretToken("login")); err != nil {
				t.Fatal(err)
			}
			w.await("victim")
		})
	}
}

// fillJournal appends lines until the journal is past the size at which a
// writer starts a new one.
func fillJournal(t *testing.T, fs *dropboxsign.FileStore) {
	t.Helper()
	appendJournal(t, fs, strings.Repeat("filler\n", dropboxsign.JournalMax/len("filler\n")+1))
}

// A journal moved aside once while the watcher was busy is read to its
// end, then the next one from its start: nothing is missed, and nothing
// needs All.
func TestFileStoreWatchReadsAcrossARotation(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	w := watch(t, fs, time.Hour, true)
	w.gate()
	fillJournal(t, fs)
	if err := fs.Disconnect(ctx, "k1"); err != nil { // moves the journal aside
		t.Fatal(err)
	}
	if err := fs.Disconnect(ctx, "k2"); err != nil { // into the new one
		t.Fatal(err)
	}
	if info, err := os.Stat(journalPath(fs, dropboxsign.JournalOld)); err != nil || info.Size() < dropboxsign.JournalMax {
		t.Fatalf("the journal was not moved aside: %v", err)
	}
	w.open()
	w.await("k1", "k2")
}

// Moved aside twice while the watcher was busy: a generation came and went
// unread, which only All covers.
func TestFileStoreWatchReportsAllForAGenerationItMissed(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	w := watch(t, fs, time.Hour, true)
	w.gate()
	for _, key := range []string{"k1", "k2"} {
		fillJournal(t, fs)
		if err := fs.Disconnect(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Disconnect(ctx, "k3"); err != nil {
		t.Fatal(err)
	}
	w.open()
	w.awaitAll()
	if err := fs.Disconnect(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	w.await("after")
}

// A journal truncated or removed by hand under the watcher: All, then the
// changes after it, each.
func TestFileStoreWatchReportsAllForAJournalTruncatedOrRemoved(t *testing.T) {
	for name, spoil := range map[string]func(fs *dropboxsign.FileStore) error{
		"truncated": func(fs *dropboxsign.FileStore) error { return os.Truncate(journalPath(fs, dropboxsign.JournalName), 0) },
		"removed":   func(fs *dropboxsign.FileStore) error { return os.Remove(journalPath(fs, dropboxsign.JournalName)) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			fs := newFileStore(t)
			w := watch(t, fs, time.Hour, true)
			w.gate()
			if err := spoil(fs); err != nil {
				t.Fatal(err)
			}
			w.open()
			if name == "removed" {
				if err := fs.Disconnect(ctx, "meanwhile"); err != nil { // a new journal
					t.Fatal(err)
				}
			}
			w.awaitAll()
			if err := fs.Disconnect(ctx, "after"); err != nil {
				t.Fatal(err)
			}
			w.await("after")
		})
	}
}

// Forget of a key the journal names removes the journal: watchers report
// All, and go on.
func TestFileStoreWatchAfterForget(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	w := watch(t, fs, time.Hour, true)
	if err := fs.Disconnect(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	w.await("gone")
	if err := fs.Forget(ctx, "gone", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	w.awaitAll()
	if err := fs.Replace(ctx, "next", secretToken("n")); err != nil {
		t.Fatal(err)
	}
	w.await("next")
}

// Lines the store does not write are skipped, whole, without a panic; a
// line not yet whole waits; keys of any length come back; a key too long
// for a line is All.
func TestFileStoreWatchSkipsWhatItDoesNotWrite(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	w := watch(t, fs, time.Hour, true)
	w.gate()
	appendJournal(t, fs, strings.Join([]string{"%zz", "%4a", "%41", "a/b", "a.b", "\x00\xff", "%4", "x%", "ä",
		strings.Repeat("k", 100<<10), strings.Repeat("%41", 4000), "*x", "%", "ok%20key", "", "  "}, "\n")+"\n")
	appendJournal(t, fs, "half") // not whole: the store's next line starts on a line of its own
	w.open()
	long := strings.Repeat("ä", dropboxsign.MaxAccountKeyLen/2) // a file named by its hash
	if err := fs.Disconnect(ctx, long); err != nil {
		t.Fatal(err)
	}
	if err := fs.Disconnect(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	for _, c := range w.await("", "ok key", long, "after") {
		switch c.Key {
		case "", "ok key", long, "after", "half":
		default:
			if !strings.HasPrefix(c.Key, "watch-probe-") {
				t.Errorf("reported %q, which the journal does not hold", c.Key)
			}
		}
	}
	if err := fs.Disconnect(ctx, strings.Repeat("ä", 3000)); err != nil {
		t.Fatal(err)
	}
	w.awaitAll()
}

// A journal grown far past what the store writes is not read: All.
func TestFileStoreWatchDoesNotReadAnEnormousJournal(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	w := watch(t, fs, time.Hour, true)
	w.gate()
	appendJournal(t, fs, strings.Repeat("flood\n", 5<<20/6))
	w.open()
	w.awaitAll()
	if err := fs.Disconnect(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	w.await("after")
}

// More keys at once than a watcher keeps: All, once, instead.
func TestFileStoreWatchReportsAllForTooManyKeysAtOnce(t *testing.T) {
	ctx := testContext(t)
	fs := newFileStore(t)
	w := watch(t, fs, time.Hour, true)
	w.gate()
	var b strings.Builder
	for i := range 10001 {
		fmt.Fprintf(&b, "many-%d\n", i)
	}
	appendJournal(t, fs, b.String())
	w.open()
	for _, c := range w.next("All", func(c dropboxsign.Change) bool { return c.All }) {
		if strings.HasPrefix(c.Key, "many-") {
			t.Fatalf("reported %q with All", c.Key)
		}
	}
	if err := fs.Disconnect(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	w.await("after")
}

// A journal replaced by a FIFO is an error, never a hang.
func TestFileStoreWatchRefusesAFIFO(t *testing.T) {
	fs := newFileStore(t)
	w := watch(t, fs, time.Hour, true)
	w.gate()
	os.Remove(journalPath(fs, dropboxsign.JournalName))
	if err := syscall.Mkfifo(journalPath(fs, dropboxsign.JournalName), 0o600); err != nil {
		t.Fatal(err)
	}
	w.open()
	w.awaitErr("named pipe")
}

// Failures are reported, again at each poll, and the watch recovers.
func TestFileStoreWatchReportsFailuresAndRecovers(t *testing.T) {
	t.Run("unsafe directory", func(t *testing.T) {
		ctx := testContext(t)
		fs := newFileStore(t)
		dir := filepath.Dir(fs.Path("x"))
		w := watch(t, fs, 20*time.Millisecond, true)
		os.Chmod(dir, 0o777)
		w.awaitErr("writable")
		w.awaitErr("writable") // it keeps trying
		os.Chmod(dir, 0o700)
		w.strict = false
		if err := fs.Disconnect(ctx, "after"); err != nil {
			t.Fatal(err)
		}
		w.await("after")
	})
	t.Run("unsafe when the watch starts", func(t *testing.T) {
		ctx := testContext(t)
		fs := newFileStore(t)
		dir := filepath.Dir(fs.Path("x"))
		os.Chmod(dir, 0o777)
		w := watch(t, fs, 20*time.Millisecond, false)
		w.awaitErr("writable")
		os.Chmod(dir, 0o700)
		if err := fs.Disconnect(ctx, "after"); err != nil {
			t.Fatal(err)
		}
		w.strict = false
		w.awaitAll() // where the journal stood at the start is unknown
	})
	t.Run("directory removed", func(t *testing.T) {
		fs := newFileStore(t)
		w := watch(t, fs, 20*time.Millisecond, true)
		os.RemoveAll(filepath.Dir(fs.Path("x")))
		w.awaitErr("removed")
		w.awaitErr("removed")
	})
}
