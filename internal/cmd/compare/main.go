// Command compare runs package dropboxsign and golang.org/x/oauth2 side by
// side, in one process, on identical load against the fake Dropbox Sign
// (which, for x/oauth2's sake, also accepts the standard form-encoded
// refresh), and prints a table per scenario, with medians over -runs runs:
//
//	go run ./internal/cmd/compare -runs 3
//
// x/oauth2 is set up as a careful user would: Config.TokenSource wrapped by
// oauth2.NewClient, with ReuseTokenSourceWithExpiry at lifetime/10 (the same
// margin dropboxsign keeps), because its default 10 s early expiry would
// refresh on every call with tokens this short.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

var (
	runs = flag.Int("runs", 1, "runs of each scenario; figures are medians")

	expiryDuration = flag.Duration("expiry-duration", 10*time.Second, "expiry boundary: how long to call the API")
	expiryLifetime = flag.Duration("expiry-lifetime", 3*time.Second, "expiry boundary: token lifetime")
	expiryLatency  = flag.Duration("expiry-latency", 300*time.Millisecond, "expiry boundary: token endpoint latency")
	workers        = flag.Int("workers", 64, "concurrent API callers")

	stormDuration = flag.Duration("storm-duration", 12*time.Second, "failure storm: how long to call the API")
	stormLifetime = flag.Duration("storm-lifetime", 8*time.Second, "failure storm: token lifetime")
	stormStart    = flag.Duration("storm-start", 4500*time.Millisecond, "failure storm: when the token endpoint starts answering 503")
	stormLength   = flag.Duration("storm-length", 5*time.Second, "failure storm: how long it answers 503")

	fanoutDuration = flag.Duration("fanout-duration", 9*time.Second, "fan-out: how long to call the API")
	fanoutLifetime = flag.Duration("fanout-lifetime", 3*time.Second, "fan-out: token lifetime")
	fanoutClients  = flag.Int("fanout-clients", 32, "fan-out: oauth2.NewClient wrappers")
)

func main() {
	flag.Parse()
	out := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Printf("median of %d run(s) per row; %d workers; both implementations in this one process, one after the other\n\n", *runs, *workers)

	report(out, fmt.Sprintf("1. Expiry boundary: %s tokens, token endpoint latency %s, %s", *expiryLifetime, *expiryLatency, *expiryDuration),
		median(*runs, func() []row { return expiryBoundary() }))
	report(out, fmt.Sprintf("2. Failure storm: %s tokens; the token endpoint answers 503 from %s to %s", *stormLifetime, *stormStart, *stormStart+*stormLength),
		median(*runs, func() []row { return failureStorm() }))
	report(out, fmt.Sprintf("3. Fan-out: %d oauth2.NewClient wrappers, %s tokens that rotate, %s", *fanoutClients, *fanoutLifetime, *fanoutDuration),
		median(*runs, func() []row { return fanOut() }))
}

// row is one implementation's figures in one scenario.
type row struct {
	name             string
	calls, failed    int
	p50, p99, max    time.Duration
	tokenRequests    int
	failedTokenCalls int
	stale            int
}

// fakeFor starts a fake that answers both dialects, with the given lifetime.
func fakeFor(lifetime time.Duration) *dropboxsigntest.Server {
	fake := dropboxsigntest.NewServer()
	fake.SetAcceptStandardOAuth(true)
	fake.SetLifetime(lifetime)
	return fake
}

// theirs is x/oauth2 as a careful user sets it up (see the package doc).
func theirs(ctx context.Context, fake *dropboxsigntest.Server, tok *oauth2.Token, lifetime time.Duration) oauth2.TokenSource {
	return oauth2.ReuseTokenSourceWithExpiry(nil, fake.Config().TokenSource(ctx, tok), lifetime/10)
}

