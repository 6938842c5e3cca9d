// Package fleettest runs a fleet of real OS processes (the test binary,
// executed again) that share one token store and one fake Dropbox Sign, and
// checks what the fleet did: the proof that a store coordinates refreshes
// across replicas. A test package uses it from TestMain (see Main) and from
// a test (see Run).
package fleettest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/internal/storetest"
	"golang.org/x/oauth2"
)

// Config describes one fleet run.
type Config struct {
	Replicas int           // worker processes
	Accounts int           // accounts, each with its own key and token
	Duration time.Duration // how long the workers call the API
	Lifetime time.Duration // access token lifetime (whole seconds)
	Callers  int           // concurrent callers per worker
	// KillAfter, if > 0, starts a process that takes account 0's refresh
	// lock before the workers start and is SIGKILLed after KillAfter; make
	// it later than account 0's first refresh is due, so that the workers
	// must wait for the dead holder's lock to go.
	KillAfter time.Duration
	// StoreEnv is passed to every child, for NewStore to find the store.
	StoreEnv []string
}

// childSpec is what the parent tells a child, in an environment variable.
type childSpec struct {
	Role      string // "worker" or "locker"
	ServerURL string
	ClientID  string
	Secret    string
	Accounts  map[string]string // key → the account id the API must answer with
	Duration  time.Duration
	Callers   int
}

// result is what a worker prints as its last line.
type result struct {
	Calls        int64
	Failures     int64
	FirstError   string
	StoreCalls   int64
	AccountCalls map[string]int64
}

const specVar = "DROPBOXSIGN_FLEET_CHILD"

// Main must be called first thing in the TestMain of a package that uses
// Run: in a child process it plays its role with the store newStore makes
// and exits; in the test process it returns at once.
func Main(newStore func() (dropboxsign.Store, error)) {
	raw := os.Getenv(specVar)
	if raw == "" {
		return
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "fleet child: bad spec:", err)
		os.Exit(2)
	}
	store, err := newStore()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet child: store:", err)
		os.Exit(2)
	}
	switch spec.Role {
	case "locker":
		lockAndHang(spec, store)
	default:
		json.NewEncoder(os.Stdout).Encode(work(spec, store))
	}
	os.Exit(0)
}

// lockAndHang takes the first account's refresh lock, says so, and waits to
// be killed.
func lockAndHang(spec childSpec, store dropboxsign.Store) {
	if _, err := store.Lock(context.Background(), Key(0)); err != nil {
		fmt.Fprintln(os.Stderr, "locker:", err)
		os.Exit(2)
	}
	fmt.Println("LOCKED")
	select {}
}

func work(spec childSpec, store dropboxsign.Store) result {
	counting := &storetest.Counting{Store: store}
	conf := &oauth2.Config{ClientID: spec.ClientID, ClientSecret: spec.Secret, Endpoint: oauth2.Endpoint{
		TokenURL: spec.ServerURL + dropboxsigntest.TokenPath, AuthStyle: oauth2.AuthStyleInParams}}
	ctx := context.Background()
	accounts := dropboxsign.NewAccounts(ctx, conf, counting)
	keys := make([]string, 0, len(spec.Accounts))
	clients := map[string]*http.Client{}
	for key := range spec.Accounts {
		keys = append(keys, key)
		clients[key] = accounts.Client(key)
	}
	var res result
	var mu sync.Mutex
	res.AccountCalls = map[string]int64{}
	deadline := time.Now().Add(spec.Duration)
	var wg sync.WaitGroup
	for range spec.Callers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				key := keys[rand.IntN(len(keys))]
				err := call(clients[key], spec.ServerURL+dropboxsigntest.AccountPath, spec.Accounts[key])
				mu.Lock()
				res.Calls++
				res.AccountCalls[key]++
				if err != nil {
					res.Failures++
					if res.FirstError == "" {
						res.FirstError = key + ": " + err.Error()
					}
				}
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	// As a replica does on SIGTERM: refreshes under way end, and their
	// tokens are stored, before the process exits.
	shutdown, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := accounts.Shutdown(shutdown); err != nil {
		res.Failures++
		res.FirstError = "shutdown: " + err.Error()
	}
	res.StoreCalls = counting.Calls()
	return res
}

func call(c *http.Client, url, wantAccount string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Account struct {
			ID string `json:"account_id"`
		} `json:"account"`
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err
	}
	if body.Account.ID != wantAccount {
		return fmt.Errorf("answered for account %q, want %q", body.Account.ID, wantAccount)
	}
	return nil
}

// Key is the store key of account i.
func Key(i int) string { return fmt.Sprintf("account/%02d", i) }

