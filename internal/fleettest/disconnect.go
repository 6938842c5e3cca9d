package fleettest

// Fleet runs with disconnections: worker processes call the API for every
// account while the test process disconnects accounts at random moments
// (and logs some of them in again), or while a child process that
// disconnects them is SIGKILLed. What is checked, and why it holds on a
// busy machine, is CheckDisconnects's doc.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
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
	"golang.org/x/oauth2"
)

// The roles of a child in a run with disconnections.
const (
	roleDWorker      = "dworker"      // calls the API for every account, and says what its store's watch reports
	roleDisconnector = "disconnector" // disconnects its accounts one after another, each when told to
)

// SeedVar is the environment variable that sets the seed of runs with
// disconnections whose DisconnectConfig.Seed is 0, to replay one.
const SeedVar = "FLEETTEST_SEED"

// DisconnectConfig describes a fleet run with disconnections
// ([RunDisconnects]).
type DisconnectConfig struct {
	Name     string        // what the log and the figures call the run: "FileStore", "Redis, push cut"
	Replicas int           // worker processes
	Accounts int           // accounts, each with a grant of its own
	Callers  int           // concurrent callers per worker
	Lifetime time.Duration // access token lifetime at the fake (whole seconds)
	// Latency delays every answer of the fake's token route, so that a
	// refresh is in flight long enough for a disconnection to land in it.
	Latency time.Duration
	// Poll is the workers' WithWatchPoll: the bound the checks hold the
	// workers to is Poll plus a store read after Disconnect (or Login)
	// returned, push or no push.
	Poll time.Duration
	// Disconnects is how many accounts are disconnected, each once;
	// Relogins of them are then logged in again (a new grant).
	Disconnects, Relogins int
	// Window is the time over which the disconnections are spread, from
	// the moment every worker has served every account.
	Window time.Duration
	// Seed seeds the schedule (which accounts, when, which are aimed at a
	// refresh); 0 takes the one in the environment variable SeedVar, if
	// any, else one from the clock. It is logged.
	Seed uint64
	// Cut, if set, cuts the store's push channel: the run calls it every
	// CutEvery (20 ms if zero) from before the workers start until they
	// end, so that the workers learn of changes by their poll.
	Cut      func(ctx context.Context) error
	CutEvery time.Duration
	// Kills, if > 0: rather than the test process disconnecting accounts
	// at random moments, Kills child processes one after another each
	// disconnect their share of the Disconnects accounts, one at a time,
	// and each is SIGKILLed just after it says it begins a seeded random
	// one of them. The test process then reads what the store holds for
	// each and disconnects them again. Relogins is ignored.
	Kills int
	// StoreEnv is passed to every child, for the NewStore given to Main.
	StoreEnv []string
}

// Disconnects is the run the store tests make, named name: 4 workers × 50
// accounts, 4 callers each; an 8 s token lifetime (refreshes every 4 s,
// longer than the bound, so that a worker that stopped using a grant
// within it did not learn of the disconnection at its next refresh), each
// refresh in flight for 300 ms; a 1 s watch poll; 20 accounts disconnected
// over 3 s, 6 of them logged in again. The caller adds StoreEnv, and Cut or
// Kills.
func Disconnects(name string) DisconnectConfig {
	return DisconnectConfig{Name: name, Replicas: 4, Accounts: 50, Callers: 4, Lifetime: 8 * time.Second,
		Latency: 300 * time.Millisecond, Poll: time.Second, Disconnects: 20, Relogins: 6, Window: 3 * time.Second}
}

// StoreState is what the store held for an account at a moment.
type StoreState struct {
	Mark  bool   // a disconnection mark
	Grant string // else the grant (the fake's account) of the token it held; "?" for a token the fake never issued
	Err   string // else Load's error
}

func (s StoreState) String() string {
	switch {
	case s.Mark:
		return "the disconnection mark"
	case s.Grant != "":
		return "a token of grant " + s.Grant
	default:
		return "error: " + s.Err
	}
}

// DisconnectEvent is one account's disconnection, and its new login if
// any.
type DisconnectEvent struct {
	Key   string
	Grant string // the grant disconnected
	// Start and End bound the disconnection: when the first Disconnect
	// began, and when one returned nil (with Kills: the killed child's,
	// if it said so, else the test process's retry).
	Start, End time.Time
	Err        string     // the error of the Disconnect that counts
	Aimed      time.Time  // if not zero, the moment the account's refresh was due, which the Disconnect aimed at
	After      StoreState // what the store held just after End
	// With Kills: Killed says the child was killed while this account's
	// Disconnect was under way (begun, not said to be done), and
	// AfterKill is what the store held just after the kill.
	Killed    bool
	AfterKill StoreState
	Relogin   *Relogin
}

// Relogin is a new login of a disconnected account.
type Relogin struct {
	Start, End time.Time
	Grant      string     // the new grant
	Err        string     // Login's error
	Before     StoreState // what the store held just before Login began
}

// DisconnectReport is what a run with disconnections did.
type DisconnectReport struct {
	Name    string
	Seed    uint64
	Poll    time.Duration
	Started time.Time // the workers were started
	Ready   time.Time // every worker had served every account
	// Resolved: every worker had been told of every change, and served
	// every new login (or the run stopped waiting); Ended: the workers
	// had ended.
	Resolved, Ended time.Time
	Events          []DisconnectEvent
	// Final is what the store held for each account after the workers
	// ended; Untouched lists the accounts never disconnected.
	Final     map[string]StoreState
	Untouched []string
	// Valid counts the untouched and logged-in-again accounts whose
	// stored refresh token works after the run.
	Valid      int
	Stats      dropboxsigntest.Stats
	CutCalls   int64  // calls of Config.Cut
	CutError   string // its first error
	Unresolved string // what the workers had not yet seen when the run stopped waiting, if anything
	Kills      int    // DisconnectConfig.Kills
	grant      map[string]string
	workers    []workerRecord
	issued     map[string]dropboxsigntest.IssuedToken // by fingerprint
	apiUses    map[string]dropboxsigntest.APIUse      // by fingerprint
	valid      map[string]bool                        // the accounts counted in Valid
}

// workerRecord is what a worker said while it ran, and its result.
type workerRecord struct {
	ready   bool
	reports map[string][]time.Time // key → when its watch reported it
	all     []time.Time            // when its watch reported All
	served  map[string][]served    // key → each call answered by another account than the one before
	res     dResult
	done    bool
}

type served struct {
	Account string
	At      time.Time // when the call began
}