// drive makes workers call url through clients (round robin) for d, and
// returns the fake's figures for the run.
func drive(name string, fake *dropboxsigntest.Server, clients []*http.Client, d time.Duration, during func(elapsed func() time.Duration)) row {
	var mu sync.Mutex
	var lat []time.Duration
	failed := 0
	before := fake.Stats()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	if during != nil {
		wg.Go(func() { during(func() time.Duration { return time.Since(start) }) })
	}
	for i := range *workers {
		c := clients[i%len(clients)]
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			for time.Now().Before(deadline) {
				t0 := time.Now()
				err := call(c, fake.AccountURL())
				mine = append(mine, time.Since(t0))
				if err != nil {
					bad++
					time.Sleep(time.Millisecond) // a failing client must not spin
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			failed += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	after := fake.Stats()
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	return row{
		name: name, calls: len(lat), failed: failed, p50: q(0.5), p99: q(0.99), max: lat[len(lat)-1],
		tokenRequests:    after.TokenRequests - before.TokenRequests,
		failedTokenCalls: (after.TokenRequests - before.TokenRequests) - (after.Refreshes - before.Refreshes),
		stale:            after.StaleRefreshTokens - before.StaleRefreshTokens,
	}
}

func call(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

func expiryBoundary() []row {
	ctx := context.Background()
	var rows []row
	for _, impl := range []string{"dropboxsign", "x/oauth2"} {
		fake := fakeFor(*expiryLifetime)
		fake.SetLatency(*expiryLatency)
		tok := fake.IssueToken()
		var client *http.Client
		if impl == "dropboxsign" {
			client = dropboxsign.NewClient(ctx, fake.Config(), tok)
		} else {
			client = oauth2.NewClient(ctx, theirs(ctx, fake, tok, *expiryLifetime))
		}
		rows = append(rows, drive(impl, fake, []*http.Client{client}, *expiryDuration, nil))
		fake.Close()
	}
	return rows
}

func failureStorm() []row {
	ctx := context.Background()
	var rows []row
	for _, impl := range []string{"dropboxsign", "x/oauth2"} {
		fake := fakeFor(*stormLifetime)
		tok := fake.IssueToken()
		var client *http.Client
		if impl == "dropboxsign" {
			client = dropboxsign.NewClient(ctx, fake.Config(), tok)
		} else {
			client = oauth2.NewClient(ctx, theirs(ctx, fake, tok, *stormLifetime))
		}
		storm := func(elapsed func() time.Duration) {
			time.Sleep(*stormStart - elapsed())
			fake.InjectFault(dropboxsigntest.EnvelopeError(http.StatusServiceUnavailable, "service_unavailable", "Down."))
			time.Sleep(*stormStart + *stormLength - elapsed())
			fake.ClearFaults()
		}
		rows = append(rows, drive(impl, fake, []*http.Client{client}, *stormDuration, storm))
		fake.Close()
	}
	return rows
}

func fanOut() []row {
	ctx := context.Background()
	var rows []row
	for _, impl := range []string{"dropboxsign", "x/oauth2, one source", "x/oauth2, Config.Client each"} {
		fake := fakeFor(*fanoutLifetime)
		tok := fake.IssueToken()
		var shared oauth2.TokenSource
		switch impl {
		case "dropboxsign":
			shared = dropboxsign.NewTokenSource(ctx, fake.Config(), tok)
		case "x/oauth2, one source":
			shared = theirs(ctx, fake, tok, *fanoutLifetime)
		}
		clients := make([]*http.Client, *fanoutClients)
		for i := range clients {
			src := shared
			if src == nil { // each handler builds its own client from the stored token
				src = theirs(ctx, fake, tok, *fanoutLifetime)
			}
			clients[i] = oauth2.NewClient(ctx, src)
		}
		rows = append(rows, drive(impl, fake, clients, *fanoutDuration, nil))
		fake.Close()
	}
	return rows
}

// median runs a scenario n times and keeps, per implementation, the median
// of each figure.
func median(n int, scenario func() []row) []row {
	var all [][]row
	for range max(n, 1) {
		all = append(all, scenario())
	}
	out := make([]row, len(all[0]))
	for i := range out {
		pick := func(f func(row) float64) float64 {
			var v []float64
			for _, r := range all {
				v = append(v, f(r[i]))
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		out[i] = row{
			name:             all[0][i].name,
			calls:            int(pick(func(r row) float64 { return float64(r.calls) })),
			failed:           int(pick(func(r row) float64 { return float64(r.failed) })),
			p50:              time.Duration(pick(func(r row) float64 { return float64(r.p50) })),
			p99:              time.Duration(pick(func(r row) float64 { return float64(r.p99) })),
			max:              time.Duration(pick(func(r row) float64 { return float64(r.max) })),
			tokenRequests:    int(pick(func(r row) float64 { return float64(r.tokenRequests) })),
			failedTokenCalls: int(pick(func(r row) float64 { return float64(r.failedTokenCalls) })),
			stale:            int(pick(func(r row) float64 { return float64(r.stale) })),
		}
	}
	return out
}

func report(w *tabwriter.Writer, title string, rows []row) {
	fmt.Println(title)
	fmt.Fprintln(w, "implementation\tAPI calls\tfailed\tp50\tp99\tmax\ttoken requests\tof which failed\tstale refresh tokens\t")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t\n", r.name, r.calls, r.failed,
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.max.Round(time.Microsecond),
			r.tokenRequests, r.failedTokenCalls, r.stale)
	}
	w.Flush()
	ours, peer := rows[0], rows[1]
	fmt.Printf("ratio dropboxsign / %s: max latency %.2f, p99 %.2f, token requests %.2f, failed calls %d vs %d\n\n",
		peer.name, ratio(ours.max, peer.max), ratio(ours.p99, peer.p99), float64(ours.tokenRequests)/float64(max(peer.tokenRequests, 1)), ours.failed, peer.failed)
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }
