package dropboxsign_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/internal/fleettest"
	"golang.org/x/oauth2"
)

// Issue 21's "done when": a re-seal runs while a fleet refreshes, with 0
// failed calls and 0 stale refresh tokens, and leaves nothing under the old
// key. Every token starts sealed under K1; the replicas (OS processes)
// run with [K2, K1] and refresh throughout (2 s tokens, refreshed at half
// life), while this process re-seals the directory through a FileStore of
// its own, at the rate the operator would give. Idle accounts, which no
// replica calls, are only the re-seal's to move: without it they stay under
// K1. Then a store with K2 alone must load every token, and every stored
// refresh token must still work at the fake.
//
// The verdict reads only counts (the workers' failed calls, the fake's
// stale refresh tokens, the census, the tokens): how far the re-seal and
// the refreshes overlapped depends on the machine, and is logged.
func TestFleetResealWhileRefreshing(t *testing.T) {
	if testing.Short() {
		t.Skip("a multi-process run of several seconds")
	}
	k1, k2 := bytes.Repeat([]byte{0xa1}, 32), bytes.Repeat([]byte{0xa2}, 32)
	dir := filepath.Join(t.TempDir(), "tokens")
	open := func(keys ...[]byte) *dropboxsign.FileStore {
		fs, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(mustSealer(t, keys...)))
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	underK1 := open(k1)
	cfg := fleettest.Config{Accounts: 16, Lifetime: 2 * time.Second, StoreEnv: []string{"FLEET_FILESTORE_DIR=" + dir}}
	f := fleettest.New(t, cfg, underK1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const idle = 16
	idleTokens := map[string]*oauth2.Token{}
	for i := range idle {
		key := fmt.Sprintf("idle/%02d", i)
		idleTokens[key] = f.Server.IssueToken()
		if err := underK1.Save(ctx, key, nil, idleTokens[key]); err != nil {
			t.Fatal(err)
		}
	}
	resealer := open(k2, k1)
	before, err := dropboxsign.Census(ctx, resealer)
	if err != nil {
		t.Fatal(err)
	}
	if got := before.ByKey[dropboxsign.KeyID(k1)]; got != cfg.Accounts+idle {
		t.Fatalf("%d tokens under K1 before the run, want %d", got, cfg.Accounts+idle)
	}

	var p dropboxsign.ResealProgress
	var resealErr error
	var resealFrom, resealTo time.Time
	rep := f.Phase(fleettest.Phase{Replicas: 3, Duration: 4 * time.Second, Callers: 2,
		Env: func(int) []string {
			return []string{"FLEET_SEALER_KEYS=" + hex.EncodeToString(k2) + "," + hex.EncodeToString(k1)}
		},
		During: func(ctx context.Context, _ *fleettest.Workers) {
			// 10 a second: the active accounts (listed first) over the
			// first wave of refreshes, at 1 s, on most machines.
			resealFrom = time.Now()
			p, resealErr = dropboxsign.Reseal(ctx, resealer, dropboxsign.ResealOptions{PerSecond: 10})
			resealTo = time.Now()
		}})
	overlap := 0
	for _, it := range f.Server.IssuedTokens() {
		if it.Refresh && !it.Issued.Before(resealFrom) && !it.Issued.After(resealTo) {
			overlap++
		}
	}
	t.Logf("%d calls, %d failed, %d refreshes (%d while the re-seal ran, for %v), %d stale; re-seal: %+v",
		rep.Calls, rep.Failures, rep.Server.Refreshes, overlap, resealTo.Sub(resealFrom).Round(time.Millisecond), rep.Server.StaleRefreshTokens, p)
	if resealErr != nil {
		t.Fatalf("Reseal: %v (progress %+v)", resealErr, p)
	}
	if rep.Failures != 0 {
		t.Errorf("%d of %d calls failed; first: %s", rep.Failures, rep.Calls, rep.FirstError)
	}
	if rep.Server.StaleRefreshTokens != 0 {
		t.Errorf("%d stale refresh tokens presented", rep.Server.StaleRefreshTokens)
	}
	if rep.Server.Refreshes == 0 {
		t.Errorf("no refresh during the run: the re-seal ran beside nothing")
	}
	if p.Visited != cfg.Accounts+idle || p.Unopenable != 0 || p.Resealed < idle {
		t.Errorf("Reseal = %+v; want %d tokens visited, the %d idle ones at least written, none unopenable", p, cfg.Accounts+idle, idle)
	}

	after, err := dropboxsign.Census(ctx, resealer)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("census after: %+v", after)
	if n := after.ByKey[dropboxsign.KeyID(k1)]; n != 0 || after.Tokens != cfg.Accounts+idle || after.Current != after.Tokens || len(after.Unopenable) != 0 {
		t.Errorf("census after the re-seal: %+v; want %d tokens, none under K1, all current, none unopenable", after, cfg.Accounts+idle)
	}
	// K1 can go: a store with K2 alone reads every token, and each stored
	// refresh token still works (none was written back over a newer one).
	onlyK2 := open(k2)
	conf := &oauth2.Config{ClientID: f.Server.ClientID, ClientSecret: f.Server.ClientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: f.Server.URL + dropboxsigntest.TokenPath}}
	for key, want := range idleTokens {
		got, err := onlyK2.Load(ctx, key)
		if err != nil || got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken {
			t.Errorf("%s under K2 alone: %v (the token it holds is not the one stored)", key, err)
			continue
		}
		if _, err := dropboxsign.Refresh(ctx, conf, got.RefreshToken); err != nil {
			t.Errorf("%s: its refresh token no longer works: %v", key, err)
		}
	}
	if n := f.ValidWith(onlyK2); n != cfg.Accounts {
		t.Errorf("%d of %d accounts valid under K2 alone", n, cfg.Accounts)
	}
}
