package dropboxsign_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
	"golang.org/x/oauth2"
)

// The rollouts docs/replicas.md documents, run as an operator runs them: a
// fleet of worker processes (internal/fleettest) sharing a FileStore,
// serving callers on accounts whose tokens live 2 s, restarted one replica
// at a time into each step's configuration. After each restart the
// replica just restarted refreshes every account (forced, so that what it
// writes, in its new format, is in the store before the replicas not yet
// restarted read it; the test process does it with that replica's
// configuration, while no worker runs); then old and new replicas serve
// side by side for a phase in which the tokens come due and are refreshed
// by whichever replica gets there first, so each reads what the other
// wrote. Every phase must end with 0 failed calls and 0 stale refresh
// tokens at the fake; each step ends with the census it must have.

// rolloutSealerVar carries a worker's sealConf, in JSON: the store the
// package's TestMain (fleet_test.go) makes for a worker is sealed by it.
const rolloutSealerVar = "FLEET_SEALER"

// sealConf is one replica's sealing configuration.
type sealConf struct {
	Name     string   // for the test's log
	Kind     string   `json:",omitempty"` // "": no Sealer (plain JSON); else a key of sealerKinds
	Keys     []string `json:",omitempty"` // the kind's keys, the first seals
	OpenOnly bool     `json:",omitempty"`
	Retired  []string `json:",omitempty"` // keys (as in Keys) known as removed: Sealer.Retired of their IDs
}

// sealerKinds make a Sealer from a kind's keys, the first of which seals:
// the factory the rollouts go through, in the test process and in each
// worker. "keys" takes hex AES-256 keys. Another kind of key (a KMS's) is
// added here, under a name of its own, and runs through the same rollouts
// (encryptionOn, keyAddedAndRetired) given sealConfs of that kind.
var sealerKinds = map[string]func(keys []string) (*dropboxsign.Sealer, error){
	"keys": func(keys []string) (*dropboxsign.Sealer, error) {
		var raw [][]byte
		for _, k := range keys {
			b, err := hex.DecodeString(k)
			if err != nil {
				return nil, err
			}
			raw = append(raw, b)
		}
		return dropboxsign.NewSealer(raw...)
	},
}

// sealer makes c's Sealer: nil for plain JSON.
func (c sealConf) sealer() (*dropboxsign.Sealer, error) {
	if c.Kind == "" {
		return nil, nil
	}
	newSealer := sealerKinds[c.Kind]
	if newSealer == nil {
		return nil, fmt.Errorf("no Sealer of kind %q", c.Kind)
	}
	s, err := newSealer(c.Keys)
	if err != nil {
		return nil, err
	}
	if c.OpenOnly {
		s = s.OpenOnly()
	}
	if len(c.Retired) > 0 {
		retired, err := newSealer(c.Retired)
		if err != nil {
			return nil, err
		}
		s = s.Retired(retired.KeyIDs()...)
	}
	return s, nil
}

// rolloutStoreOptions are the FileStore options of a worker given a
// sealConf (none without one).
func rolloutStoreOptions() ([]dropboxsign.FileStoreOption, error) {
	raw := os.Getenv(rolloutSealerVar)
	if raw == "" {
		return nil, nil
	}
	var c sealConf
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return nil, err
	}
	s, err := c.sealer()
	if err != nil || s == nil {
		return nil, err
	}
	return []dropboxsign.FileStoreOption{dropboxsign.WithSealer(s)}, nil
}

// The configurations of the rollouts, with keys K1 and K2.
var (
	k1, k2      = hex.EncodeToString(oldKey), hex.EncodeToString(newKey)
	plainConf   = sealConf{Name: "no keys"}
	openOnlyK1  = sealConf{Name: "OpenOnly [K1]", Kind: "keys", Keys: []string{k1}, OpenOnly: true}
	sealK1      = sealConf{Name: "[K1]", Kind: "keys", Keys: []string{k1}}
	sealK1K2    = sealConf{Name: "[K1, K2]", Kind: "keys", Keys: []string{k1, k2}}
	sealK2K1    = sealConf{Name: "[K2, K1]", Kind: "keys", Keys: []string{k2, k1}}
	sealK2Alone = sealConf{Name: "[K2], K1 retired", Kind: "keys", Keys: []string{k2}, Retired: []string{k1}}
)