// dLine is a line a dworker or a disconnector prints.
type dLine struct {
	Ev      string    `json:"ev"` // ready, report, served, result; begin, done, failed
	Key     string    `json:"key,omitempty"`
	All     bool      `json:"all,omitempty"`
	Account string    `json:"account,omitempty"`
	At      time.Time `json:"at"`
	Err     string    `json:"err,omitempty"`
	Result  *dResult  `json:"result,omitempty"`
}

// dResult is what a dworker prints last.
type dResult struct {
	Calls int64
	// Uses lists, per account, the access tokens the worker's calls
	// presented, with when the first and the last of those calls began:
	// the library handed the token out after that.
	Uses map[string][]dUse
	// Disconnected counts, per account, the calls that failed with
	// ErrDisconnected, with when the first and the last began.
	Disconnected map[string]*dSpan
	// Answers counts, per account, the calls answered by each of the
	// fake's accounts.
	Answers       map[string]map[string]int64
	Failures      int64      // calls that failed otherwise
	FirstFailures []dFailure // the first of them
	// Loads are the worker's store reads, Stalls the moments its
	// heartbeat woke more than 10 ms late: what a store read takes, and
	// how late the process ran, around a change.
	Loads, Stalls []window
	WatchErrors   int64
	WatchError    string // the first
	Ended         time.Time
	Events        map[string]int64
	EventErrors   map[string]string
}

type dUse struct {
	Token       string // its fingerprint
	Count       int64
	First, Last time.Time // when the first and the last call that presented it began
}

type dSpan struct {
	Count       int64
	First, Last time.Time
}

type dFailure struct {
	Key   string
	At    time.Time
	Error string
}

type window struct{ From, To time.Time }

// maxWindows bounds the Loads and Stalls a worker keeps.
const maxWindows = 20000

// say prints l as one line.
func say(out io.Writer, l dLine) {
	b, _ := json.Marshal(l)
	out.Write(append(b, '\n'))
}

// watchedStore is a worker's store: it times Loads, and tells of each
// change its watch reports once the worker's Accounts has taken it.
type watchedStore struct {
	dropboxsign.Store
	w   dropboxsign.Watcher
	out io.Writer

	mu        sync.Mutex
	loads     []window
	watchErrs int64
	watchErr  string
}

func (s *watchedStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	from := time.Now()
	tok, err := s.Store.Load(ctx, key)
	to := time.Now()
	s.mu.Lock()
	if len(s.loads) < maxWindows {
		s.loads = append(s.loads, window{from, to})
	}
	s.mu.Unlock()
	return tok, err
}

// Watch is the store's, each report timed after the Accounts' report
// returned: from then on, the account's token is not handed out before
// the store is read again.
func (s *watchedStore) Watch(ctx context.Context, poll time.Duration, report func(dropboxsign.Change)) {
	s.w.Watch(ctx, poll, func(c dropboxsign.Change) {
		report(c)
		at := time.Now()
		switch {
		case c.Err != nil:
			s.mu.Lock()
			if s.watchErrs++; s.watchErr == "" {
				s.watchErr = c.Err.Error()
			}
			s.mu.Unlock()
		case c.All:
			say(s.out, dLine{Ev: "report", All: true, At: at})
		case c.Key != "":
			say(s.out, dLine{Ev: "report", Key: c.Key, At: at})
		}
	})
}

// callKey is the context key under which a dworker's call says which
// account it is for and when it began, for handouts.
type callKey struct{}

type callInfo struct {
	key   string
	start time.Time
}

// handouts records, below the library's transport, which access token each
// call presented.
type handouts struct {
	base http.RoundTripper
	mu   sync.Mutex
	uses map[string][]dUse
}

func (h *handouts) RoundTrip(req *http.Request) (*http.Response, error) {
	ci, ok := req.Context().Value(callKey{}).(*callInfo)
	tok, bearer := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if ok && bearer && req.URL.Path == dropboxsigntest.AccountPath {
		fp := fingerprint(tok)
		h.mu.Lock()
		uses := h.uses[ci.key]
		if i := slices.IndexFunc(uses, func(u dUse) bool { return u.Token == fp }); i >= 0 {
			uses[i].Count++
			uses[i].First = minTime(uses[i].First, ci.start)
			uses[i].Last = maxTime(uses[i].Last, ci.start)
		} else {
			h.uses[ci.key] = append(uses, dUse{Token: fp, Count: 1, First: ci.start, Last: ci.start})
		}
		h.mu.Unlock()
	}
	return h.base.RoundTrip(req)
}

