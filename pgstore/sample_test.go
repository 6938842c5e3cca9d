package pgstore_test

import (
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
	"github.com/jackc/pgx/v5"
)

// SampleSeals, on a table whose account column is in a locale's order (ICU:
// InspectSeals must sort, or scan the whole table, there): it tells the
// tokens as InspectSeals does, leaves marks out, returns at most n, and its
// statement neither sorts nor reads more of the table than it returns
// (plus the marks it skips).
func TestSampleSealsOnALocaleColumn(t *testing.T) {
	ctx := ctxFor(t)
	_, pool, opts := setUp(t)
	tokens := pgx.Identifier{opts.Schema, "dropboxsign_tokens"}.Sanitize()
	exec(t, pool, `CREATE COLLATION `+opts.Schema+`.locale (provider = icu, locale = 'en-US')`)
	exec(t, pool, `ALTER TABLE `+tokens+` ALTER COLUMN account TYPE text COLLATE `+opts.Schema+`.locale`)
	opts.Sealer = mustSealer(t, sealKey(1))
	s := newStore(t, pool, opts)
	if b, err := pgstore.Bytewise(ctx, s); err != nil || b {
		t.Fatalf("Bytewise: %v, %v; want a column that does not order bytewise", b, err)
	}
	var ss dropboxsign.SealSampler = s // fails to build without SampleSeals

	for _, k := range sealKeys {
		if err := s.Save(ctx, k, nil, sealToken(k)); err != nil {
			t.Fatal(err)
		}
	}
	foreign := opts
	foreign.Sealer = mustSealer(t, sealKey(3))
	if err := newStore(t, pool, foreign).Save(ctx, "foreign", nil, sealToken("foreign")); err != nil {
		t.Fatal(err)
	}
	marks := []string{sealKeys[0], sealKeys[1]}
	if err := s.Disconnect(ctx, marks[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRefused(ctx, marks[1], sealToken(marks[1])); err != nil {
		t.Fatal(err)
	}
	listed := inspectAll(t, s, 100)
	if len(listed) != len(sealKeys)-len(marks)+1 {
		t.Fatalf("InspectSeals listed %q", keysOf(listed))
	}
	want := map[string]dropboxsign.Seal{}
	for _, r := range listed {
		want[r.Key] = r.Seal
	}

	sample, err := ss.SampleSeals(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := sorted(keysOf(sample)); !slices.Equal(got, sorted(keysOf(listed))) {
		t.Errorf("SampleSeals(100) of %d tokens returned %q, want %q (every token, no mark)", len(listed), got, sorted(keysOf(listed)))
	}
	for _, r := range sample {
		w := want[r.Key]
		var missing *dropboxsign.MissingKeyError
		switch {
		case r.Key == "foreign":
			if !errors.As(r.Seal.Err, &missing) || missing.KeyID != dropboxsign.KeyID(sealKey(3)) {
				t.Errorf("%q, under a key the store lacks: %+v; want a *MissingKeyError", r.Key, r.Seal)
			}
		case r.Seal != w || r.Seal.Err != nil || !r.Seal.Current:
			t.Errorf("%q: %+v; InspectSeals says %+v (Current, opens)", r.Key, r.Seal, w)
		}
	}
	if sample, err := ss.SampleSeals(ctx, 3); err != nil || len(sample) != 3 {
		t.Errorf("SampleSeals(3): %d records, %v; want 3", len(sample), err)
	}
	if _, err := ss.SampleSeals(ctx, 0); err == nil {
		t.Error("SampleSeals(0): no error")
	}

	// On a large table: no sort, and a scan that stops at the limit.
	exec(t, pool, `INSERT INTO `+tokens+` (account, fingerprint, token) SELECT 'acct-' || g, 'x', 'y' FROM generate_series(1, 20000) g`)
	exec(t, pool, `ANALYZE `+tokens)
	const n = 10
	plan, err := pgstore.SampleSealsPlan(ctx, s, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan:\n%s", plan)
	if strings.Contains(plan, "Sort") {
		t.Errorf("SampleSeals's statement sorts:\n%s", plan)
	}
	scans := executedScans(plan)
	if len(scans) != 1 {
		t.Fatalf("SampleSeals's statement scanned %q, want one scan of the table", scans)
	}
	m := regexp.MustCompile(`actual time=\S+ rows=(\d+) loops=1`).FindStringSubmatch(scans[0])
	if m == nil {
		t.Fatalf("no actual rows in %q", scans[0])
	}
	// Rows the scan read: those it returned, and those its filter removed
	// (the marks, at most).
	read, _ := strconv.Atoi(m[1])
	if rm := regexp.MustCompile(`Rows Removed by Filter: (\d+)`).FindStringSubmatch(plan); rm != nil {
		removed, _ := strconv.Atoi(rm[1])
		read += removed
	}
	if read > n+len(marks) {
		t.Errorf("SampleSeals(%d) read %d rows of %d: a scan that does not stop at the limit\n%s", n, read, 20000+len(sealKeys)+1, plan)
	}
}