// Report is what a fleet run did.
type Report struct {
	Calls, Failures   int64
	FirstError        string
	Server            dropboxsigntest.Stats
	Expiries          float64 // token lifetimes that elapsed per account
	RefreshesPerToken float64 // refreshes per account per token lifetime
	StoreCallsPerCall float64 // store round trips per API call
	Killed            bool
	Account0Calls     int64
	// Account0Refreshed is when account 0 was first refreshed, from the
	// workers' start; with a kill it must not precede KillAfter.
	Account0Refreshed time.Duration
	// ValidAccounts counts the accounts whose stored refresh token still
	// works after the run: the newest one was stored, none was lost.
	ValidAccounts int
}

// Run seeds store with one token per account at a fresh fake server, runs
// one phase of the fleet against it (cfg's replicas, duration, callers and
// kill), and reports, with the accounts still valid after. The children
// make their own store with the NewStore given to Main, from cfg.StoreEnv.
func Run(t *testing.T, cfg Config, store dropboxsign.Store) Report {
	t.Helper()
	f := New(t, cfg, store)
	rep := f.Phase(Phase{Replicas: cfg.Replicas, Duration: cfg.Duration, Callers: cfg.Callers, KillAfter: cfg.KillAfter})
	rep.ValidAccounts = f.Valid()
	return rep
}

// Fleet is one fake Dropbox Sign and one store, seeded with accounts, that
// phases of worker processes run against in turn: a rolling deploy, a store
// that restarts mid-run.
type Fleet struct {
	t        *testing.T
	cfg      Config
	Server   *dropboxsigntest.Server
	store    dropboxsign.Store
	accounts map[string]string // key → the account id the API must answer with
	seed0    string            // account 0's first refresh token
}

// Phase is one run of worker processes against a Fleet.
type Phase struct {
	Replicas int
	Duration time.Duration
	Callers  int // concurrent callers per worker
	// KillAfter: see Config.
	KillAfter time.Duration
	// Env, if set, adds to replica i's environment (after Config.StoreEnv):
	// each replica may be configured differently, as during a rolling
	// deploy.
	Env func(i int) []string
	// During, if set, runs in a goroutine once the workers have started
	// (a fault to inject mid-run); the phase waits for it to return.
	During func(ctx context.Context)
}

// New starts a fake Dropbox Sign (closed when the test ends) and seeds store
// with one token per account.
func New(t *testing.T, cfg Config, store dropboxsign.Store) *Fleet {
	t.Helper()
	srv := dropboxsigntest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetLifetime(cfg.Lifetime)
	f := &Fleet{t: t, cfg: cfg, Server: srv, store: store, accounts: map[string]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range cfg.Accounts {
		tok := srv.IssueToken()
		if i == 0 {
			f.seed0 = tok.RefreshToken
		}
		if err := store.Save(ctx, Key(i), nil, tok); err != nil {
			t.Fatalf("seeding the store: %v", err)
		}
		f.accounts[Key(i)] = fmt.Sprintf("account-%d", i+1) // the fake numbers accounts from 1
	}
	return f
}

// Phase runs p and reports what it did; counts of the server are those of
// this phase.
func (f *Fleet) Phase(p Phase) Report {
	t, srv := f.t, f.Server
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), p.Duration+time.Minute)
	defer cancel()
	spec := childSpec{ServerURL: srv.URL, ClientID: srv.ClientID, Secret: srv.ClientSecret,
		Accounts: f.accounts, Duration: p.Duration, Callers: max(p.Callers, 1)}
	before := srv.Stats()
	requestsBefore := len(srv.TokenRequests())

	var rep Report
	if p.KillAfter > 0 {
		locker := start(t, ctx, f.cfg.StoreEnv, spec, "locker")
		line, err := bufio.NewReader(locker.stdout).ReadString('\n')
		if err != nil || line != "LOCKED\n" {
			t.Fatalf("locker: %q, %v", line, err)
		}
		defer locker.cmd.Wait()
		defer time.AfterFunc(p.KillAfter, func() { locker.cmd.Process.Signal(syscall.SIGKILL) }).Stop()
		rep.Killed = true
	}
	started := time.Now()
	workers := make([]*child, p.Replicas)
	for i := range workers {
		env := f.cfg.StoreEnv
		if p.Env != nil {
			env = append(append([]string{}, env...), p.Env(i)...)
		}
		workers[i] = start(t, ctx, env, spec, "worker")
	}
	var during sync.WaitGroup
	if p.During != nil {
		during.Go(func() { p.During(ctx) })
	}
	for i, w := range workers {
		out, _ := io.ReadAll(w.stdout)
		if err := w.cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, w.stderr.String())
		}
		var res result
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("worker %d said %q: %v\n%s", i, out, err, w.stderr.String())
		}
		rep.Calls += res.Calls
		rep.Failures += res.Failures
		rep.Account0Calls += res.AccountCalls[Key(0)]
		if rep.FirstError == "" {
			rep.FirstError = res.FirstError
		}
		rep.StoreCallsPerCall += float64(res.StoreCalls)
	}
	during.Wait()
	rep.StoreCallsPerCall /= float64(max(rep.Calls, 1))
	after := srv.Stats()
	rep.Server = dropboxsigntest.Stats{
		TokenRequests:      after.TokenRequests - before.TokenRequests,
		Refreshes:          after.Refreshes - before.Refreshes,
		Faults:             after.Faults - before.Faults,
		StaleRefreshTokens: after.StaleRefreshTokens - before.StaleRefreshTokens,
		APICalls:           after.APICalls - before.APICalls,
		APIRejected:        after.APIRejected - before.APIRejected,
	}
	for _, req := range srv.TokenRequests()[requestsBefore:] {
		if strings.Contains(string(req.Body), f.seed0) {
			rep.Account0Refreshed = req.Time.Sub(started)
			break
		}
	}
	rep.Expiries = p.Duration.Seconds() / f.cfg.Lifetime.Seconds()
	rep.RefreshesPerToken = float64(rep.Server.Refreshes) / float64(f.cfg.Accounts) / rep.Expiries
	return rep
}

