package dropboxsign_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// These tests hold Accounts to its promise that a token Dropbox Sign has
// issued, whose refresh token may be the only valid one, is never lost
// while the process lives, and is stored before it exits if the store
// allows: when the account was let go from memory, when its save fails,
// and when what the store holds cannot be read.

// healingStore fails every Save and Replace until healed.
type healingStore struct {
	dropboxsign.Store
	healed chan struct{}
}

func newHealingStore(s dropboxsign.Store) *healingStore {
	return &healingStore{Store: s, healed: make(chan struct{})}
}

func (h *healingStore) down() bool {
	select {
	case <-h.healed:
		return false
	default:
		return true
	}
}

func (h *healingStore) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	if h.down() && !spendMark(t) {
		return errors.New("store unavailable")
	}
	return h.Store.Save(ctx, key, prev, t)
}

func (h *healingStore) Replace(ctx context.Context, key string, t *oauth2.Token) error {
	if h.down() {
		return errors.New("store unavailable")
	}
	return h.Store.Replace(ctx, key, t)
}

// collect runs the garbage collector until let-go sources nobody holds are
// gone (weak pointers cleared, cleanups run).
func collect() {
	for range 5 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond) // let cleanups run: not a pass/fail timing
	}
}

// An account let go while a caller still held its source (a request under
// way, say) refreshes, and its save fails: the source is held again, so
// the rotated refresh token is not collected with it; the next caller
// gets the same token, and Shutdown stores it once the store is back.
func TestALetGoAccountKeepsATokenItCouldNotSave(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	fs := newFileStore(t)
	fs.Save(ctx, "alice", nil, expired(srv.IssueToken()))
	store := newHealingStore(fs)
	clk := newClock()
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.WithMaxAccounts(1), dropboxsign.WithClock(clk.Now))
	s := a.TokenSource("alice")
	clk.Advance(2 * time.Second)
	a.TokenSource("bob") // alice, idle, is let go; s is still held here
	tok, err := s.TokenContext(ctx)
	var unsaved *dropboxsign.SaveError
	if tok == nil || !errors.As(err, &unsaved) {
		t.Fatalf("alice's refresh: %v, %v; want a token and a *SaveError", tok, err)
	}
	s = nil
	collect()
	again, _ := a.TokenSource("alice").TokenContext(ctx)
	if again == nil || again.RefreshToken != tok.RefreshToken {
		t.Fatalf("after a collection alice has %v; want the token she could not save", again)
	}
	close(store.healed)
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if stored, err := fs.Load(ctx, "alice"); err != nil || stored.RefreshToken != tok.RefreshToken {
		t.Fatalf("stored after Shutdown: %v, %v; want the rotated token", stored, err)
	}
	if st := srv.Stats(); st.Refreshes != 1 || st.StaleRefreshTokens != 0 {
		t.Errorf("%d refreshes, %d stale refresh tokens; want 1 and 0", st.Refreshes, st.StaleRefreshTokens)
	}
}

// A login whose account is let go during the exchange, and whose save
// fails, keeps its token in this process, as Login's doc says.
func TestALoginLetGoDuringItsExchangeKeepsItsToken(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	clk := newClock()
	store := newHealingStore(newFileStore(t))
	a := dropboxsign.NewAccounts(ctx, srv.Config(), store, dropboxsign.WithMaxAccounts(1), dropboxsign.WithClock(clk.Now))
	code := authorize(t, srv, srv.Config(), "st")
	release := srv.HoldTokenResponses()
	done := make(chan error, 1)
	var got *oauth2.Token
	go func() {
		var err error
		got, err = a.Login(ctx, "alice", code, "st")
		done <- err
	}()
	if err := srv.WaitTokenRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	a.TokenSource("bob") // alice is let go while her login waits on Dropbox Sign
	release()
	var unsaved *dropboxsign.SaveError
	if err := <-done; !errors.As(err, &unsaved) || got == nil {
		t.Fatalf("Login: %v, %v; want the token and a *SaveError", got, err)
	}
	collect()
	tok, _ := a.TokenSource("alice").TokenContext(ctx)
	if tok == nil || tok.AccessToken != got.AccessToken {
		t.Fatalf("alice's login token was lost from this process: have %v", tok)
	}
}

// Shutdown retries at once a save that awaits its retry, and says so if it
// fails again: the account's token dies with the process.
func TestShutdownStoresOrReportsATokenAwaitingItsSave(t *testing.T) {
	for _, heal := range []bool{true, false} {
		srv := newServer(t)
		ctx := testContext(t)
		fs := newFileStore(t)
		old := expired(srv.IssueToken())
		fs.Save(ctx, "alice", nil, old)
		store := newHealingStore(fs)
		a := dropboxsign.NewAccounts(ctx, srv.Config(), store)
		tok, err := a.TokenSource("alice").TokenContext(ctx)
		var unsaved *dropboxsign.SaveError
		if tok == nil || !errors.As(err, &unsaved) {
			t.Fatalf("refresh: %v, %v; want a token and a *SaveError", tok, err)
		}
		if heal {
			close(store.healed)
		}
		err = a.Shutdown(ctx)
		stored, _ := fs.Load(ctx, "alice")
		switch {
		case heal && (err != nil || stored.RefreshToken != tok.RefreshToken):
			t.Errorf("store back: Shutdown %v, stored the new token: %v; want nil and true", err, stored.RefreshToken == tok.RefreshToken)
		case !heal && (!errors.As(err, &unsaved) || !strings.Contains(err.Error(), `account "alice"`)):
			t.Errorf("store still down: Shutdown %v; want a *SaveError naming alice", err)
		case !heal:
			for _, secret := range srv.Secrets() {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("Shutdown's error holds a secret: %q", err)
				}
			}
		}
	}
}

// A new login repairs an account whose stored record cannot be read: one
// sealed with an encryption key since rotated out, or a corrupt file, as the
// FileStore's error advises ("log in again").
func TestLoginReplacesARecordTheStoreCannotRead(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	dir := t.TempDir()
	oldKey, _ := dropboxsign.NewSealer(key(1))
	newKey, _ := dropboxsign.NewSealer(key(2))
	before, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	before.Save(ctx, "alice", nil, srv.IssueToken())
	fs, _ := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(newKey))
	os.WriteFile(fs.Path("bob"), []byte("{garbage"), 0o600)
	a := dropboxsign.NewAccounts(ctx, srv.Config(), fs)
	for _, account := range []string{"alice", "bob"} {
		if _, err := fs.Load(ctx, account); err == nil {
			t.Fatalf("%s's record opens: the test needs one that does not", account)
		}
		code := authorize(t, srv, srv.Config(), "st-"+account)
		tok, err := a.Login(ctx, account, code, "st-"+account)
		if err != nil {
			t.Fatalf("Login(%s) over an unreadable record: %v", account, err)
		}
		if stored, err := fs.Load(ctx, account); err != nil || stored.RefreshToken != tok.RefreshToken {
			t.Errorf("after Login, %s's record: %v, %v; want the new token", account, stored, err)
		}
	}
}

func key(b byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b
	}
	return k
}