// disconnectWorker calls the API for every account until its standard
// input ends, and says when every account has served once, each change its
// watch reports, and each call answered by another account than the one
// before; then its result.
func disconnectWorker(spec childSpec, store dropboxsign.Store, out io.Writer) {
	w, ok := store.(dropboxsign.Watcher)
	if !ok {
		fmt.Fprintf(os.Stderr, "dworker: the store %T is not a Watcher\n", store)
		os.Exit(2)
	}
	ws := &watchedStore{Store: store, w: w, out: out}
	conf := &oauth2.Config{ClientID: spec.ClientID, ClientSecret: spec.Secret, Endpoint: oauth2.Endpoint{
		TokenURL: spec.ServerURL + dropboxsigntest.TokenPath, AuthStyle: oauth2.AuthStyleInParams}}
	ho := &handouts{base: http.DefaultTransport, uses: map[string][]dUse{}}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: ho})
	seen := &events{counts: map[string]int64{}, errs: map[string]string{}}
	accounts := dropboxsign.NewAccounts(ctx, conf, ws, dropboxsign.WithObserver(seen), dropboxsign.WithWatchPoll(spec.Poll))

	running, stop := context.WithCancel(context.Background())
	go func() { // the test process closes our input to end the run
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	var stalls []window
	var beats sync.WaitGroup
	beats.Go(func() {
		const beat = 5 * time.Millisecond
		for running.Err() == nil {
			from := time.Now()
			time.Sleep(beat)
			if to := time.Now(); to.Sub(from)-beat > 10*time.Millisecond && len(stalls) < maxWindows {
				stalls = append(stalls, window{from, to})
			}
		}
	})

	keys := slices.Sorted(maps.Keys(spec.Accounts))
	clients := map[string]*http.Client{}
	for _, key := range keys {
		clients[key] = accounts.Client(key)
	}
	res := dResult{Uses: map[string][]dUse{}, Disconnected: map[string]*dSpan{}, Answers: map[string]map[string]int64{}}
	var mu sync.Mutex
	last, ready := map[string]string{}, map[string]bool{}
	var turn atomic.Int64
	var wg sync.WaitGroup
	for range max(spec.Callers, 1) {
		wg.Go(func() {
			for running.Err() == nil {
				key := keys[(turn.Add(1)-1)%int64(len(keys))]
				start := time.Now()
				account, err := answeredBy(context.WithValue(ctx, callKey{}, &callInfo{key, start}), clients[key], spec.ServerURL+dropboxsigntest.AccountPath)
				mu.Lock()
				res.Calls++
				switch {
				case errors.Is(err, dropboxsign.ErrDisconnected):
					d := res.Disconnected[key]
					if d == nil {
						d = &dSpan{First: start}
						res.Disconnected[key] = d
					}
					d.Count++
					d.First, d.Last = minTime(d.First, start), maxTime(d.Last, start)
				case err != nil:
					if res.Failures++; len(res.FirstFailures) < 20 {
						res.FirstFailures = append(res.FirstFailures, dFailure{Key: key, At: start, Error: err.Error()})
					}
				default:
					if res.Answers[key] == nil {
						res.Answers[key] = map[string]int64{}
					}
					res.Answers[key][account]++
					if last[key] != account {
						last[key] = account
						say(out, dLine{Ev: "served", Key: key, Account: account, At: start})
					}
					if !ready[key] {
						if ready[key] = true; len(ready) == len(keys) {
							say(out, dLine{Ev: "ready", At: time.Now()})
						}
					}
				}
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	res.Ended = time.Now()
	beats.Wait()
	shutdown, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := accounts.Shutdown(shutdown); err != nil {
		res.Failures++
		res.FirstFailures = append(res.FirstFailures, dFailure{At: time.Now(), Error: "shutdown: " + err.Error()})
	}
	ho.mu.Lock()
	res.Uses = ho.uses
	ho.mu.Unlock()
	ws.mu.Lock()
	res.Loads, res.WatchErrors, res.WatchError = ws.loads, ws.watchErrs, ws.watchErr
	ws.mu.Unlock()
	res.Stalls = stalls
	seen.mu.Lock()
	res.Events, res.EventErrors = seen.counts, seen.errs
	seen.mu.Unlock()
	say(out, dLine{Ev: "result", At: time.Now(), Result: &res})
}

// answeredBy calls the account route and returns the account that
// answered.
func answeredBy(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status)
	}
	var body struct {
		Account struct {
			ID string `json:"account_id"`
		} `json:"account"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	return body.Account.ID, nil
}

// disconnector disconnects spec.Keys in turn, each once a line arrives on
// its standard input, saying when it begins and when it is done; then it
// waits to be killed.
func disconnector(spec childSpec, store dropboxsign.Store, out io.Writer) {
	conf := &oauth2.Config{ClientID: spec.ClientID, ClientSecret: spec.Secret, Endpoint: oauth2.Endpoint{
		TokenURL: spec.ServerURL + dropboxsigntest.TokenPath, AuthStyle: oauth2.AuthStyleInParams}}
	accounts := dropboxsign.NewAccounts(context.Background(), conf, store)
	in := bufio.NewReader(os.Stdin)
	for _, key := range spec.Keys {
		if _, err := in.ReadString('\n'); err != nil {
			os.Exit(0)
		}
		say(out, dLine{Ev: "begin", Key: key, At: time.Now()})
		if err := accounts.Disconnect(context.Background(), key); err != nil {
			say(out, dLine{Ev: "failed", Key: key, At: time.Now(), Err: err.Error()})
			continue
		}
		say(out, dLine{Ev: "done", Key: key, At: time.Now()})
	}
	select {}
}

// pipedChild is a child whose input the test process holds.
type pipedChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr *lockedBuffer
}

func startPiped(t *testing.T, ctx context.Context, env []string, spec childSpec, role string) *pipedChild {
	t.Helper()
	spec.Role = role
	raw, _ := json.Marshal(spec)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), specVar+"="+string(raw)), env...)
	c := &pipedChild{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if c.stdout, err = cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

// board is what the workers have said so far, for the test process to
// wait on.
type board struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced at each line
	workers []workerRecord
	bad     []string // lines that were not ours
}

func (b *board) update(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f()
	close(b.changed)
	b.changed = make(chan struct{})
}

// wait waits until cond, called under b.mu, holds, or ctx ends; it
// reports which.
func (b *board) wait(ctx context.Context, cond func() bool) bool {
	for {
		b.mu.Lock()
		ok, ch := cond(), b.changed
		b.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// plan is one disconnection the schedule has drawn.
type plan struct {
	key          string
	offset       time.Duration // from Ready
	aim          bool          // at the account's next refresh
	relogin      bool
	reloginAfter time.Duration
	code, state  string
}

// RunDisconnects runs cfg: a fake Dropbox Sign; store seeded with one
// token per account (their expiries staggered over half a lifetime, so
// that refreshes are spread); cfg.Replicas worker processes calling the
// API for every account; and, once every worker has served every account,
// disconnections by the test process through its own Accounts on store,
// at seeded random moments, with new logins of some of them a random
// moment later (or, with cfg.Kills, by child processes SIGKILLed mid-way).
// Every other disconnection then waits for the moment the refresh of one
// of its group of accounts is due, and takes that account, so as to land
// in the refresh. The run then waits until every worker has been told of
// every change by its store's watch and has served every new login,
// watches half a poll more, ends the workers, and reads the store and the
// fake. Check the report with [CheckDisconnects].
func RunDisconnects(t *testing.T, cfg DisconnectConfig, store dropboxsign.Store) *DisconnectReport {
	t.Helper()
	if cfg.Seed == 0 {
		cfg.Seed, _ = strconv.ParseUint(os.Getenv(SeedVar), 10, 64)
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	cfg.Disconnects = min(cfg.Disconnects, cfg.Accounts)
	cfg.Relogins = min(cfg.Relogins, cfg.Disconnects)
	if cfg.Kills > 0 {
		cfg.Relogins = 0
	}
	t.Logf("%s: seed %d (DisconnectConfig.Seed replays the schedule)", cfg.Name, cfg.Seed)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	srv := dropboxsigntest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetLifetime(cfg.Lifetime)
	rep := &DisconnectReport{Name: cfg.Name, Seed: cfg.Seed, Poll: cfg.Poll, Kills: cfg.Kills, grant: map[string]string{}, Final: map[string]StoreState{}, valid: map[string]bool{}}
	seeded := map[string]*oauth2.Token{}
	for i := range cfg.Accounts {
		tok := srv.IssueToken()
		// The library schedules from the stored expiry: an earlier one
		// spreads the accounts' refreshes over half a lifetime.
		tok.Expiry = tok.Expiry.Add(-time.Duration(i) * cfg.Lifetime / 2 / time.Duration(cfg.Accounts))
		if err := store.Save(ctx, Key(i), nil, tok); err != nil {
			t.Fatalf("seeding the store: %v", err)
		}
		seeded[Key(i)] = tok
	}
	issued := srv.IssuedTokens()
	for key, tok := range seeded {
		rep.grant[key] = issued[tok.AccessToken].Account
	}

	// The schedule, drawn whole before anything runs.
	perm := rng.Perm(cfg.Accounts)[:cfg.Disconnects]
	plans := make([]plan, len(perm))
	for j, i := range perm {
		plans[j] = plan{key: Key(i), offset: time.Duration(rng.Int64N(int64(max(cfg.Window, 1)))), aim: rng.IntN(2) == 0,
			relogin: j < cfg.Relogins, reloginAfter: time.Duration(rng.Int64N(int64(time.Second)))}
		if plans[j].relogin {
			plans[j].state = fmt.Sprintf("st%d", i)
			plans[j].code = authorizeCode(t, srv, plans[j].state)
		}
	}
	kills := make([]int, cfg.Kills) // with Kills: where in its share each child is killed
	killDelays := make([]time.Duration, cfg.Kills)
	for r := range kills {
		share := shareOf(len(perm), cfg.Kills, r)
		kills[r] = rng.IntN(max(len(share), 1))
		killDelays[r] = time.Duration(rng.Int64N(int64(2 * time.Millisecond)))
	}
	srv.SetLatency(cfg.Latency)

	var cutCtx context.Context
	var stopCut context.CancelFunc
	var cutting sync.WaitGroup
	if cfg.Cut != nil {
		cutCtx, stopCut = context.WithCancel(ctx)
		every := cfg.CutEvery
		if every <= 0 {
			every = 20 * time.Millisecond
		}
		cutting.Go(func() {
			for cutCtx.Err() == nil {
				if err := cfg.Cut(cutCtx); err != nil && rep.CutError == "" && cutCtx.Err() == nil {
					rep.CutError = err.Error()
				}
				rep.CutCalls++
				select {
				case <-cutCtx.Done():
				case <-time.After(every): // the pace of the cuts, not a wait for anything
				}
			}
		})
	}

	spec := childSpec{ServerURL: srv.URL, ClientID: srv.ClientID, Secret: srv.ClientSecret, Accounts: rep.grant, Callers: cfg.Callers, Poll: cfg.Poll}
	b := &board{changed: make(chan struct{}), workers: make([]workerRecord, cfg.Replicas)}
	for i := range b.workers {
		b.workers[i] = workerRecord{reports: map[string][]time.Time{}, served: map[string][]served{}}
	}
	workers := make([]*pipedChild, cfg.Replicas)
	var reading sync.WaitGroup
	defer func() { // after a t.Fatal too
		for _, w := range workers {
			if w != nil {
				w.stdin.Close()
			}
		}
		cancel()
		reading.Wait()
		if stopCut != nil {
			stopCut()
			cutting.Wait()
		}
	}()
	rep.Started = time.Now()
	for i := range workers {
		workers[i] = startPiped(t, ctx, cfg.StoreEnv, spec, roleDWorker)
		w := workers[i]
		reading.Go(func() {
			sc := bufio.NewScanner(w.stdout)
			sc.Buffer(nil, 256<<20)
			for sc.Scan() {
				var l dLine
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					b.update(func() { b.bad = append(b.bad, fmt.Sprintf("worker %d: %.200q", i, sc.Text())) })
					continue
				}
				b.update(func() {
					r := &b.workers[i]
					switch l.Ev {
					case "ready":
						r.ready = true
					case "report":
						if l.All {
							r.all = append(r.all, l.At)
						} else {
							r.reports[l.Key] = append(r.reports[l.Key], l.At)
						}
					case "served":
						r.served[l.Key] = append(r.served[l.Key], served{l.Account, l.At})
					case "result":
						r.res, r.done = *l.Result, true
					}
				})
			}
			io.Copy(io.Discard, w.stdout)
			b.update(func() { b.workers[i].done = true })
		})
	}
	if !b.wait(ctx, func() bool {
		return !slices.ContainsFunc(b.workers, func(r workerRecord) bool { return !r.ready || r.done })
	}) || slices.ContainsFunc(b.workers, func(r workerRecord) bool { return r.done }) {
		for i, w := range workers {
			t.Logf("worker %d: %s", i, w.stderr.String())
		}
		t.Fatalf("%s: the workers did not all serve every account", cfg.Name)
	}
	rep.Ready = time.Now()

	acc := dropboxsign.NewAccounts(context.Background(), srv.Config(), store, dropboxsign.WithWatchPoll(cfg.Poll))
	defer acc.Shutdown(context.Background())
	load := func(key string) StoreState { return loadState(ctx, store, srv, key) }
	evs := make([]DisconnectEvent, len(plans))
	if cfg.Kills > 0 {
		for r := range cfg.Kills {
			share := shareOf(len(plans), cfg.Kills, r)
			at := rep.Ready.Add(time.Duration(r) * cfg.Window / time.Duration(cfg.Kills))
			sleepUntil(ctx, at)
			killRound(t, ctx, cfg, spec, acc, load, plans[share[0]:share[0]+len(share)], evs[share[0]:share[0]+len(share)], kills[r], killDelays[r])
		}
	} else {
		// The aimed disconnections take, when their moment comes, the
		// account of theirs whose refresh is due next.
		aimed := &aimPool{grant: rep.grant}
		for _, p := range plans {
			if p.aim {
				aimed.keys = append(aimed.keys, p.key)
			}
		}
		var running sync.WaitGroup
		for j, p := range plans {
			running.Go(func() {
				e := &evs[j]
				sleepUntil(ctx, rep.Ready.Add(p.offset))
				if p.aim {
					p.key, e.Aimed = aimed.take(srv, cfg, seeded)
					if !e.Aimed.IsZero() {
						sleepUntil(ctx, e.Aimed.Add(cfg.Latency/2))
					}
				}
				e.Key, e.Grant = p.key, rep.grant[p.key]
				e.Start = time.Now()
				err := acc.Disconnect(ctx, p.key)
				e.End = time.Now()
				if err != nil {
					e.Err = err.Error()
				}
				e.After = load(p.key)
				if !p.relogin {
					return
				}
				sleepUntil(ctx, e.End.Add(p.reloginAfter))
				rl := &Relogin{Before: load(p.key), Start: time.Now()}
				tok, err := acc.Login(ctx, p.key, p.code, p.state)
				rl.End = time.Now()
				if err != nil {
					rl.Err = err.Error()
				} else {
					rl.Grant = srv.IssuedTokens()[tok.AccessToken].Account
				}
				e.Relogin = rl
			})
		}
		running.Wait()
	}
	rep.Events = evs

	// Until every worker has been told of every change and serves every
	// new login (a bound is a check's business, not the wait's: on a
	// slow machine the wait is long, and the checks say whether it was
	// too long).
	waitCtx, waitCancel := context.WithTimeout(ctx, 30*time.Second+2*cfg.Poll)
	defer waitCancel()
	var missing string
	b.wait(waitCtx, func() bool {
		missing = ""
		for w := range b.workers {
			r := &b.workers[w]
			for _, e := range rep.Events {
				if e.End.IsZero() {
					continue
				}
				if told(r, e.Key, e.Start, e.End).IsZero() {
					missing = fmt.Sprintf("worker %d was not told of %s's disconnection", w, e.Key)
					return false
				}
				if rl := e.Relogin; rl != nil && rl.Grant != "" {
					if toldLogin(r, e.Key, rl).IsZero() {
						missing = fmt.Sprintf("worker %d was not told of %s's new login", w, e.Key)
						return false
					}
					if !slices.ContainsFunc(r.served[e.Key], func(s served) bool { return s.Account == rl.Grant }) {
						missing = fmt.Sprintf("worker %d did not serve %s's new login", w, e.Key)
						return false
					}
				}
			}
		}
		return true
	})
	rep.Unresolved = missing
	rep.Resolved = time.Now()
	// Half a poll more of calls, for the checks to see what the workers
	// do after they were told (no verdict needs it).
	sleepUntil(ctx, time.Now().Add(cfg.Poll/2))

	for _, w := range workers {
		w.stdin.Close()
	}
	for i, w := range workers {
		if err := w.cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, w.stderr.String())
		}
	}
	rep.Ended = time.Now()
	reading.Wait()
	if stopCut != nil {
		stopCut()
		cutting.Wait()
	}
	b.mu.Lock()
	rep.workers = b.workers
	for _, l := range b.bad {
		t.Errorf("%s", l)
	}
	b.mu.Unlock()
	for i, r := range rep.workers {
		if !r.res.Ended.After(rep.Started) {
			t.Fatalf("worker %d printed no result\n%s", i, workers[i].stderr.String())
		}
	}

	disconnected := map[string]bool{}
	for _, e := range rep.Events {
		disconnected[e.Key] = !e.Start.IsZero()
	}
	for i := range cfg.Accounts {
		rep.Final[Key(i)] = load(Key(i))
		if !disconnected[Key(i)] {
			rep.Untouched = append(rep.Untouched, Key(i))
		}
	}
	srv.SetLatency(0)
	rep.Stats = srv.Stats()
	rep.issued, rep.apiUses = map[string]dropboxsigntest.IssuedToken{}, map[string]dropboxsigntest.APIUse{}
	for tok, it := range srv.IssuedTokens() {
		rep.issued[fingerprint(tok)] = it
	}
	for tok, u := range srv.APIUses() {
		rep.apiUses[fingerprint(tok)] = u
	}
	// Last, as it spends them: the stored refresh tokens that must work.
	conf := srv.Config()
	for key, st := range rep.Final {
		if st.Mark || st.Grant == "" {
			continue
		}
		tok, err := store.Load(ctx, key)
		if err == nil {
			_, err = dropboxsign.Refresh(ctx, conf, tok.RefreshToken)
		}
		if err == nil {
			rep.Valid++
			rep.valid[key] = true
		}
	}
	return rep
}

// killRound has a disconnector child disconnect the plans' accounts one
// at a time and SIGKILLs it just after it says it begins plans[at]'s (and
// delay); then it reads what the store holds for each, and disconnects
// again every account the child began.
func killRound(t *testing.T, ctx context.Context, cfg DisconnectConfig, spec childSpec, acc *dropboxsign.Accounts, load func(string) StoreState,
	plans []plan, events []DisconnectEvent, at int, delay time.Duration) {
	t.Helper()
	spec.Keys = nil
	for _, p := range plans {
		spec.Keys = append(spec.Keys, p.key)
	}
	c := startPiped(t, ctx, cfg.StoreEnv, spec, roleDisconnector)
	begun, done := map[string]time.Time{}, map[string]time.Time{}
	lines := bufio.NewScanner(c.stdout)
	next := func() (dLine, bool) {
		for lines.Scan() {
			var l dLine
			if json.Unmarshal(lines.Bytes(), &l) == nil {
				return l, true
			}
		}
		return dLine{}, false
	}
	record := func(l dLine) {
		switch l.Ev {
		case "begin":
			begun[l.Key] = l.At
		case "done":
			done[l.Key] = l.At
		case "failed":
			t.Logf("the disconnector's Disconnect of %s failed: %s", l.Key, l.Err)
		}
	}
	for i, p := range plans[:at+1] {
		io.WriteString(c.stdin, "go\n")
		for {
			l, ok := next()
			if !ok {
				t.Fatalf("the disconnector ended early: %s", c.stderr.String())
			}
			record(l)
			if l.Key != p.key || (i < at && l.Ev == "begin") {
				continue
			}
			break // plans[i] done (or failed); or plans[at] begun
		}
	}
	if delay > 0 {
		time.Sleep(delay) // where in the Disconnect the kill lands: drawn from the seed
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
	for {
		l, ok := next()
		if !ok {
			break
		}
		record(l)
	}
	for j, p := range plans {
		e := &events[j]
		e.Key, e.Grant = p.key, spec.Accounts[p.key]
		e.AfterKill = load(p.key)
	}
	for j, p := range plans {
		e := &events[j]
		b, ok := begun[p.key]
		if !ok {
			continue
		}
		e.Start = b
		d, finished := done[p.key]
		e.Killed = !finished
		err := acc.Disconnect(ctx, p.key) // again: it must succeed
		end := time.Now()
		if err != nil {
			e.Err = "disconnecting again after the kill: " + err.Error()
		}
		if finished {
			e.End = d
		} else if err == nil {
			e.End = end
		}
		e.After = load(p.key)
	}
}

// shareOf is the indexes of round r's share of n items over rounds.
func shareOf(n, rounds, r int) []int {
	from, to := n*r/rounds, n*(r+1)/rounds
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// told returns when worker r's watch first reported key at or after from,
// or All at or after returned (a report of All before the change might be
// read before it); zero if never. No change of key comes before a
// disconnection in these runs, so a report of key from its start on
// followed the mark (a store writes the change to its log, and pushes it,
// after the mark or with it).
func told(r *workerRecord, key string, from, returned time.Time) time.Time {
	var at time.Time
	if i := slices.IndexFunc(r.reports[key], func(t time.Time) bool { return !t.Before(from) }); i >= 0 {
		at = r.reports[key][i]
	}
	if i := slices.IndexFunc(r.all, func(t time.Time) bool { return !t.Before(returned) }); i >= 0 && (at.IsZero() || r.all[i].Before(at)) {
		at = r.all[i]
	}
	return at
}

// toldLogin returns when worker r's watch reported key's new login: its
// first report of key (or All) after Login returned, else its last report
// of key while Login ran. A report while Login ran may be a late one of
// the disconnection (read before the new token was written), but then the
// login's own follows it; zero if none.
func toldLogin(r *workerRecord, key string, rl *Relogin) time.Time {
	if at := told(r, key, rl.End, rl.End); !at.IsZero() {
		return at
	}
	var at time.Time
	for _, t := range r.reports[key] {
		if !t.Before(rl.Start) && t.Before(rl.End) {
			at = t
		}
	}
	return at
}

// aimPool is the accounts of the disconnections aimed at a refresh.
type aimPool struct {
	mu    sync.Mutex
	keys  []string
	grant map[string]string
}

// take removes from the pool the account whose refresh is due next (from
// now less half the fake's latency: a refresh that may still be in
// flight), and returns it with that moment; the pool's first account and
// zero if none is due within half a lifetime.
func (a *aimPool) take(srv *dropboxsigntest.Server, cfg DisconnectConfig, seeded map[string]*oauth2.Token) (string, time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	best, due := 0, time.Time{}
	from, to := time.Now().Add(-cfg.Latency/2), time.Now().Add(cfg.Lifetime/2)
	for i, key := range a.keys {
		d := nextRefresh(srv, a.grant[key], cfg.Lifetime, seeded[key])
		if d.After(from) && d.Before(to) && (due.IsZero() || d.Before(due)) {
			best, due = i, d
		}
	}
	key := a.keys[best]
	a.keys = slices.Delete(a.keys, best, best+1)
	return key, due
}

// nextRefresh returns when the library refreshes the grant's newest
// token: half its lifetime before it expires (for the seeded token, before
// the staggered expiry that was stored); zero if the fake knows none.
func nextRefresh(srv *dropboxsigntest.Server, grant string, lifetime time.Duration, seeded *oauth2.Token) time.Time {
	var newest string
	var it dropboxsigntest.IssuedToken
	for tok, i := range srv.IssuedTokens() {
		if i.Account == grant && i.Issued.After(it.Issued) {
			newest, it = tok, i
		}
	}
	switch {
	case newest == "":
		return time.Time{}
	case newest == seeded.AccessToken:
		return seeded.Expiry.Add(-lifetime / 2)
	}
	return it.Issued.Add(lifetime / 2)
}

// loadState reads what the store holds for key.
func loadState(ctx context.Context, store dropboxsign.Store, srv *dropboxsigntest.Server, key string) StoreState {
	tok, err := store.Load(ctx, key)
	var d *dropboxsign.DisconnectedError
	switch {
	case errors.As(err, &d):
		return StoreState{Mark: true}
	case err != nil:
		return StoreState{Err: err.Error()}
	case tok == nil:
		return StoreState{Err: "Load returned neither a token nor an error"}
	}
	if it, ok := srv.IssuedTokens()[tok.AccessToken]; ok {
		return StoreState{Grant: it.Account}
	}
	return StoreState{Grant: "?"}
}

// authorizeCode walks the fake's consent page (its default callback
// answers with the code as JSON): a new grant, of a new account of the
// fake.
func authorizeCode(t *testing.T, srv *dropboxsigntest.Server, state string) string {
	t.Helper()
	resp, err := srv.Client().Get(srv.Config().AuthCodeURL(state))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cb struct{ Code, State string }
	if err := json.NewDecoder(resp.Body).Decode(&cb); err != nil || cb.Code == "" || cb.State != state {
		t.Fatalf("consent: %+v, %v", cb, err)
	}
	return cb.Code
}

func sleepUntil(ctx context.Context, at time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(at)):
	}
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Figures are a run's propagation times, over its disconnections.
type Figures struct {
	Name string
	N    int // disconnections
	// P50, P99 and Max are of the time from Disconnect's return to the
	// last API request carrying a token of the disconnected grant at the
	// fake, from any worker (zero if none came after the return).
	P50, P99, Max time.Duration
	// Told is of the time from Disconnect's return to each worker's watch
	// reporting the change, over workers and disconnections: what the
	// library controls, where the above adds the time requests take to
	// reach the fake.
	ToldP50, ToldP99, ToldMax time.Duration
	// LateTokens counts tokens the fake issued for a disconnected grant
	// after its Disconnect returned (refreshes under way then, or whose
	// store read came before the mark: none may be stored or presented);
	// InFlight counts those whose request had reached the fake before.
	LateTokens, InFlight int
	// Hits counts the refreshes of a disconnected grant that were under
	// way while its Disconnect ran: requested before it returned, their
	// token issued after it began.
	Hits int
}

func (f Figures) String() string {
	return fmt.Sprintf("%s: %d disconnections; last API request with the grant's token after Disconnect returned: p50 %s, p99 %s, max %s; workers told: p50 %s, p99 %s, max %s; %d refreshes under way at a Disconnect; %d tokens issued after the return (%d requested before it), none stored or presented",
		f.Name, f.N, ms(f.P50), ms(f.P99), ms(f.Max), ms(f.ToldP50), ms(f.ToldP99), ms(f.ToldMax), f.Hits, f.LateTokens, f.InFlight)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

// percentile is the nearest-rank p-th percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	return s[max(int(math.Ceil(p*float64(len(s))))-1, 0)]
}

// CheckDisconnects asserts what a run with disconnections must achieve,
// whatever its store, and logs its figures (with t.Logf, for the docs);
// with go test -v it also logs, per disconnection, a line beginning
// "fleet-sample" with the unrounded samples behind them, for pooling runs.
// Its verdicts rest on what the library controls, timed by the process
// that saw it, never on how fast the machine is:
//   - every Disconnect (retried, after a kill) returned nil, and the store
//     then held the mark; after a kill, it held the token or the mark,
//     never anything else; before a new login, still the mark; at the end,
//     the mark or the new login's token: no grant written back;
//   - no token the fake issued for a disconnected grant after Disconnect
//     returned (a refresh under way) was ever presented, at the fake or by
//     a worker;
//   - every worker's watch reported each change, within Poll plus a store
//     read of Disconnect's (Login's) return: the "store read" is the
//     slowest Load the worker made from a poll before to the report, plus
//     the longest its heartbeat was late meanwhile;
//   - no worker's call that began after its watch reported a
//     disconnection presented a token of the grant (the library hands out
//     no token of a changed account before reading the store again), nor
//     any after the bound; no call failed as disconnected before the
//     Disconnect began, nor after the worker was told of a new login; and
//     every worker served every new login;
//   - no call failed otherwise, no account answered but its own grants,
//     no refresh token was presented stale, and every account still
//     connected at the end has a working refresh token stored.
//
// It returns the figures: the time from Disconnect's return to the last
// API request with the grant's token at the fake (measured: request
// arrival is late on a busy machine, so it is no verdict), and to each
// worker's report.
func CheckDisconnects(t *testing.T, rep *DisconnectReport) Figures {
	t.Helper()
	return checkDisconnects(t, rep)
}

func checkDisconnects(t reporter, rep *DisconnectReport) Figures {
	t.Helper()
	fig := Figures{Name: rep.Name}
	if rep.Unresolved != "" {
		t.Errorf("%s: stopped waiting: %s", rep.Name, rep.Unresolved)
	}
	if rep.Stats.StaleRefreshTokens != 0 {
		t.Errorf("%d stale refresh tokens presented", rep.Stats.StaleRefreshTokens)
	}
	if rep.CutError != "" {
		t.Errorf("cutting the push channel: %s", rep.CutError)
	}
	allowed := map[string][]string{}
	for key, g := range rep.grant {
		allowed[key] = []string{g}
	}
	byKey := map[string]*DisconnectEvent{}
	for i := range rep.Events {
		e := &rep.Events[i]
		if !e.Start.IsZero() {
			byKey[e.Key] = e
		}
		if e.Relogin != nil && e.Relogin.Grant != "" {
			allowed[e.Key] = append(allowed[e.Key], e.Relogin.Grant)
		}
	}
	// grantOf says whose a fingerprinted token is; presented says who
	// presented it.
	grantOf := func(fp string) string { return rep.issued[fp].Account }
	var toldLags []time.Duration
	var calls, failures, watchErrs int64
	for w, r := range rep.workers {
		calls += r.res.Calls
		watchErrs += r.res.WatchErrors
		failures += r.res.Failures
		for _, f := range r.res.FirstFailures {
			t.Errorf("worker %d, %s: a call that began at %s failed: %s", w, f.Key, rep.at(f.At), f.Error)
		}
		for _, key := range slices.Sorted(maps.Keys(r.res.Answers)) {
			for account, n := range r.res.Answers[key] {
				if !slices.Contains(allowed[key], account) {
					t.Errorf("worker %d, %s: %d calls answered by %s, not by one of its grants %v", w, key, n, account, allowed[key])
				}
			}
		}
		for _, key := range slices.Sorted(maps.Keys(r.res.Disconnected)) {
			d := r.res.Disconnected[key]
			e := byKey[key]
			switch {
			case e == nil:
				t.Errorf("worker %d, %s: %d calls failed as disconnected (from %s), though it was never disconnected", w, key, d.Count, rep.at(d.First))
			case d.First.Before(e.Start):
				t.Errorf("worker %d, %s: a call that began at %s failed as disconnected, before Disconnect began at %s", w, key, rep.at(d.First), rep.at(e.Start))
			}
		}
		if r.res.WatchError != "" {
			t.Logf("worker %d: %d watch failures; the first: %s", w, r.res.WatchErrors, r.res.WatchError)
		}
	}
	t.Logf("%s: %d workers, %d API calls, %d failed otherwise than as disconnected; %d refreshes, %d watch failures reported; push cut %d times; all served at %s, everything seen at %s, ended at %s",
		rep.Name, len(rep.workers), calls, failures, rep.Stats.Refreshes, watchErrs, rep.CutCalls, rep.at(rep.Ready), rep.at(rep.Resolved), rep.at(rep.Ended))
	logEvents(t, mergeEvents(rep.workers))

	var lags []time.Duration
	for i := range rep.Events {
		e := &rep.Events[i]
		if e.Start.IsZero() { // with Kills: never begun
			if e.AfterKill.Grant != e.Grant {
				t.Errorf("%s, never begun by the killed child, held %s after the kill; want a token of %s", e.Key, e.AfterKill, e.Grant)
			}
			continue
		}
		if rep.Kills > 0 && !e.AfterKill.Mark && e.AfterKill.Grant != e.Grant {
			t.Errorf("%s: after the kill the store held %s; want the mark or a token of %s, nothing else", e.Key, e.AfterKill, e.Grant)
		}
		if e.Err != "" || e.End.IsZero() {
			t.Errorf("%s: Disconnect: %s", e.Key, e.Err)
			continue
		}
		if !e.After.Mark {
			t.Errorf("%s: just after Disconnect returned the store held %s", e.Key, e.After)
		}
		final := rep.Final[e.Key]
		if rl := e.Relogin; rl != nil {
			if !rl.Before.Mark {
				t.Errorf("%s: just before the new login the store held %s; want the mark: a grant written back", e.Key, rl.Before)
			}
			if rl.Err != "" {
				t.Errorf("%s: Login: %s", e.Key, rl.Err)
			} else if final.Grant != rl.Grant {
				t.Errorf("%s: at the end the store held %s; want the new login's grant %s", e.Key, final, rl.Grant)
			}
		} else if !final.Mark {
			t.Errorf("%s: at the end the store held %s; want the mark", e.Key, final)
		}

		// At the fake: the grant's tokens, when each was last presented,
		// and those issued after the return.
		var last time.Time
		var presented int
		for fp, it := range rep.issued {
			if it.Account != e.Grant {
				continue
			}
			u := rep.apiUses[fp]
			if u.Count > 0 {
				last = maxTime(last, u.Last)
				if u.Last.After(e.End) {
					presented++
				}
			}
			if it.Requested.Before(e.End) && it.Issued.After(e.Start) && it.Refresh {
				fig.Hits++
			}
			if !it.Issued.After(e.End) {
				continue
			}
			fig.LateTokens++
			if it.Requested.Before(e.End) {
				fig.InFlight++
			}
			if u.Count > 0 {
				t.Errorf("%s: a token of the disconnected grant, issued %s after Disconnect returned (requested %s after), was presented %d times at the fake",
					e.Key, ms(it.Issued.Sub(e.End)), ms(it.Requested.Sub(e.End)), u.Count)
			}
			for w, r := range rep.workers {
				if slices.ContainsFunc(r.res.Uses[e.Key], func(u dUse) bool { return u.Token == fp }) {
					t.Errorf("worker %d, %s: presented a token of the disconnected grant issued after Disconnect returned", w, e.Key)
				}
			}
		}
		lag := max(last.Sub(e.End), 0)
		lags = append(lags, lag)

		var worst, worstBound time.Duration
		var evTold []string // this disconnection's samples of toldLags, for the raw line
		for w := range rep.workers {
			r := &rep.workers[w]
			at := told(r, e.Key, e.Start, e.End)
			bound := e.End.Add(rep.Poll + r.slack(e.End, at, rep.Poll))
			var lastUse time.Time
			for _, u := range r.res.Uses[e.Key] {
				if grantOf(u.Token) == e.Grant {
					lastUse = maxTime(lastUse, u.Last)
				}
			}
			switch {
			case at.IsZero() && r.res.Ended.After(bound):
				t.Errorf("worker %d, %s: never told of the disconnection, though it ran until %s, past the bound %s", w, e.Key, rep.at(r.res.Ended), rep.at(bound))
			case at.IsZero():
				t.Logf("worker %d, %s: not told of the disconnection before it ended at %s (within the bound %s)", w, e.Key, rep.at(r.res.Ended), rep.at(bound))
			case at.After(bound):
				t.Errorf("worker %d, %s: told of the disconnection %s after Disconnect returned, past the bound of %s (poll %s + a store read and the process's stalls then, %s)",
					w, e.Key, ms(at.Sub(e.End)), ms(bound.Sub(e.End)), ms(rep.Poll), ms(bound.Sub(e.End)-rep.Poll))
			default:
				toldLags = append(toldLags, max(at.Sub(e.End), 0))
				evTold = append(evTold, max(at.Sub(e.End), 0).String())
				if at.Sub(e.End) > worst {
					worst, worstBound = at.Sub(e.End), bound.Sub(e.End)
				}
			}
			if !at.IsZero() && lastUse.After(at) {
				t.Errorf("worker %d, %s: a call that began %s after its watch reported the disconnection presented a token of the grant", w, e.Key, ms(lastUse.Sub(at)))
			}
			if lastUse.After(bound) {
				t.Errorf("worker %d, %s: a call that began %s after Disconnect returned presented a token of the grant, past the bound of %s", w, e.Key, ms(lastUse.Sub(e.End)), ms(bound.Sub(e.End)))
			}
			if rl := e.Relogin; rl != nil && rl.Grant != "" {
				at := toldLogin(r, e.Key, rl)
				bound := rl.End.Add(rep.Poll + r.slack(rl.End, at, rep.Poll))
				switch {
				case at.IsZero() && r.res.Ended.After(bound):
					t.Errorf("worker %d, %s: never told of the new login, though it ran until %s, past the bound %s", w, e.Key, rep.at(r.res.Ended), rep.at(bound))
				case at.After(bound):
					t.Errorf("worker %d, %s: told of the new login %s after Login returned, past the bound of %s", w, e.Key, ms(at.Sub(rl.End)), ms(bound.Sub(rl.End)))
				}
				if d := r.res.Disconnected[e.Key]; d != nil && !at.IsZero() && d.Last.After(at) {
					t.Errorf("worker %d, %s: a call that began %s after its watch reported the new login failed as disconnected", w, e.Key, ms(d.Last.Sub(at)))
				}
				if r.res.Answers[e.Key][rl.Grant] == 0 {
					t.Errorf("worker %d, %s: never served the new login", w, e.Key)
				}
			}
		}
		how := "at a random moment"
		switch {
		case e.Killed:
			how = fmt.Sprintf("by a child SIGKILLed while at it (the store then held %s), then again by the test", e.AfterKill)
		case rep.Kills > 0:
			how = "by a child, before it was SIGKILLed"
		case !e.Aimed.IsZero():
			how = fmt.Sprintf("aimed at its refresh due at %s", rep.at(e.Aimed))
		}
		relogin := ""
		if rl := e.Relogin; rl != nil {
			relogin = fmt.Sprintf("; logged in again at %s", rep.at(rl.End))
		}
		t.Logf("%s disconnected %s, returned at %s (took %s): the grant's tokens last presented at the fake %s after, %d of them after; every worker told within %s (that worker's bound: %s)%s",
			e.Key, how, rep.at(e.End), ms(e.End.Sub(e.Start)), ms(lag), presented, ms(worst), ms(worstBound), relogin)
		if testing.Verbose() {
			// The unrounded samples behind the figures, one line per
			// disconnection, so that runs can be pooled (go test -v):
			// last_request is this disconnection's sample of P50/P99/Max,
			// told its samples of ToldP50/ToldP99/ToldMax (one per
			// worker told within its bound).
			t.Logf("fleet-sample\t%s\t%s\tlast_request=%s\ttold=%s", rep.Name, e.Key, lag, strings.Join(evTold, ","))
		}
		fig.N++
	}
	for _, key := range rep.Untouched {
		if st := rep.Final[key]; st.Grant != rep.grant[key] {
			t.Errorf("%s, never disconnected, ended holding %s", key, st)
		}
	}
	for key, st := range rep.Final {
		if !st.Mark && st.Grant != "" && !rep.valid[key] {
			t.Errorf("%s: the stored refresh token does not work after the run", key)
		}
	}
	fig.P50, fig.P99, fig.Max = percentile(lags, 0.5), percentile(lags, 0.99), percentile(lags, 1)
	fig.ToldP50, fig.ToldP99, fig.ToldMax = percentile(toldLags, 0.5), percentile(toldLags, 0.99), percentile(toldLags, 1)
	t.Logf("figures: %s", fig)
	return fig
}

// at prints t as seconds since the workers were started.
func (rep *DisconnectReport) at(t time.Time) string { return seconds(t.Sub(rep.Started)) }

// slack is what the bound adds to the poll for worker r, for a change that
// returned at from and was reported at to (zero: not reported; until the
// worker ended): its slowest store read from a poll before from to to (the
// slowest of all if it made none then), and the longest it ran late
// meanwhile.
func (r *workerRecord) slack(from, to time.Time, poll time.Duration) time.Duration {
	if to.IsZero() || to.After(r.res.Ended) {
		to = r.res.Ended
	}
	var read, all, stall time.Duration
	for _, l := range r.res.Loads {
		d := l.To.Sub(l.From)
		all = max(all, d)
		if l.To.After(from.Add(-poll)) && l.From.Before(to) {
			read = max(read, d)
		}
	}
	if read == 0 {
		read = all
	}
	for _, s := range r.res.Stalls {
		if s.To.After(from) && s.From.Before(to) {
			stall = max(stall, s.To.Sub(s.From))
		}
	}
	return read + stall
}

// mergeEvents sums the workers' event counts, with the first error of
// each kind.
func mergeEvents(ws []workerRecord) Report {
	out := Report{Events: map[string]int64{}, EventErrors: map[string]string{}}
	for _, w := range ws {
		for k, n := range w.res.Events {
			out.Events[k] += n
			if out.EventErrors[k] == "" {
				out.EventErrors[k] = w.res.EventErrors[k]
			}
		}
	}
	return out
}