// Valid counts the accounts whose stored refresh token still works: the
// newest one was stored, none was lost. It spends them: call it last.
func (f *Fleet) Valid() int { return f.ValidWith(f.store) }

// ValidWith is Valid, reading the tokens through store (one that can open
// them after a change of keys, say).
func (f *Fleet) ValidWith(store dropboxsign.Store) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := f.Server
	conf := &oauth2.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL + dropboxsigntest.TokenPath}}
	valid := 0
	for i := range f.cfg.Accounts {
		stored, err := store.Load(ctx, Key(i))
		if err != nil {
			f.t.Errorf("%s: %v", Key(i), err)
			continue
		}
		if _, err := dropboxsign.Refresh(ctx, conf, stored.RefreshToken); err != nil {
			f.t.Errorf("%s: the stored refresh token no longer works: %v", Key(i), err)
			continue
		}
		valid++
	}
	return valid
}

type child struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr *lockedBuffer
}

func start(t *testing.T, ctx context.Context, env []string, spec childSpec, role string) *child {
	t.Helper()
	spec.Role = role
	raw, _ := json.Marshal(spec)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), specVar+"="+string(raw)), env...)
	c := &child{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = c.stderr
	var err error
	if c.stdout, err = cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// Check asserts what a fleet run must achieve, whatever its store, and logs
// its figures.
func Check(t *testing.T, cfg Config, rep Report) {
	t.Helper()
	t.Logf("%d replicas, %d accounts, %s of %s tokens: %d API calls, %d failed; %d refreshes = %.2f per account per token lifetime; %.4f store round trips per API call; %d stale refresh tokens; %d of %d accounts valid after; account 0 first refreshed at %v",
		cfg.Replicas, cfg.Accounts, cfg.Duration, cfg.Lifetime, rep.Calls, rep.Failures, rep.Server.Refreshes,
		rep.RefreshesPerToken, rep.StoreCallsPerCall, rep.Server.StaleRefreshTokens, rep.ValidAccounts, cfg.Accounts, rep.Account0Refreshed.Round(time.Millisecond))
	if rep.Failures != 0 {
		t.Errorf("%d of %d calls failed; first: %s", rep.Failures, rep.Calls, rep.FirstError)
	}
	if rep.Server.StaleRefreshTokens != 0 {
		t.Errorf("%d stale refresh tokens presented", rep.Server.StaleRefreshTokens)
	}
	// Refresh-ahead at half-life makes 2 refreshes per token lifetime for
	// the whole fleet; replicas refreshing on their own would make 2 each.
	if rep.RefreshesPerToken > 3 || rep.RefreshesPerToken < 1 {
		t.Errorf("%.2f refreshes per account per lifetime; want about 2, not %d", rep.RefreshesPerToken, 2*cfg.Replicas)
	}
	if rep.ValidAccounts != cfg.Accounts {
		t.Errorf("%d of %d accounts left with a working refresh token", rep.ValidAccounts, cfg.Accounts)
	}
	if cfg.KillAfter > 0 && (rep.Account0Calls == 0 || rep.Account0Refreshed < cfg.KillAfter) {
		t.Errorf("account 0: %d calls, first refreshed %v after the start; want calls, and the refresh to wait for the kill at %v",
			rep.Account0Calls, rep.Account0Refreshed, cfg.KillAfter)
	}
}
