// Package fleettest runs a fleet of real OS processes (the test binary,
// executed again) that share one token store and one fake Dropbox Sign, and
// checks what the fleet did: the proof that a store coordinates refreshes
// across replicas. A test package uses it from TestMain (see Main) and from
// a test (see Run).
//
// Its verdicts hold however slow or busy the machine: conditions are read
// per account and per worker (at the fake, and from the tokens each
// worker's calls presented), a fault mid-run is timed by what the workers
// did ([Workers.WaitFresh]) rather than by the clock, and what a fault may
// excuse is derived from what each worker held then ([Report.HeldAt],
// [CheckOutage]).
package fleettest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// LockHolder, if set, reads who holds account 0's refresh lock now
	// (the store's owner tag, "" if nobody). With a lease, it tells a
	// locker killed while it held its lease from one whose lease had
	// lapsed before (its renewals came too late: a process starved of CPU
	// for most of the TTL), after which a worker rightly takes it: Check
	// checks the wait only in the first case. Without it the locker is
	// taken to hold the lock until it is killed, as a flock is.
	LockHolder func(ctx context.Context) (string, error)
	// StoreEnv is passed to every child, for NewStore to find the store.
	StoreEnv []string
	// LockerEnv is added to the locker's environment, after StoreEnv (a
	// shorter lease than the workers', say).
	LockerEnv []string
}

// childSpec is what the parent tells a child, in an environment variable.
type childSpec struct {
	Role      string // "worker", "locker", or disconnect.go's "dworker" or "disconnector"
	ServerURL string
	ClientID  string
	Secret    string
	Accounts  map[string]string // key → the account id the API must answer with
	Seeds     map[string]string // key → fingerprint of the access token seeded
	Duration  time.Duration
	Callers   int
	Poll      time.Duration // a dworker's WithWatchPoll
	Keys      []string      // the disconnector's accounts, in order
}

// result is what a worker prints as its last line.
type result struct {
	Calls        int64
	Failures     int64
	FirstError   string
	StoreCalls   int64
	AccountCalls map[string]int64
	Tokens       map[string][]tokenUse // key → the access tokens its calls presented
	Failed       map[string]*Failure   // key → its failed calls
	Events       map[string]int64      // the library's events but successes, by kind and op
	EventErrors  map[string]string     // the first error of each
}

// events counts what a worker's Accounts reports, but for successful token
// requests and adoptions (the fleet's routine): what went wrong, for the
// log of a run that failed.
type events struct {
	mu     sync.Mutex
	counts map[string]int64
	errs   map[string]string
}

func (e *events) RequestStarted(ctx context.Context, _, _ string) context.Context { return ctx }

func (e *events) Observe(_ context.Context, ev dropboxsign.Event) {
	if ev.Kind == dropboxsign.EventAdopted || ev.Kind == dropboxsign.EventTokenRequest && ev.Err == nil {
		return
	}
	key := ev.Kind.String()
	if ev.Op != "" {
		key += "/" + ev.Op
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts[key]++
	if _, ok := e.errs[key]; !ok && ev.Err != nil {
		e.errs[key] = ev.Err.Error()
	}
}

// tokenUse is an access token a worker's calls presented for an account.
type tokenUse struct {
	Token       string    // its fingerprint
	First, Last time.Time // the first and the last call that presented it
}

// freshLine is what a worker prints, before its result, once it has made a
// call for every account with a token other than the seeded one.
const freshLine = "FRESH"

// fingerprint names a token in what a child prints, so that no token shows
// in a test's output.
func fingerprint(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:8])
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
	case roleDWorker:
		disconnectWorker(spec, store, &lockedWriter{w: os.Stdout})
	case roleDisconnector:
		disconnector(spec, store, &lockedWriter{w: os.Stdout})
	default:
		out := &lockedWriter{w: os.Stdout}
		json.NewEncoder(out).Encode(work(spec, store, out))
	}
	os.Exit(0)
}

// lockedWriter lets a worker's goroutines print whole lines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
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

// accountKey is the context key under which a worker's call names its
// account, for the usage transport.
type accountKey struct{}

