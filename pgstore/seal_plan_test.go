package pgstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dropboxsign-go/dropboxsign/internal/pgtest"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// executedScans returns the lines of an EXPLAIN ANALYZE that scan the
// tokens table and ran (a branch the one-time filter skipped says "never
// executed", or is left out).
func executedScans(plan string) []string {
	var scans []string
	for _, line := range strings.Split(plan, "\n") {
		if strings.Contains(line, " on dropboxsign_tokens") && !strings.Contains(line, "never executed") {
			scans = append(scans, strings.TrimSpace(line))
		}
	}
	return scans
}

// InspectSeals reads by the primary key's index where the column orders
// bytewise, by COLLATE "C" (an index in that order if there is one)
// elsewhere, and lists in bytewise order in every case: a column in the
// database's C collation, in an ICU collation, in POSIX, and a database
// whose default is ICU's.
func TestInspectSealsCollations(t *testing.T) {
	ctx := ctxFor(t)
	srv := pgtest.Shared(t)
	if v := srv.MustQuery(t, `SHOW server_version_num`); v < "150000" {
		t.Skipf("PostgreSQL %s: a database whose default collation is ICU's needs 15", v)
	}
	db := fmt.Sprintf("icu_%d", schemas.Add(1))
	srv.MustQuery(t, `CREATE DATABASE `+db+` TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'`)
	icuPool, err := pgxpool.New(ctx, strings.Replace(srv.DSN(), "/postgres?", "/"+db+"?", 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(icuPool.Close)

	for _, c := range []struct {
		name      string
		pool      func(t *testing.T) (*pgxpool.Pool, pgstore.Options)
		collation string // the column's, if not the database's
		bytewise  bool
	}{
		{"CDatabase", nil, "", true},
		{"POSIXColumn", nil, `"POSIX"`, true},
		{"ICUColumn", nil, "icu", false},
		{"ICUDatabase", func(t *testing.T) (*pgxpool.Pool, pgstore.Options) {
			opts := pgstore.Options{Schema: fmt.Sprintf("test_%d", schemas.Add(1))}
			if _, err := icuPool.Exec(ctx, `CREATE SCHEMA `+opts.Schema); err != nil {
				t.Fatal(err)
			}
			if err := pgstore.CreateTables(ctx, icuPool, opts); err != nil {
				t.Fatal(err)
			}
			return icuPool, opts
		}, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var pool *pgxpool.Pool
			var opts pgstore.Options
			if c.pool != nil {
				pool, opts = c.pool(t)
			} else {
				_, pool, opts = setUp(t)
			}
			tokens := pgx.Identifier{opts.Schema, "dropboxsign_tokens"}.Sanitize()
			switch c.collation {
			case "":
			case "icu":
				exec(t, pool, `CREATE COLLATION `+opts.Schema+`.locale (provider = icu, locale = 'en-US')`)
				exec(t, pool, `ALTER TABLE `+tokens+` ALTER COLUMN account TYPE text COLLATE `+opts.Schema+`.locale`)
			default:
				exec(t, pool, `ALTER TABLE `+tokens+` ALTER COLUMN account TYPE text COLLATE `+c.collation)
			}
			s := newStore(t, pool, opts)
			if b, err := pgstore.Bytewise(ctx, s); err != nil || b != c.bytewise {
				t.Fatalf("Bytewise: %v, %v; want %v", b, err, c.bytewise)
			}
			for _, k := range sealKeys {
				if err := s.Save(ctx, k, nil, sealToken(k)); err != nil {
					t.Fatal(err)
				}
			}
			if got := keysOf(inspectAll(t, s, 3)); !slices.Equal(got, sorted(sealKeys)) {
				t.Errorf("InspectSeals listed %q, want %q", got, sorted(sealKeys))
			}
			// Enough rows that an index range beats a scan and a sort.
			exec(t, pool, `INSERT INTO `+tokens+` (account, fingerprint, token) SELECT 'acct-' || g, 'x', 'y' FROM generate_series(1, 20000) g`)
			exec(t, pool, `ANALYZE `+tokens)
			plan := func() []string {
				p, err := pgstore.InspectSealsPlan(ctx, s, "acct-5", 500)
				if err != nil {
					t.Fatal(err)
				}
				return executedScans(p)
			}
			scans := plan()
			if c.bytewise {
				if len(scans) != 1 || !strings.Contains(scans[0], "Index Scan using dropboxsign_tokens_pkey") {
					t.Errorf("column in bytewise order: the statement ran %q, want the primary key's index", scans)
				}
				return
			}
			if len(scans) != 1 || strings.Contains(scans[0], "Index") {
				t.Errorf("column in a locale's order: the statement ran %q, want a scan of the table", scans)
			}
			// An index in bytewise order serves it (as docs/postgres.md says).
			exec(t, pool, `CREATE INDEX tokens_account_c ON `+tokens+` (account COLLATE "C")`)
			exec(t, pool, `ANALYZE `+tokens)
			if scans := plan(); len(scans) != 1 || !strings.Contains(scans[0], "Index Scan using tokens_account_c") {
				t.Errorf("with an index on account COLLATE \"C\": the statement ran %q, want that index", scans)
			}
		})
	}
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