// rollout is a fleet of replicas on one FileStore, with what each replica
// is configured with now.
type rollout struct {
	t        *testing.T
	dir      string
	cfg      fleettest.Config
	fleet    *fleettest.Fleet
	replicas []sealConf
	idle     []string // accounts no worker calls: stored once, left to the re-seal
}

const (
	rolloutReplicas = 3
	rolloutAccounts = 10
	rolloutIdle     = 4
)

// newRollout seeds a store with the fleet's accounts and rolloutIdle idle
// ones, written as from writes, and configures every replica with from.
func newRollout(t *testing.T, from sealConf) *rollout {
	t.Helper()
	if testing.Short() {
		t.Skip("a multi-process run of many seconds")
	}
	r := &rollout{t: t, dir: t.TempDir()}
	r.cfg = fleettest.Config{Accounts: rolloutAccounts, Lifetime: 2 * time.Second, StoreEnv: []string{"FLEET_FILESTORE_DIR=" + r.dir}}
	store := r.store(from)
	r.fleet = fleettest.New(t, r.cfg, store)
	ctx := testContext(t)
	for i := range rolloutIdle {
		key := fmt.Sprintf("idle/%02d", i)
		if err := store.Save(ctx, key, nil, r.fleet.Server.IssueToken()); err != nil {
			t.Fatal(err)
		}
		r.idle = append(r.idle, key)
	}
	for range rolloutReplicas {
		r.replicas = append(r.replicas, from)
	}
	return r
}

// store is the shared FileStore as a replica configured with c sees it.
func (r *rollout) store(c sealConf) *dropboxsign.FileStore {
	r.t.Helper()
	var opts []dropboxsign.FileStoreOption
	s, err := c.sealer()
	if err != nil {
		r.t.Fatal(err)
	}
	if s != nil {
		opts = append(opts, dropboxsign.WithSealer(s))
	}
	fs, err := dropboxsign.NewFileStore(r.dir, opts...)
	if err != nil {
		r.t.Fatal(err)
	}
	return fs
}

// restartEach restarts the replicas into c one at a time; after each
// restart, the replica restarted refreshes every account, and then the
// fleet serves callers for a phase. It returns each phase's report; clean
// checks them.
func (r *rollout) restartEach(c sealConf) []fleettest.Report {
	r.t.Helper()
	var reps []fleettest.Report
	for i := range r.replicas {
		r.replicas[i] = c
		r.refreshAll(c)
		reps = append(reps, r.phase(nil))
	}
	return reps
}

// refreshAll refreshes every account of the fleet through the store as a
// replica configured with c sees it: the new token is written as c
// writes.
func (r *rollout) refreshAll(c sealConf) {
	r.t.Helper()
	ctx := testContext(r.t)
	store := r.store(c)
	srv := r.fleet.Server
	conf := &oauth2.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL + dropboxsigntest.TokenPath}}
	for i := range rolloutAccounts {
		key := fleettest.Key(i)
		old, err := store.Load(ctx, key)
		if err != nil {
			r.t.Fatalf("%s: a replica configured with %s cannot load %s: %v", c.Name, c.Name, key, err)
		}
		tok, err := dropboxsign.Refresh(ctx, conf, old.RefreshToken)
		if err != nil {
			r.t.Fatalf("refreshing %s: %v", key, err)
		}
		if err := store.Save(ctx, key, old, tok); err != nil {
			r.t.Fatalf("saving %s: %v", key, err)
		}
	}
}

