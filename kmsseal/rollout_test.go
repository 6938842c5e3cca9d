package kmsseal_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
	"github.com/dropboxsign-go/dropboxsign/kmsseal"
	"gocloud.dev/secrets"
	"gocloud.dev/secrets/localsecrets" // registers base64key://, the KEK URL the workers open
)

// The rollouts of docs/kms.md, run by fleettest.Rollout as the root
// module's rollout_test.go runs those of docs/replicas.md: 3 worker
// processes (this test binary, executed again: TestMain) sharing a
// FileStore, serving callers on accounts whose tokens live 2 s, beside
// idle accounts nobody calls; restarted one replica at a time into each
// step's configuration, the replica just restarted refreshing every
// account before the others read them, then old and new replicas serving
// side by side while every token comes due. Every phase must end with 0
// failed calls and 0 stale refresh tokens at the fake, and the census
// must be what the step leaves after each replica's restart.
//
// A worker opens its KMS as an app does: secrets.OpenKeeper of a KEK URL
// from its environment (a local keeper, base64key://, standing for a
// KMS), then kmsseal.NewSealer of the wrapped keys of its configuration.

// The environment variables that carry the KEK URLs, A and B, to the
// workers (inherited: t.Setenv in the test process). They hold the local
// keepers' secrets: nothing prints them.
const (
	kekVarA = "KMSSEAL_ROLLOUT_KEK_A"
	kekVarB = "KMSSEAL_ROLLOUT_KEK_B"
)

// rolloutKinds make the rollouts' Sealers, in the test process and in
// each worker: "raw" takes data keys in base64 (dropboxsign.ParseSealKeys,
// as DROPBOX_SIGN_SEAL_KEYS); "kms A" and "kms B" take wrapped data keys
// in base64 (kmsseal.FormatWrappedKeys) and unwrap them with the KEK whose
// URL is in kekVarA or kekVarB.
var rolloutKinds = fleettest.SealerKinds{
	"raw": func(keys []string) (*dropboxsign.Sealer, error) {
		raw, err := dropboxsign.ParseSealKeys(strings.Join(keys, ","))
		if err != nil {
			return nil, err
		}
		return dropboxsign.NewSealer(raw...)
	},
	"kms A": kmsKind(kekVarA),
	"kms B": kmsKind(kekVarB),
}

