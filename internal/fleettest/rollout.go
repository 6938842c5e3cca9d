package fleettest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// This file runs the rollouts of encryption keys that docs/replicas.md
// documents, as an operator runs them: a fleet of worker processes sharing
// a FileStore, restarted one replica at a time into each step's sealing
// configuration. After each restart the replica just restarted refreshes
// every account (forced, so that what it writes, in its new format, is in
// the store before the replicas not yet restarted read it; the test
// process does it with that replica's configuration, while no worker
// runs); then old and new replicas serve callers side by side for a phase
// in which every token comes due and is refreshed by whichever replica
// gets there first, so that each reads what the others wrote.
//
// The Sealers come from a factory (SealerKinds), in the test process and
// in each worker, so that another kind of key (a KMS's) runs the same
// rollouts. A package that uses it makes, in its TestMain (see Main), a
// FileStore in the directory named by FLEET_FILESTORE_DIR, with the
// options SealerKinds.StoreOptions reads from the environment.

// SealerVar carries a worker's SealConf, in JSON.
const SealerVar = "FLEET_SEALER"

// DirVar names the FileStore's directory, for the workers.
const DirVar = "FLEET_FILESTORE_DIR"

// SealConf is one replica's sealing configuration.
type SealConf struct {
	Name     string   // for the test's log
	Kind     string   `json:",omitempty"` // "": no Sealer (plain JSON); else a key of the SealerKinds
	Keys     []string `json:",omitempty"` // the kind's keys, the first seals
	OpenOnly bool     `json:",omitempty"` // Sealer.OpenOnly
	Retired  []string `json:",omitempty"` // keys (as in Keys) known as removed: Sealer.Retired of their IDs
}

// SealerKinds make a Sealer from a kind's keys (the first of which seals),
// by the kind's name.
type SealerKinds map[string]func(keys []string) (*dropboxsign.Sealer, error)

// Sealer makes c's Sealer: nil for plain JSON.
func (k SealerKinds) Sealer(c SealConf) (*dropboxsign.Sealer, error) {
	if c.Kind == "" {
		return nil, nil
	}
	newSealer := k[c.Kind]
	if newSealer == nil {
		return nil, fmt.Errorf("fleettest: no Sealer of kind %q", c.Kind)
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

// KeyID is the ID of a kind's key.
func (k SealerKinds) KeyID(kind, key string) (string, error) {
	s, err := k.Sealer(SealConf{Kind: kind, Keys: []string{key}})
	if err != nil {
		return "", err
	}
	return s.KeyIDs()[0], nil
}

// StoreOptions are the FileStore options of a worker given a SealConf in
// SealerVar (none without one).
func (k SealerKinds) StoreOptions() ([]dropboxsign.FileStoreOption, error) {
	raw := os.Getenv(SealerVar)
	if raw == "" {
		return nil, nil
	}
	var c SealConf
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return nil, err
	}
	s, err := k.Sealer(c)
	if err != nil || s == nil {
		return nil, err
	}
	return []dropboxsign.FileStoreOption{dropboxsign.WithSealer(s)}, nil
}

// The sizes of a rollout's fleet.
const (
	RolloutReplicas = 3
	RolloutAccounts = 10
	// RolloutIdle accounts are stored once and called by no worker: what a
	// re-seal is for.
	RolloutIdle = 4
)

// Rollout is a fleet of replicas on one FileStore, with what each replica
// is configured with now.
type Rollout struct {
	t     *testing.T
	kinds SealerKinds
	dir   string
	fleet *Fleet
	// Replicas holds each replica's configuration for the next phase.
	Replicas []SealConf
	idle     []string
}

// NewRollout seeds a FileStore with the fleet's accounts and RolloutIdle
// idle ones, written as from writes, and configures every replica with
// from.
func NewRollout(t *testing.T, kinds SealerKinds, from SealConf) *Rollout {
	t.Helper()
	r := &Rollout{t: t, kinds: kinds, dir: t.TempDir()}
	store := r.Store(from)
	r.fleet = New(t, Config{Accounts: RolloutAccounts, Lifetime: 2 * time.Second, StoreEnv: []string{DirVar + "=" + r.dir}}, store)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range RolloutIdle {
		key := fmt.Sprintf("idle/%02d", i)
		if err := store.Save(ctx, key, nil, r.fleet.Server.IssueToken()); err != nil {
			t.Fatal(err)
		}
		r.idle = append(r.idle, key)
	}
	for range RolloutReplicas {
		r.Replicas = append(r.Replicas, from)
	}
	return r
}

// Store is the shared FileStore as a replica configured with c sees it.
func (r *Rollout) Store(c SealConf) *dropboxsign.FileStore {
	r.t.Helper()
	var opts []dropboxsign.FileStoreOption
	s, err := r.kinds.Sealer(c)
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

// RestartEach restarts the replicas into c one at a time; after each
// restart, the replica restarted refreshes every account (RefreshAll),
// and then the fleet serves callers for a phase. It returns each phase's
// report; Clean checks them.
func (r *Rollout) RestartEach(c SealConf) []Report {
	r.t.Helper()
	var reps []Report
	for i := range r.Replicas {
		r.Replicas[i] = c
		r.RefreshAll(c)
		reps = append(reps, r.Phase(nil))
	}
	return reps
}

func (r *Rollout) oauthConfig() *oauth2.Config {
	srv := r.fleet.Server
	return &oauth2.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL + dropboxsigntest.TokenPath}}
}

