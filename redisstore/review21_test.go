package redisstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
)

// Accounts.Check is a readiness probe, run every few seconds by every
// replica; its doc says it costs "one store read and, on a SealInspector,
// one page of the listing" (100 tokens). On Redis, InspectSeals finds a
// page by a pass of SCAN over the whole keyspace: each probe of each
// replica walks every key. With 200,000 accounts, one Check must not cost
// a SCAN of all of them (200 SCAN round trips at COUNT 1000).
func TestReview21CheckDoesNotScanTheWholeKeyspace(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	ctx := context.Background()
	p := prefix()
	const n = 200000
	blob := `{"access_token":"at","refresh_token":"rt","token_type":"Bearer"}`
	for i := 0; i < n; i += 5000 {
		pipe := client.Pipeline()
		for j := i; j < i+5000; j++ {
			pipe.HSet(ctx, fmt.Sprintf("%stoken:acct%06d", p, j), "blob", blob)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st, err := redisstore.New(client, redisstore.Options{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	a := dropboxsign.NewAccounts(ctx, fake.Config(), st)
	defer a.Shutdown(ctx)
	before := scanCalls(ctx, t, client)
	err = a.Check(ctx)
	scans := scanCalls(ctx, t, client) - before
	t.Logf("Check: %v; %d SCAN calls for %d accounts", err, scans, n)
	if scans > 10 {
		t.Errorf("one Check ran %d SCAN calls over %d accounts: a readiness probe that walks the whole keyspace", scans, n)
	}
}