// phase runs the fleet, each replica with its configuration, for 2.5 s:
// more than a token's lifetime, so that every token comes due in it.
func (r *rollout) phase(during func(ctx context.Context, w *fleettest.Workers)) fleettest.Report {
	r.t.Helper()
	confs := slices.Clone(r.replicas)
	rep := r.fleet.Phase(fleettest.Phase{Replicas: len(confs), Duration: 2500 * time.Millisecond, Callers: 2, During: during,
		Env: func(i int) []string {
			b, _ := json.Marshal(confs[i])
			return []string{rolloutSealerVar + "=" + string(b)}
		}})
	var names []string
	for _, c := range confs {
		names = append(names, c.Name)
	}
	r.t.Logf("replicas %s: %d calls, %d failed, %d refreshes, %d stale refresh tokens", strings.Join(names, " | "), rep.Calls, rep.Failures, rep.Server.Refreshes, rep.Server.StaleRefreshTokens)
	for _, k := range slices.Sorted(maps.Keys(rep.Events)) {
		r.t.Logf("  event %s: %d, first: %s", k, rep.Events[k], rep.EventErrors[k])
	}
	return rep
}

// clean checks phases that must have gone without a failure.
func (r *rollout) clean(step string, reps []fleettest.Report) {
	r.t.Helper()
	for i, rep := range reps {
		if rep.Failures != 0 || rep.Server.StaleRefreshTokens != 0 || rep.Server.Refreshes == 0 || rep.Events["store_failed/load"] != 0 {
			r.t.Fatalf("%s, phase %d: %d of %d calls failed (first: %s), %d stale refresh tokens, %d refreshes, %d failed loads",
				step, i+1, rep.Failures, rep.Calls, rep.FirstError, rep.Server.StaleRefreshTokens, rep.Server.Refreshes, rep.Events["store_failed/load"])
		}
	}
}

// census counts the store's tokens as a replica configured with c sees
// them.
func (r *rollout) census(c sealConf) dropboxsign.CensusReport {
	r.t.Helper()
	si, ok := any(r.store(c)).(dropboxsign.SealInspector)
	if !ok {
		r.t.Fatal("FileStore is not a SealInspector")
	}
	rep, err := dropboxsign.Census(testContext(r.t), si)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Logf("census as %s: %+v", c.Name, rep)
	return rep
}

// wantCensus checks a census: every token under key (or plain, for ""),
// all current, none unopenable.
func (r *rollout) wantCensus(c sealConf, key string) {
	r.t.Helper()
	got := r.census(c)
	total := rolloutAccounts + rolloutIdle
	want := dropboxsign.CensusReport{Tokens: total, ByKey: map[string]int{}, Current: total, Unopenable: map[string]int{}}
	if key == "" {
		want.Plain = total
	} else {
		want.ByKey[dropboxsign.KeyID(mustHex(r.t, key))] = total
	}
	if got.Tokens != want.Tokens || got.Plain != want.Plain || got.Current != want.Current || !maps.Equal(got.ByKey, want.ByKey) || len(got.Unopenable) != 0 {
		r.t.Fatalf("census as %s: %+v, want %+v", c.Name, got, want)
	}
}

// resealDuringPhase runs a phase of the fleet as configured and, while
// its workers serve and refresh, a Reseal through the store as c sees it.
func (r *rollout) resealDuringPhase(c sealConf) {
	r.t.Helper()
	si, ok := any(r.store(c)).(dropboxsign.SealInspector)
	if !ok {
		r.t.Fatal("FileStore is not a SealInspector")
	}
	var p dropboxsign.ResealProgress
	var err error
	rep := r.phase(func(ctx context.Context, w *fleettest.Workers) {
		p, err = dropboxsign.Reseal(ctx, si, dropboxsign.ResealOptions{})
	})
	r.t.Logf("reseal as %s: %+v", c.Name, p)
	if err != nil || p.Unopenable != 0 || p.Visited != rolloutAccounts+rolloutIdle || p.Resealed < rolloutIdle {
		r.t.Fatalf("reseal as %s: %+v, %v; want every token visited, the %d idle ones at least re-sealed", c.Name, p, err, rolloutIdle)
	}
	r.clean("reseal as "+c.Name, []fleettest.Report{rep})
}

