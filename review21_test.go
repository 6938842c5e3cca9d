package dropboxsign_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

// Issue 21's adversarial review: what a hostile store, a careless
// operator and a busy fleet do to Census and Reseal.

// A sealed token copied under another account (the Sealer's doc: "copied
// under another account, it does not open"), sealed with the store's first
// key, is unopenable: a census must not count it as Current too, or
// Tokens - Current - Unopenable (what a re-seal would write, as the
// CLI's keys prints it) goes negative, and Seal.Current ("a re-seal leaves
// it alone") says the store is fine as it is.
func TestReview21CensusDoesNotCountAnUnopenableTokenAsCurrent(t *testing.T) {
	_, fs := resealDir(t, nil, []string{"alice"})
	ctx := context.Background()
	data, err := os.ReadFile(fs.Path("alice"))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	rec["key"] = "bob"
	data, _ = json.Marshal(rec)
	if err := os.WriteFile(fs.Path("bob"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Load(ctx, "bob"); err == nil {
		t.Fatal("a token copied under another account opened")
	}
	c, err := dropboxsign.Census(ctx, fs)
	if err != nil {
		t.Fatal(err)
	}
	unopenable := 0
	for _, n := range c.Unopenable {
		unopenable += n
	}
	t.Logf("census: %+v", c)
	if c.Tokens != 2 || unopenable != 1 {
		t.Fatalf("census %+v, want 2 tokens, 1 unopenable", c)
	}
	if c.Current != 1 || c.Tokens-c.Current-unopenable < 0 {
		t.Errorf("census counts %d current of %d tokens with %d unopenable: an unopenable token is counted as current too (tokens to re-seal: %d)",
			c.Current, c.Tokens, unopenable, c.Tokens-c.Current-unopenable)
	}
}

// Reseal's rate bound holds for any rate above 0, however small: a
// careless -rate 1e-10 (or a PerSecond computed as 1/interval from a
// large interval) must not turn the bound off. At 1e-10 saves a second
// the second save waits for ages; the re-seal must stop at ctx's end with
// at most one token written.
func TestReview21ResealTinyRateStillBounds(t *testing.T) {
	_, fs := resealDir(t, []string{"a", "b", "c"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p, err := dropboxsign.Reseal(ctx, fs, dropboxsign.ResealOptions{PerSecond: 1e-10})
	if p.Resealed > 1 {
		t.Errorf("at 1e-10 saves a second, Reseal wrote %d tokens (err %v): time.Duration(1s/rate) overflowed and the bound is off", p.Resealed, err)
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Reseal returned %v, want ctx's deadline", err)
	}
}