// kmsKind makes Sealers as an app with a KMS does at start-up, with the
// KEK whose URL is in the environment variable kekVar.
func kmsKind(kekVar string) func(keys []string) (*dropboxsign.Sealer, error) {
	return func(keys []string) (*dropboxsign.Sealer, error) {
		url := os.Getenv(kekVar)
		if url == "" {
			// localsecrets would make a random KEK of an empty URL's: say so.
			return nil, fmt.Errorf("rollout: %s is not set", kekVar)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		keeper, err := secrets.OpenKeeper(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("rollout: the KEK URL in %s does not open", kekVar) // not err: it may quote the URL
		}
		defer keeper.Close() // the Sealer holds the data keys
		wrapped, err := kmsseal.ParseWrappedKeys(strings.Join(keys, ","))
		if err != nil {
			return nil, err
		}
		return kmsseal.NewSealer(ctx, keeper, wrapped...)
	}
}

// TestMain lets fleettest run this binary as a worker: a FileStore in
// fleettest.DirVar's directory, sealed as fleettest.SealerVar says.
func TestMain(m *testing.M) {
	fleettest.Main(func() (dropboxsign.Store, error) {
		opts, err := rolloutKinds.StoreOptions()
		if err != nil {
			return nil, err
		}
		return dropboxsign.NewFileStore(os.Getenv(fleettest.DirVar), opts...)
	})
	os.Exit(m.Run())
}

// kmsRollout is a fleettest.Rollout with the KEKs its kinds read.
type kmsRollout struct {
	*fleettest.Rollout
	t        *testing.T
	idleKeys []string
}

// newKEKs makes two local KEKs, A and B, puts their URLs where the
// workers (and rolloutKinds in this process) read them, and opens them.
func newKEKs(t *testing.T) (a, b *secrets.Keeper) {
	t.Helper()
	if testing.Short() {
		t.Skip("a multi-process run of many seconds")
	}
	open := func(kekVar string) *secrets.Keeper {
		kek, err := localsecrets.NewRandomKey()
		if err != nil {
			t.Fatal(err)
		}
		url := "base64key://" + base64.URLEncoding.EncodeToString(kek[:])
		t.Setenv(kekVar, url)
		k, err := secrets.OpenKeeper(t.Context(), url)
		if err != nil {
			t.Fatalf("opening the KEK of %s failed", kekVar)
		}
		t.Cleanup(func() { k.Close() })
		return k
	}
	return open(kekVarA), open(kekVarB)
}

func newKMSRollout(t *testing.T, from fleettest.SealConf) *kmsRollout {
	t.Helper()
	r := &kmsRollout{Rollout: fleettest.NewRollout(t, rolloutKinds, from), t: t}
	for i := range fleettest.RolloutIdle {
		r.idleKeys = append(r.idleKeys, fmt.Sprintf("idle/%02d", i)) // as NewRollout names them
	}
	return r
}

// wrapConf is a configuration of wrapped keys under the KEK of kind.
func wrapConf(name, kind string, wrapped ...[]byte) fleettest.SealConf {
	var keys []string
	for _, w := range wrapped {
		keys = append(keys, kmsseal.FormatWrappedKeys(w))
	}
	return fleettest.SealConf{Name: name, Kind: kind, Keys: keys}
}

// restartEach restarts the replicas into c one at a time, as
// Rollout.RestartEach does, and checks each phase clean and, after each,
// the census as every configuration of sees gives: each of them must open
// every token; check tells whether the census is right at this step.
func (r *kmsRollout) restartEach(c fleettest.SealConf, sees []fleettest.SealConf, check func(dropboxsign.CensusReport) error) {
	r.t.Helper()
	for i := range r.Replicas {
		r.Replicas[i] = c
		r.RefreshAll(c)
		r.Clean(fmt.Sprintf("%s, replica %d of %d restarted", c.Name, i+1, len(r.Replicas)), []fleettest.Report{r.Phase(nil)})
		for _, s := range sees {
			got := r.Census(s)
			if err := censusOpens(got); err != nil {
				r.t.Fatalf("%s, replica %d restarted: census as %s: %v", c.Name, i+1, s.Name, err)
			}
			if err := check(got); err != nil {
				r.t.Fatalf("%s, replica %d restarted: census as %s: %v", c.Name, i+1, s.Name, err)
			}
		}
	}
}

// censusOpens checks that a census counted every token, none plain, none
// unopenable.
func censusOpens(got dropboxsign.CensusReport) error {
	total := fleettest.RolloutAccounts + fleettest.RolloutIdle
	if got.Tokens != total || got.Plain != 0 || len(got.Unopenable) != 0 {
		return fmt.Errorf("%+v; want %d tokens, none plain, none unopenable", got, total)
	}
	return nil
}

// allUnder checks that a census counts every token under the key id.
func allUnder(id string) func(dropboxsign.CensusReport) error {
	return func(got dropboxsign.CensusReport) error {
		if total := fleettest.RolloutAccounts + fleettest.RolloutIdle; got.ByKey[id] != total || len(got.ByKey) != 1 {
			return fmt.Errorf("%+v; want all %d tokens under %s", got, total, id)
		}
		return nil
	}
}

// idleFiles reads the idle accounts' files: what nobody refreshes, and
// only a re-seal writes again.
func (r *kmsRollout) idleFiles(c fleettest.SealConf) [][]byte {
	r.t.Helper()
	store := r.Store(c)
	var files [][]byte
	for _, key := range r.idleKeys {
		b, err := os.ReadFile(store.Path(key))
		if err != nil {
			r.t.Fatal(err)
		}
		files = append(files, b)
	}
	return files
}

// nothingToReseal checks that, as c sees the store, the idle files are
// those given, and that a re-seal finds every token current: nothing was,
// nor needs to be, sealed again.
func (r *kmsRollout) nothingToReseal(c fleettest.SealConf, before [][]byte) {
	r.t.Helper()
	for i, b := range r.idleFiles(c) {
		if !bytes.Equal(b, before[i]) {
			r.t.Errorf("%s was written again during the rollout to %s", r.idleKeys[i], c.Name)
		}
	}
	p, err := dropboxsign.Reseal(r.t.Context(), r.Store(c), dropboxsign.ResealOptions{})
	if err != nil || p.Visited != fleettest.RolloutAccounts+fleettest.RolloutIdle || p.Resealed != 0 || p.Unopenable != 0 {
		r.t.Errorf("re-seal as %s after the rollout: %+v, %v; want every token visited, none re-sealed", c.Name, p, err)
	}
}

// Adopting a KMS while keeping the data key (docs/kms.md, "Adopting a
// KMS"): from raw [K1], a rolling deploy of [Wrap(K1)] under KEK A. The
// wrapped key is the same data key: every census, as raw replicas and as
// KMS replicas see the store, counts every token under K1's ID after each
// restart, and the idle tokens are never written again.
func TestRolloutAdoptsAKMS(t *testing.T) {
	a, _ := newKEKs(t)
	k1 := randomKey(t)
	id := dropboxsign.KeyID(k1)
	wk1, err := kmsseal.Wrap(t.Context(), a, k1)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := kmsseal.DataKeyID(t.Context(), a, wk1); err != nil || got != id {
		t.Fatalf("DataKeyID of Wrap(K1): %q, %v; want K1's ID %q", got, err, id)
	}
	raw := fleettest.SealConf{Name: "raw [K1]", Kind: "raw", Keys: []string{base64.StdEncoding.EncodeToString(k1)}}
	kms := wrapConf("KMS A [Wrap(K1)]", "kms A", wk1)

	r := newKMSRollout(t, raw)
	r.WantCensus(raw, id) // NewRollout sealed every token under K1
	idle := r.idleFiles(raw)
	r.restartEach(kms, []fleettest.SealConf{raw, kms}, allUnder(id))
	r.WantCensus(kms, id)
	r.nothingToReseal(kms, idle)
	r.Valid(kms)
}

// Rotating the KEK (docs/kms.md, "Rotating the key-encryption key"): from
// [W_A(K1)] under KEK A, Rewrap to KEK B and a rolling deploy of
// [W_B(K1)]. Same data key: the census counts every token under K1's ID,
// as replicas of either KEK see the store, after each restart; the idle
// tokens are never written again.
func TestRolloutRotatesTheKEK(t *testing.T) {
	a, b := newKEKs(t)
	wA, err := kmsseal.NewDataKey(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	id, err := kmsseal.DataKeyID(t.Context(), a, wA)
	if err != nil {
		t.Fatal(err)
	}
	wB, err := kmsseal.Rewrap(t.Context(), a, b, wA)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := kmsseal.DataKeyID(t.Context(), b, wB); err != nil || got != id {
		t.Fatalf("DataKeyID of the rewrapped key under B: %q, %v; want %q", got, err, id)
	}
	if _, err := kmsseal.NewSealer(t.Context(), a, wB); err == nil {
		t.Fatal("KEK A unwraps what Rewrap wrapped under KEK B: the rotation would prove nothing")
	}
	underA := wrapConf("KMS A [K1]", "kms A", wA)
	underB := wrapConf("KMS B [K1]", "kms B", wB)

	r := newKMSRollout(t, underA)
	r.WantCensus(underA, id)
	idle := r.idleFiles(underA)
	r.restartEach(underB, []fleettest.SealConf{underA, underB}, allUnder(id))
	r.WantCensus(underB, id)
	r.nothingToReseal(underB, idle)
	r.Valid(underB)
}

// Rotating a data key under the KMS (docs/kms.md, "Rotating a data key"):
// from [D1], rolling deploys of [D1, D2] (D1 still seals) and [D2, D1] (D2
// seals), a re-seal while the fleet runs, the census at 0 under D1, then
// a rolling deploy of [D2] with D1 known as retired. Every data key is
// made by NewDataKey under KEK A: the test never holds a raw key.
func TestRolloutRotatesADataKeyUnderTheKMS(t *testing.T) {
	a, _ := newKEKs(t)
	var wrapped [2][]byte
	var ids [2]string
	for i := range wrapped {
		w, err := kmsseal.NewDataKey(t.Context(), a)
		if err != nil {
			t.Fatal(err)
		}
		if ids[i], err = kmsseal.DataKeyID(t.Context(), a, w); err != nil {
			t.Fatal(err)
		}
		wrapped[i] = w
	}
	wd1, wd2 := wrapped[0], wrapped[1]
	id1, id2 := ids[0], ids[1]
	d1 := wrapConf("KMS [D1]", "kms A", wd1)
	d1d2 := wrapConf("KMS [D1, D2]", "kms A", wd1, wd2)
	d2d1 := wrapConf("KMS [D2, D1]", "kms A", wd2, wd1)
	d2 := wrapConf("KMS [D2], D1 retired", "kms A", wd2)
	d2.Retired = d1.Keys

	r := newKMSRollout(t, d1)
	r.WantCensus(d1, id1)
	r.restartEach(d1d2, []fleettest.SealConf{d1, d1d2}, allUnder(id1))
	// D2 seals from the first restart, D1 until the last: every token is
	// under one or the other (how many under which depends on who
	// refreshed last), the idle ones under D1.
	r.restartEach(d2d1, []fleettest.SealConf{d1d2, d2d1}, func(got dropboxsign.CensusReport) error {
		if got.ByKey[id1]+got.ByKey[id2] != got.Tokens || got.ByKey[id1] < fleettest.RolloutIdle {
			return fmt.Errorf("%+v; want every token under D1 (%s) or D2 (%s), the %d idle ones at least under D1", got, id1, id2, fleettest.RolloutIdle)
		}
		return nil
	})
	r.ResealDuringPhase(d2d1)
	r.WantCensus(d2d1, id2) // 0 under D1: it can go
	r.restartEach(d2, []fleettest.SealConf{d2d1, d2}, allUnder(id2))
	r.WantCensus(d2, id2)
	r.Valid(d2)
}
