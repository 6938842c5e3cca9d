package dropboxsign_test

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
)

// The rollouts docs/replicas.md documents, run by fleettest.Rollout as an
// operator runs them: 3 worker processes sharing a FileStore, serving
// callers on accounts whose tokens live 2 s, restarted one replica at a
// time into each step's configuration; after each restart the replica
// restarted refreshes every account before the replicas not yet restarted
// read them, then old and new replicas serve side by side while every
// token comes due. Every phase must end with 0 failed calls and 0 stale
// refresh tokens at the fake, and each step with the census it must have.

// rolloutSealers make the rollouts' Sealers, in the test and in each
// worker (TestMain, fleet_test.go): "keys" takes hex AES-256 keys. A kind
// of key of another module (kmsseal's) runs the same rollouts from that
// module's tests, with a fleettest.SealerKinds of its own.
var rolloutSealers = fleettest.SealerKinds{
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

// rolloutStoreOptions are a worker's FileStore options, from its
// fleettest.SealConf.
func rolloutStoreOptions() ([]dropboxsign.FileStoreOption, error) {
	return rolloutSealers.StoreOptions()
}

// The configurations of the rollouts, with keys K1 and K2.
var (
	k1, k2      = hex.EncodeToString(oldKey), hex.EncodeToString(newKey)
	plainConf   = fleettest.SealConf{Name: "no keys"}
	openOnlyK1  = fleettest.SealConf{Name: "OpenOnly [K1]", Kind: "keys", Keys: []string{k1}, OpenOnly: true}
	sealK1      = fleettest.SealConf{Name: "[K1]", Kind: "keys", Keys: []string{k1}}
	sealK1K2    = fleettest.SealConf{Name: "[K1, K2]", Kind: "keys", Keys: []string{k1, k2}}
	sealK2K1    = fleettest.SealConf{Name: "[K2, K1]", Kind: "keys", Keys: []string{k2, k1}}
	sealK2Alone = fleettest.SealConf{Name: "[K2], K1 retired", Kind: "keys", Keys: []string{k2}, Retired: []string{k1}}
)

func newRollout(t *testing.T, from fleettest.SealConf) *fleettest.Rollout {
	t.Helper()
	if testing.Short() {
		t.Skip("a multi-process run of many seconds")
	}
	return fleettest.NewRollout(t, rolloutSealers, from)
}

// Turning encryption on, docs/replicas.md's steps: from plain JSON, a
// rolling deploy of OpenOnly [K1] (which writes plain JSON, and opens what
// K1 will seal), then one of [K1] (which seals); a re-seal of the tokens
// nobody refreshed, while the fleet runs; every token under K1.
func TestRolloutTurnsEncryptionOn(t *testing.T) {
	r := newRollout(t, plainConf)
	r.WantCensus(plainConf, "")
	r.Clean("OpenOnly [K1]", r.RestartEach(openOnlyK1))
	r.WantCensus(openOnlyK1, "")
	r.Clean("[K1]", r.RestartEach(sealK1))
	r.ResealDuringPhase(sealK1)
	r.WantCensus(sealK1, dropboxsign.KeyID(oldKey))
	r.Valid(sealK1)
}

// Rotating keys, docs/replicas.md's steps: from [K1], a rolling deploy of
// [K1, K2] (K1 still seals, every replica can open what K2 will seal),
// then of [K2, K1] (K2 seals); a re-seal while the fleet runs; the census
// shows nothing left under K1; a rolling deploy of [K2] with K1 known as
// retired.
func TestRolloutAddsAndRetiresAKey(t *testing.T) {
	r := newRollout(t, sealK1)
	r.WantCensus(sealK1, dropboxsign.KeyID(oldKey))
	r.Clean("[K1, K2]", r.RestartEach(sealK1K2))
	r.WantCensus(sealK1K2, dropboxsign.KeyID(oldKey))
	r.Clean("[K2, K1]", r.RestartEach(sealK2K1))
	if got := r.Census(sealK2K1); got.ByKey[dropboxsign.KeyID(oldKey)] < fleettest.RolloutIdle {
		t.Fatalf("before the re-seal, %d tokens under K1; want the %d idle ones at least", got.ByKey[dropboxsign.KeyID(oldKey)], fleettest.RolloutIdle)
	}
	r.ResealDuringPhase(sealK2K1)
	r.WantCensus(sealK2K1, dropboxsign.KeyID(newKey))
	r.Clean("[K2], K1 retired", r.RestartEach(sealK2Alone))
	r.WantCensus(sealK2Alone, dropboxsign.KeyID(newKey))
	r.Valid(sealK2Alone)
}

// The rollout docs/replicas.md used to document, from plain JSON to [K1]
// directly one replica at a time, fails: the replicas not yet restarted
// cannot open what the first one sealed (the issue measured 9 store
// failures). This gives the tests above their teeth: the same harness,
// the old steps, failed calls; and the failure is the operator's, named:
// Misconfigured, with K1's ID.
func TestRolloutStraightToSealedFails(t *testing.T) {
	r := newRollout(t, plainConf)
	r.Replicas[0] = sealK1
	r.RefreshAll(sealK1)
	rep := r.Phase(nil)
	if rep.Failures == 0 || rep.Events["store_failed/load"] == 0 {
		t.Fatalf("replicas without keys beside a sealing one: %d failed calls, %d failed loads; want both", rep.Failures, rep.Events["store_failed/load"])
	}
	if msg := rep.EventErrors["store_failed/load"]; !strings.Contains(msg, dropboxsign.KeyID(oldKey)) || !strings.Contains(msg, "no encryption keys") {
		t.Errorf("the failed load says %q; want K1's ID, and that the replica has no keys", msg)
	}
	// As the replicas without keys see the store.
	_, err := r.Store(plainConf).Load(testContext(t), fleettest.Key(0))
	var missing *dropboxsign.MissingKeyError
	if !errors.As(err, &missing) || dropboxsign.Classify(err) != dropboxsign.Misconfigured {
		t.Errorf("a replica without keys loading a sealed token: %v; want a MissingKeyError, Misconfigured", err)
	}
}