// usage records, per account, the access tokens a worker's calls present
// (below the library's transport, where the Authorization header is set),
// and prints freshLine once every account has presented a token other than
// its seed.
type usage struct {
	base   http.RoundTripper
	seeds  map[string]string
	out    io.Writer
	mu     sync.Mutex
	tokens map[string][]tokenUse
	fresh  map[string]bool
}

func (u *usage) RoundTrip(req *http.Request) (*http.Response, error) {
	key, ok := req.Context().Value(accountKey{}).(string)
	tok, bearer := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if ok && bearer && req.URL.Path == dropboxsigntest.AccountPath {
		u.saw(key, fingerprint(tok), time.Now())
	}
	return u.base.RoundTrip(req)
}

func (u *usage) saw(key, fp string, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	uses := u.tokens[key]
	if i := slices.IndexFunc(uses, func(t tokenUse) bool { return t.Token == fp }); i >= 0 {
		uses[i].Last = now
	} else {
		u.tokens[key] = append(uses, tokenUse{Token: fp, First: now, Last: now})
	}
	if fp != u.seeds[key] && !u.fresh[key] {
		u.fresh[key] = true
		if len(u.fresh) == len(u.seeds) {
			fmt.Fprintln(u.out, freshLine)
		}
	}
}

func work(spec childSpec, store dropboxsign.Store, out io.Writer) result {
	counting := &storetest.Counting{Store: store}
	conf := &oauth2.Config{ClientID: spec.ClientID, ClientSecret: spec.Secret, Endpoint: oauth2.Endpoint{
		TokenURL: spec.ServerURL + dropboxsigntest.TokenPath, AuthStyle: oauth2.AuthStyleInParams}}
	used := &usage{base: http.DefaultTransport, seeds: spec.Seeds, out: out, tokens: map[string][]tokenUse{}, fresh: map[string]bool{}}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: used})
	seen := &events{counts: map[string]int64{}, errs: map[string]string{}}
	accounts := dropboxsign.NewAccounts(ctx, conf, counting, dropboxsign.WithObserver(seen))
	keys := make([]string, 0, len(spec.Accounts))
	clients := map[string]*http.Client{}
	for key := range spec.Accounts {
		keys = append(keys, key)
		clients[key] = accounts.Client(key)
	}
	var res result
	var mu sync.Mutex
	res.AccountCalls = map[string]int64{}
	res.Failed = map[string]*Failure{}
	deadline := time.Now().Add(spec.Duration)
	// The callers take the accounts in turn (in the map's random order),
	// so that every account is called every len(keys) calls however slow
	// the machine: none waits long for its refresh, or to say FRESH.
	var turn atomic.Int64
	var wg sync.WaitGroup
	for range spec.Callers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				key := keys[(turn.Add(1)-1)%int64(len(keys))]
				err := call(context.WithValue(ctx, accountKey{}, key), clients[key], spec.ServerURL+dropboxsigntest.AccountPath, spec.Accounts[key])
				now := time.Now()
				mu.Lock()
				res.Calls++
				res.AccountCalls[key]++
				if err != nil {
					res.Failures++
					if res.FirstError == "" {
						res.FirstError = key + ": " + err.Error()
					}
					f := res.Failed[key]
					if f == nil {
						f = &Failure{Key: key, First: now, Error: err.Error()}
						res.Failed[key] = f
					}
					f.Calls++
					f.Last = now
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
	used.mu.Lock()
	res.Tokens = used.tokens
	used.mu.Unlock()
	// Copies: an event may still be delivered after Shutdown (the
	// observers are called from a goroutine of their own), while the
	// result is encoded.
	seen.mu.Lock()
	res.Events, res.EventErrors = maps.Clone(seen.counts), maps.Clone(seen.errs)
	seen.mu.Unlock()
	return res
}