// RefreshAll refreshes every account of the fleet (not the idle ones)
// through the store as a replica configured with c sees it: each new
// token is written as c writes. Call it while no worker runs.
func (r *Rollout) RefreshAll(c SealConf) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store := r.Store(c)
	for i := range RolloutAccounts {
		key := Key(i)
		old, err := store.Load(ctx, key)
		if err != nil {
			r.t.Fatalf("a replica configured with %s cannot load %s: %v", c.Name, key, err)
		}
		tok, err := dropboxsign.Refresh(ctx, r.oauthConfig(), old.RefreshToken)
		if err != nil {
			r.t.Fatalf("refreshing %s: %v", key, err)
		}
		if err := store.Save(ctx, key, old, tok); err != nil {
			r.t.Fatalf("saving %s: %v", key, err)
		}
	}
}

// Phase runs the fleet, each replica configured as Replicas says, for
// 2.5 s: more than a token's lifetime, so that every token comes due in it
// (the workers call for that long after each has started, however slow
// the machine). during, if set, runs while the workers do.
func (r *Rollout) Phase(during func(ctx context.Context, w *Workers)) Report {
	r.t.Helper()
	confs := slices.Clone(r.Replicas)
	rep := r.fleet.Phase(Phase{Replicas: len(confs), Duration: 2500 * time.Millisecond, Callers: 2, During: during,
		Env: func(i int) []string {
			b, _ := json.Marshal(confs[i])
			return []string{SealerVar + "=" + string(b)}
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

// Clean checks phases that must have gone without a failure: no failed
// call, no failed store load, no stale refresh token, and refreshes.
func (r *Rollout) Clean(step string, reps []Report) {
	r.t.Helper()
	for i, rep := range reps {
		if rep.Failures != 0 || rep.Server.StaleRefreshTokens != 0 || rep.Server.Refreshes == 0 || rep.Events["store_failed/load"] != 0 {
			r.t.Fatalf("%s, phase %d: %d of %d calls failed (first: %s), %d stale refresh tokens, %d refreshes, %d failed loads",
				step, i+1, rep.Failures, rep.Calls, rep.FirstError, rep.Server.StaleRefreshTokens, rep.Server.Refreshes, rep.Events["store_failed/load"])
		}
	}
}

// Census counts the store's tokens as a replica configured with c sees
// them.
func (r *Rollout) Census(c SealConf) dropboxsign.CensusReport {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := dropboxsign.Census(ctx, r.Store(c))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Logf("census as %s: %+v", c.Name, rep)
	return rep
}

// WantCensus checks that, as c sees the store, every token (idle ones too)
// is sealed under the key with ID keyID (plain JSON for ""), as c writes,
// and opens.
func (r *Rollout) WantCensus(c SealConf, keyID string) {
	r.t.Helper()
	got := r.Census(c)
	total := RolloutAccounts + RolloutIdle
	want := dropboxsign.CensusReport{Tokens: total, ByKey: map[string]int{}, Current: total, Unopenable: map[string]int{}}
	if keyID == "" {
		want.Plain = total
	} else {
		want.ByKey[keyID] = total
	}
	if got.Tokens != want.Tokens || got.Plain != want.Plain || got.Current != want.Current || !maps.Equal(got.ByKey, want.ByKey) || len(got.Unopenable) != 0 {
		r.t.Fatalf("census as %s: %+v, want %+v", c.Name, got, want)
	}
}

// ResealDuringPhase runs a phase of the fleet as configured and, while
// its workers serve and refresh, a Reseal through the store as c sees it;
// it checks that the phase was clean and that the re-seal visited every
// token, could open each, and wrote the idle ones (at least) again.
func (r *Rollout) ResealDuringPhase(c SealConf) {
	r.t.Helper()
	store := r.Store(c)
	var p dropboxsign.ResealProgress
	var err error
	rep := r.Phase(func(ctx context.Context, _ *Workers) {
		p, err = dropboxsign.Reseal(ctx, store, dropboxsign.ResealOptions{})
	})
	r.t.Logf("reseal as %s: %+v", c.Name, p)
	if err != nil || p.Unopenable != 0 || p.Visited != RolloutAccounts+RolloutIdle || p.Resealed < RolloutIdle {
		r.t.Fatalf("reseal as %s: %+v, %v; want every token visited, the %d idle ones at least re-sealed", c.Name, p, err, RolloutIdle)
	}
	r.Clean("reseal as "+c.Name, []Report{rep})
}

// Valid checks that every account, idle ones too, opens as c sees the
// store and holds a refresh token the fake still honours. It spends them:
// call it last.
func (r *Rollout) Valid(c SealConf) {
	r.t.Helper()
	store := r.Store(c)
	if n := r.fleet.ValidWith(store); n != RolloutAccounts {
		r.t.Errorf("%d of %d accounts valid as %s", n, RolloutAccounts, c.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, key := range r.idle {
		tok, err := store.Load(ctx, key)
		if err == nil {
			_, err = dropboxsign.Refresh(ctx, r.oauthConfig(), tok.RefreshToken)
		}
		if err != nil {
			r.t.Errorf("idle %s as %s: %v", key, c.Name, err)
		}
	}
}