// valid checks that every account, idle ones too, opens as c sees the
// store and holds a refresh token the fake still honours.
func (r *rollout) valid(c sealConf) {
	r.t.Helper()
	store := r.store(c)
	if n := r.fleet.ValidWith(store); n != rolloutAccounts {
		r.t.Errorf("%d of %d accounts valid as %s", n, rolloutAccounts, c.Name)
	}
	srv := r.fleet.Server
	conf := &oauth2.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL + dropboxsigntest.TokenPath}}
	ctx := testContext(r.t)
	for _, key := range r.idle {
		tok, err := store.Load(ctx, key)
		if err == nil {
			_, err = dropboxsign.Refresh(ctx, conf, tok.RefreshToken)
		}
		if err != nil {
			r.t.Errorf("idle %s as %s: %v", key, c.Name, err)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Turning encryption on, docs/replicas.md's steps: from plain JSON, a
// rolling deploy of OpenOnly [K1] (which writes plain JSON, and opens what
// K1 will seal), then one of [K1] (which seals); a re-seal of the tokens
// nobody refreshed, while the fleet runs; every token under K1.
func TestRolloutTurnsEncryptionOn(t *testing.T) {
	r := newRollout(t, plainConf)
	r.wantCensus(plainConf, "")
	r.clean("OpenOnly [K1]", r.restartEach(openOnlyK1))
	r.wantCensus(openOnlyK1, "")
	r.clean("[K1]", r.restartEach(sealK1))
	r.resealDuringPhase(sealK1)
	r.wantCensus(sealK1, k1)
	r.valid(sealK1)
}

// Rotating keys, docs/replicas.md's steps: from [K1], a rolling deploy of
// [K1, K2] (K1 still seals, every replica can open what K2 will seal),
// then of [K2, K1] (K2 seals); a re-seal while the fleet runs; the census
// shows nothing left under K1; a rolling deploy of [K2] with K1 known as
// retired.
func TestRolloutAddsAndRetiresAKey(t *testing.T) {
	r := newRollout(t, sealK1)
	r.wantCensus(sealK1, k1)
	r.clean("[K1, K2]", r.restartEach(sealK1K2))
	r.wantCensus(sealK1K2, k1)
	r.clean("[K2, K1]", r.restartEach(sealK2K1))
	if got := r.census(sealK2K1); got.ByKey[dropboxsign.KeyID(oldKey)] < rolloutIdle {
		t.Fatalf("before the re-seal, %d tokens under K1; want the %d idle ones at least", got.ByKey[dropboxsign.KeyID(oldKey)], rolloutIdle)
	}
	r.resealDuringPhase(sealK2K1)
	r.wantCensus(sealK2K1, k2)
	r.clean("[K2], K1 retired", r.restartEach(sealK2Alone))
	r.wantCensus(sealK2Alone, k2)
	r.valid(sealK2Alone)
}

// The rollout docs/replicas.md used to document, from plain JSON to [K1]
// directly one replica at a time, fails: the replicas not yet restarted
// cannot open what the first one sealed (the issue measured 9 store
// failures). This is what gives the tests above their teeth: the same
// harness, the wrong steps, failed calls; and the failure is the operator's,
// named: Misconfigured, with K1's ID.
func TestRolloutStraightToSealedFails(t *testing.T) {
	r := newRollout(t, plainConf)
	r.replicas[0] = sealK1
	r.refreshAll(sealK1)
	rep := r.phase(nil)
	if rep.Failures == 0 || rep.Events["store_failed/load"] == 0 {
		t.Fatalf("plain replicas beside a sealing one: %d failed calls, %d failed loads; want both", rep.Failures, rep.Events["store_failed/load"])
	}
	if msg := rep.EventErrors["store_failed/load"]; !strings.Contains(msg, dropboxsign.KeyID(oldKey)) || !strings.Contains(msg, "no encryption keys") {
		t.Errorf("the failed load says %q; want K1's ID, and that the replica has no keys", msg)
	}
	// As the replicas see it.
	_, err := r.store(plainConf).Load(testContext(t), fleettest.Key(0))
	var missing *dropboxsign.MissingKeyError
	if !errors.As(err, &missing) || dropboxsign.Classify(err) != dropboxsign.Misconfigured {
		t.Errorf("a replica without keys loading a sealed token: %v; want a MissingKeyError, Misconfigured", err)
	}
}