func call(ctx context.Context, c *http.Client, url, wantAccount string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
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
	// RefreshedAccounts counts the accounts refreshed at least once during
	// the phase, read per account at the fake.
	RefreshedAccounts int
	// Started is when the workers were started.
	Started time.Time
	Killed  bool
	// KilledAt is when the locker was sent SIGKILL. LockSeenAt is the
	// last moment its lock is known to have been its own: KilledAt, or,
	// with Config.LockHolder, when the look just before the kill began;
	// LockLost says that look found the lock no longer the locker's.
	KilledAt, LockSeenAt time.Time
	LockLost             bool
	Account0Calls        int64
	// Account0FirstRefresh is when the fake answered account 0's first
	// refresh of the phase (zero if none), Account0Refreshed the same from
	// Started; with a kill it must not precede LockSeenAt.
	Account0FirstRefresh time.Time
	Account0Refreshed    time.Duration
	// ValidAccounts counts the accounts whose stored refresh token still
	// works after the run: the newest one was stored, none was lost.
	ValidAccounts int
	// FailedCalls counts the failed calls per worker and account.
	FailedCalls []Failure
	// Events counts the library's events but successful token requests
	// and adoptions, over the workers, by kind and op ("store_failed/lock");
	// EventErrors holds the first error of each.
	Events      map[string]int64
	EventErrors map[string]string
	holds       []hold
	workers     int
	keys        []string
}

// Failure counts a worker's failed calls for one account.
type Failure struct {
	Worker      int
	Key         string
	Calls       int64
	First, Last time.Time // when the first and the last of them failed
	Error       string    // the first one's error
}

// hold is an access token a worker presented for an account.
type hold struct {
	worker      int
	key         string
	first       time.Time // its first call that presented it
	usableUntil time.Time // when the library stops handing it out
}

// Hold is what a worker held for an account at a moment (see
// [Report.HeldAt]).
type Hold struct {
	Worker int
	Key    string
	// UsableUntil is when the newest token the worker's calls had
	// presented for the account by then stops being handed out (its
	// expiry less min(10 s, lifetime/10), from the fake's clock): the
	// worker held that token or a newer one, which serves at least as
	// long. It is zero if the worker had presented none: it may have held
	// nothing.
	UsableUntil time.Time
}

// HeldAt returns what every worker held for every account at t, the
// earliest UsableUntil first.
func (r Report) HeldAt(t time.Time) []Hold {
	var out []Hold
	for w := range r.workers {
		for _, key := range r.keys {
			h := Hold{Worker: w, Key: key}
			for _, u := range r.holds {
				if u.worker == w && u.key == key && u.first.Before(t) && u.usableUntil.After(h.UsableUntil) {
					h.UsableUntil = u.usableUntil
				}
			}
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b Hold) int { return a.UsableUntil.Compare(b.UsableUntil) })
	return out
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
	seeds    map[string]string // key → fingerprint of its seeded access token
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
	// (a fault to inject mid-run); the phase waits for it to return. w
	// tells it how far the workers are, for it to time the fault by what
	// they did rather than by the clock.
	During func(ctx context.Context, w *Workers)
}

// Workers is a running phase's workers, as its During function sees them.
type Workers struct {
	fresh  chan struct{} // closed once every worker has said freshLine
	exited chan struct{} // closed once every worker's output has ended
}

// WaitFresh waits until every worker has made a call for every account
// with a token other than the one the Fleet seeded (so every account has
// been refreshed, and no worker depends on a seeded token any more), and
// reports whether that happened before a worker exited or ctx ended.
func (w *Workers) WaitFresh(ctx context.Context) bool {
	select {
	case <-w.fresh:
		return true
	case <-w.exited:
	case <-ctx.Done():
	}
	select {
	case <-w.fresh:
		return true
	default:
		return false
	}
}

