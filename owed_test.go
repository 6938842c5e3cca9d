package dropboxsign_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// A plain NewTokenSource whose WithOnRefresh keeps failing (a mirror gone
// for good), dropped by its caller, is not kept alive by its owed save: the
// background retries hold sources weakly (owed.go), so a program that
// makes a source per request leaks neither sources nor goroutines.
func TestADroppedSourceWithAFailingSaveIsCollected(t *testing.T) {
	srv := newServer(t)
	ctx := testContext(t)
	before := runtime.NumGoroutine()
	const n = 20
	var collected atomic.Int32
	for range n {
		tok := srv.IssueToken()
		ts := dropboxsign.NewTokenSource(context.Background(), srv.Config(), expired(tok),
			dropboxsign.WithOnRefresh(func(context.Context, *oauth2.Token) error { return errors.New("mirror gone") }))
		if _, err := ts.TokenContext(ctx); err == nil {
			t.Fatal("want the SaveError")
		}
		runtime.AddCleanup(ts, func(struct{}) { collected.Add(1) }, struct{}{})
	}
	// Give the sources every chance to go (a bound, not a schedule).
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && collected.Load() < n {
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("goroutines before %d, after %d; sources collected %d of %d", before, runtime.NumGoroutine(), collected.Load(), n)
	if collected.Load() < n {
		t.Errorf("dropped sources whose save fails: %d of %d never collected", n-int(collected.Load()), n)
	}
}