// New starts a fake Dropbox Sign (closed when the test ends) and seeds store
// with one token per account.
func New(t *testing.T, cfg Config, store dropboxsign.Store) *Fleet {
	t.Helper()
	srv := dropboxsigntest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetLifetime(cfg.Lifetime)
	f := &Fleet{t: t, cfg: cfg, Server: srv, store: store, accounts: map[string]string{}, seeds: map[string]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range cfg.Accounts {
		tok := srv.IssueToken()
		f.seeds[Key(i)] = fingerprint(tok.AccessToken)
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
		Accounts: f.accounts, Seeds: f.seeds, Duration: p.Duration, Callers: max(p.Callers, 1)}
	before := srv.Stats()
	begun := time.Now()

	var rep Report
	var kill, during sync.WaitGroup
	var locker *child
	defer func() { // after a t.Fatal too: end the children, then wait for them
		cancel()
		during.Wait()
		kill.Wait()
		if locker != nil {
			locker.cmd.Wait()
		}
	}()
	var killedAt, lockSeenAt time.Time
	var lockLost bool
	if p.KillAfter > 0 {
		locker = start(t, ctx, append(append([]string{}, f.cfg.StoreEnv...), f.cfg.LockerEnv...), spec, "locker")
		line, err := bufio.NewReader(locker.stdout).ReadString('\n')
		if err != nil || line != "LOCKED\n" {
			t.Fatalf("locker: %q, %v", line, err)
		}
		var owner string
		if f.cfg.LockHolder != nil {
			if owner, err = f.cfg.LockHolder(ctx); err != nil || owner == "" {
				t.Fatalf("the locker said LOCKED, but the lock is held by %q (%v)", owner, err)
			}
		}
		kill.Go(func() {
			select {
			case <-time.After(p.KillAfter):
			case <-ctx.Done():
				return
			}
			lockSeenAt = time.Now()
			if f.cfg.LockHolder != nil {
				now, err := f.cfg.LockHolder(ctx)
				if err != nil { // unknown, so unchecked: a slow store may time out
					t.Logf("reading account 0's lock holder: %v", err)
				}
				lockLost = err != nil || now != owner
			}
			killedAt = time.Now()
			if f.cfg.LockHolder == nil {
				lockSeenAt = killedAt
			}
			locker.cmd.Process.Signal(syscall.SIGKILL)
		})
		rep.Killed = true
	}
	rep.Started = time.Now()
	workers := make([]*child, p.Replicas)
	lines := make([]chan string, p.Replicas) // each worker's last line
	w := &Workers{fresh: make(chan struct{}), exited: make(chan struct{})}
	var nFresh atomic.Int32
	var reading sync.WaitGroup
	for i := range workers {
		env := f.cfg.StoreEnv
		if p.Env != nil {
			env = append(append([]string{}, env...), p.Env(i)...)
		}
		workers[i] = start(t, ctx, env, spec, "worker")
		lines[i] = make(chan string, 1)
		reading.Go(func() {
			sc := bufio.NewScanner(workers[i].stdout)
			sc.Buffer(nil, 64<<20)
			said, last := false, ""
			for sc.Scan() {
				if sc.Text() == freshLine && !said {
					said = true
					if nFresh.Add(1) == int32(p.Replicas) {
						close(w.fresh)
					}
					continue
				}
				last = sc.Text()
			}
			io.Copy(io.Discard, workers[i].stdout) // a line too long for the scanner
			lines[i] <- last
		})
	}
	go func() { reading.Wait(); close(w.exited) }()
	if p.During != nil {
		during.Go(func() { p.During(ctx, w) })
	}
	rep.workers, rep.keys = p.Replicas, slices.Sorted(maps.Keys(f.accounts))
	uses := make([]map[string][]tokenUse, p.Replicas)
	for i, wk := range workers {
		out := <-lines[i]
		if err := wk.cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, wk.stderr.String())
		}
		var res result
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("worker %d said %q: %v\n%s", i, out, err, wk.stderr.String())
		}
		rep.Calls += res.Calls
		rep.Failures += res.Failures
		rep.Account0Calls += res.AccountCalls[Key(0)]
		if rep.FirstError == "" {
			rep.FirstError = res.FirstError
		}
		rep.StoreCallsPerCall += float64(res.StoreCalls)
		for _, key := range slices.Sorted(maps.Keys(res.Failed)) {
			fl := *res.Failed[key]
			fl.Worker = i
			rep.FailedCalls = append(rep.FailedCalls, fl)
		}
		uses[i] = res.Tokens
		for k, n := range res.Events {
			if rep.Events == nil {
				rep.Events, rep.EventErrors = map[string]int64{}, map[string]string{}
			}
			rep.Events[k] += n
			if _, ok := rep.EventErrors[k]; !ok && res.EventErrors[k] != "" {
				rep.EventErrors[k] = res.EventErrors[k]
			}
		}
	}
	during.Wait()
	kill.Wait()
	rep.KilledAt, rep.LockSeenAt, rep.LockLost = killedAt, lockSeenAt, lockLost
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

	// Per account, from the fake: which accounts were refreshed, when
	// account 0 first was, and until when each token a worker presented
	// was handed out.
	issued := srv.IssuedTokens()
	byPrint := make(map[string]dropboxsigntest.IssuedToken, len(issued))
	refreshed := map[string]bool{}
	for tok, it := range issued {
		byPrint[fingerprint(tok)] = it
		if !it.Refresh || it.Issued.Before(begun) {
			continue
		}
		refreshed[it.Account] = true
		if it.Account == f.accounts[Key(0)] && (rep.Account0FirstRefresh.IsZero() || it.Issued.Before(rep.Account0FirstRefresh)) {
			rep.Account0FirstRefresh = it.Issued
		}
	}
	rep.RefreshedAccounts = len(refreshed)
	if !rep.Account0FirstRefresh.IsZero() {
		rep.Account0Refreshed = rep.Account0FirstRefresh.Sub(rep.Started)
	}
	for i, perKey := range uses {
		for key, list := range perKey {
			for _, u := range list {
				it, ok := byPrint[u.Token]
				if !ok {
					t.Errorf("worker %d presented an access token for %s that the fake never issued", i, key)
					continue
				}
				margin := min(10*time.Second, it.Expires.Sub(it.Issued)/10) // as the library's
				rep.holds = append(rep.holds, hold{worker: i, key: key, first: u.First, usableUntil: it.Expires.Add(-margin)})
			}
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
// its figures. Every assertion holds however slow the machine: callers
// wait for a refresh rather than fail, the kill is checked against the
// moment the lock was last seen held, and every account need only have
// been refreshed once (its seeded token is due at half its lifetime, and a
// run lasts two).
func Check(t *testing.T, cfg Config, rep Report) {
	t.Helper()
	t.Logf("%d replicas, %d accounts, %s of %s tokens: %d API calls, %d failed; %d refreshes = %.2f per account per token lifetime, %d of %d accounts refreshed; %.4f store round trips per API call; %d stale refresh tokens; %d of %d accounts valid after; account 0 first refreshed at %v",
		cfg.Replicas, cfg.Accounts, cfg.Duration, cfg.Lifetime, rep.Calls, rep.Failures, rep.Server.Refreshes,
		rep.RefreshesPerToken, rep.RefreshedAccounts, cfg.Accounts, rep.StoreCallsPerCall, rep.Server.StaleRefreshTokens, rep.ValidAccounts, cfg.Accounts, seconds(rep.Account0Refreshed))
	logEvents(t, rep)
	if rep.Failures != 0 {
		t.Errorf("%d of %d calls failed; first: %s", rep.Failures, rep.Calls, rep.FirstError)
	}
	if rep.Server.StaleRefreshTokens != 0 {
		t.Errorf("%d stale refresh tokens presented", rep.Server.StaleRefreshTokens)
	}
	// Refresh-ahead at half-life makes 2 refreshes per token lifetime for
	// the whole fleet; replicas refreshing on their own would make 2 each.
	// A slow machine makes fewer, never more.
	if rep.RefreshesPerToken > 3 {
		t.Errorf("%.2f refreshes per account per lifetime; want about 2, not %d", rep.RefreshesPerToken, 2*cfg.Replicas)
	}
	if rep.RefreshedAccounts != cfg.Accounts {
		t.Errorf("%d of %d accounts refreshed", rep.RefreshedAccounts, cfg.Accounts)
	}
	if rep.ValidAccounts != cfg.Accounts {
		t.Errorf("%d of %d accounts left with a working refresh token", rep.ValidAccounts, cfg.Accounts)
	}
	if cfg.KillAfter > 0 {
		checkKill(t, rep)
	}
}

// checkKill checks that the workers waited for the killed locker's lock:
// account 0 was first refreshed after the last moment the lock was seen
// held by the locker.
func checkKill(t reporter, rep Report) {
	t.Helper()
	t.Logf("locker killed at %v, its lock last seen held at %v; account 0 first refreshed at %v (%d calls)",
		seconds(rep.KilledAt.Sub(rep.Started)), seconds(rep.LockSeenAt.Sub(rep.Started)), seconds(rep.Account0Refreshed), rep.Account0Calls)
	switch {
	case rep.KilledAt.IsZero():
		t.Errorf("the locker was not killed")
	case rep.Account0Calls == 0 || rep.Account0FirstRefresh.IsZero():
		t.Errorf("account 0: %d calls, refreshed at %v; want calls, and a refresh once the lock was free", rep.Account0Calls, rep.Account0FirstRefresh)
	case rep.LockLost:
		// Not a failure of the store: a lease lapses when its holder cannot
		// renew it in time, and then another may take it.
		t.Logf("the locker's lease was not seen held just before the kill (it had lapsed, its renewals too late on this machine, or the look failed): the wait for a dead holder was not checked")
	case rep.Account0FirstRefresh.Before(rep.LockSeenAt):
		t.Errorf("account 0 was first refreshed at %v, before the locker's lock was last seen held at %v: the workers did not wait for it",
			seconds(rep.Account0Refreshed), seconds(rep.LockSeenAt.Sub(rep.Started)))
	}
}

// CheckOutage asserts what a fleet must achieve across an outage of its
// store, from down (when the test began the fault) to back (when the test
// found the store answering again), however slow the machine: no stale
// refresh token, and no failed call but for a worker and account whose
// token stopped being handed out before the store was back (see
// [Report.HeldAt]): such a worker has no token to serve and no store to get
// one from, which no cache can help. On a machine fast enough for the
// test's timing there is no such worker, and no call may fail; the log
// says which case the run was in, and by how much. That every account is
// valid after is the caller's to check ([Fleet.Valid]).
func CheckOutage(t *testing.T, rep Report, down, back time.Time) {
	t.Helper()
	checkOutage(t, rep, down, back)
}

// reporter is what the checks need of a *testing.T (and their tests, of a
// recorder).
type reporter interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
}

func checkOutage(t reporter, rep Report, down, back time.Time) {
	t.Helper()
	logEvents(t, rep)
	held := rep.HeldAt(down)
	exposed := map[[2]string]Hold{}
	for _, h := range held {
		if h.UsableUntil.Before(back) {
			exposed[[2]string{strconv.Itoa(h.Worker), h.Key}] = h
		}
	}
	if len(held) == 0 {
		t.Errorf("no worker held anything")
		return
	}
	first := held[0]
	if len(exposed) == 0 {
		t.Logf("store down at %v, back at %v; the earliest token a worker held at the fault served until %v (worker %d, %s), %v after the store was back: no call may fail",
			seconds(down.Sub(rep.Started)), seconds(back.Sub(rep.Started)), seconds(first.UsableUntil.Sub(rep.Started)), first.Worker, first.Key, seconds(first.UsableUntil.Sub(back)))
	} else {
		t.Logf("store down at %v, back at %v; this machine was too slow for the test's timing: %d worker-account pairs held a token that stopped serving before the store was back (the earliest: worker %d, %s, until %v): only their calls may fail",
			seconds(down.Sub(rep.Started)), seconds(back.Sub(rep.Started)), len(exposed), first.Worker, first.Key, seconds(first.UsableUntil.Sub(rep.Started)))
	}
	for _, f := range rep.FailedCalls {
		h, ok := exposed[[2]string{strconv.Itoa(f.Worker), f.Key}]
		switch {
		case !ok:
			t.Errorf("worker %d, %s: %d calls failed (from %v to %v; first: %s), though the token it held served until after the store was back",
				f.Worker, f.Key, f.Calls, seconds(f.First.Sub(rep.Started)), seconds(f.Last.Sub(rep.Started)), f.Error)
		case f.First.Before(h.UsableUntil):
			t.Errorf("worker %d, %s: a call failed at %v, while its token still served (until %v); first: %s",
				f.Worker, f.Key, seconds(f.First.Sub(rep.Started)), seconds(h.UsableUntil.Sub(rep.Started)), f.Error)
		}
	}
	if rep.Failures != 0 {
		t.Logf("%d of %d calls failed, of %d worker-account pairs; first: %s", rep.Failures, rep.Calls, len(rep.FailedCalls), rep.FirstError)
	}
	if rep.Server.StaleRefreshTokens != 0 {
		t.Errorf("%d stale refresh tokens presented", rep.Server.StaleRefreshTokens)
	}
}

// logEvents logs what went wrong in the workers, as the library reported
// it, if anything did.
func logEvents(t reporter, rep Report) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(rep.Events)) {
		t.Logf("event %s: %d, first: %s", k, rep.Events[k], rep.EventErrors[k])
	}
}

// seconds prints d as seconds, to the millisecond.
func seconds(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }
