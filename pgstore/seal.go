package pgstore

import (
	"context"
	"fmt"

	"github.com/dropboxsign-go/dropboxsign"
)

var _ dropboxsign.SealSampler = (*Store)(nil)

// InspectSeals tells how the tokens of up to limit accounts whose keys sort
// after after are stored (see dropboxsign.SealInspector), in one statement:
// the rows holding a token (refusal and disconnection marks are left out),
// in bytewise order of their keys (Go's, whatever the column's or the
// database's collation, so that a census resumes from a key where it
// stopped), each told by the store's Sealer (Options.Sealer) with Inspect.
// A row Load cannot read (a token that does not open, a value that is no
// token, a fingerprint that is not its token's) is reported with its Err;
// the listing goes on.
//
// Cost: the statement reads the catalog for the account column's
// collation, then at most limit rows. Where that collation orders bytewise
// (a database made with LOCALE 'C' or initdb --no-locale, or the column
// declared COLLATE "C"), it reads them by the primary key's index: a page
// costs what a range of the index costs. Elsewhere (en_US.UTF-8, ICU) the
// primary key's order is not bytewise, so each page scans the whole table
// and keeps the first limit rows (a top-N sort, in memory of the page's
// size): a census of N tokens in pages of P costs N/P scans of the table
// (measured: 64 ms a page for 200,000 rows). An index in bytewise order,
// CREATE INDEX ON <prefix>tokens (account COLLATE "C"), turns each page
// into a range of that index (0.3 ms).
func (s *Store) InspectSeals(ctx context.Context, after string, limit int) ([]dropboxsign.StoredSeal, error) {
	if limit < 1 {
		return nil, fmt.Errorf("pgstore: InspectSeals: limit %d, want at least 1", limit)
	}
	out, err := s.inspectRows(ctx, s.inspectSQL(), after, limit, s.tokens)
	if err != nil {
		return nil, fmt.Errorf("pgstore: inspecting seals: %w", err)
	}
	return out, nil
}

// SampleSeals tells how at most n stored tokens are stored (see
// dropboxsign.SealSampler), any n the table gives first, each told as
// InspectSeals does (refusal and disconnection marks left out, a row Load
// cannot read reported with its Err). It is what Accounts.Check asks for:
// one statement with a LIMIT and no order, so that whatever the account
// column's collation it neither sorts nor reads the whole table: a scan
// that stops after n rows holding a token.
func (s *Store) SampleSeals(ctx context.Context, n int) ([]dropboxsign.StoredSeal, error) {
	if n < 1 {
		return nil, fmt.Errorf("pgstore: SampleSeals: n %d, want at least 1", n)
	}
	out, err := s.inspectRows(ctx, s.sampleSQL(), n)
	if err != nil {
		return nil, fmt.Errorf("pgstore: sampling seals: %w", err)
	}
	return out, nil
}

// sampleSQL is SampleSeals's statement: $1 the limit.
func (s *Store) sampleSQL() string {
	return `SELECT account, token, fingerprint FROM ` + s.tokens + ` WHERE refused_at IS NULL AND NOT ` + isMark("") + ` LIMIT $1`
}

// inspectRows runs sql, which selects account, token and fingerprint, and
// tells how each row's token is stored.
func (s *Store) inspectRows(ctx context.Context, sql string, args ...any) ([]dropboxsign.StoredSeal, error) {
	rows, err := s.pool.Query(ctx, sql, append([]any{execMode}, args...)...)
	if err != nil {
		return nil, schemaHint(err)
	}
	defer rows.Close()
	var out []dropboxsign.StoredSeal
	for rows.Next() {
		var key string
		var blob []byte
		var fp *string
		if err := rows.Scan(&key, &blob, &fp); err != nil {
			return nil, err
		}
		out = append(out, dropboxsign.StoredSeal{Key: key, Seal: s.inspect(key, blob, fp)})
	}
	if err := rows.Err(); err != nil {
		return nil, schemaHint(err)
	}
	return out, nil
}

// inspectSQL is InspectSeals's statement: $1 after, $2 limit, $3 the
// tokens table's quoted name. Two branches, of which a one-time filter
// runs one: by the column's own order where it is bytewise (so that the
// primary key's index serves), else by COLLATE "C". The outer ORDER BY
// sorts at most limit rows.
func (s *Store) inspectSQL() string {
	token := `refused_at IS NULL AND NOT ` + isMark("")
	return `WITH c AS (SELECT coalesce((` + bytewiseSQL("$3") + `), false) AS bytewise)
SELECT account, token, fingerprint FROM (
	(SELECT account, token, fingerprint FROM ` + s.tokens + ` WHERE (SELECT bytewise FROM c) AND account > $1 AND ` + token + ` ORDER BY account LIMIT $2)
	UNION ALL
	(SELECT account, token, fingerprint FROM ` + s.tokens + ` WHERE NOT (SELECT bytewise FROM c) AND account COLLATE "C" > $1 AND ` + token + ` ORDER BY account COLLATE "C" LIMIT $2)
) AS page ORDER BY account COLLATE "C"`
}

// bytewiseSQL is true if the account column of the table named by the
// parameter table (its quoted name, as text) orders bytewise: its
// collation, or the database's default (collation 100), is libc's C or
// POSIX. Any other (or an answer it cannot make out) is taken for not
// bytewise: COLLATE "C" then gives the order, at a cost.
func bytewiseSQL(table string) string {
	return `SELECT CASE WHEN a.attcollation = 100
	THEN (SELECT coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') = 'c' AND d.datcollate IN ('C', 'POSIX') FROM pg_database d WHERE d.datname = current_database())
	ELSE (SELECT coll.collprovider = 'c' AND coll.collcollate IN ('C', 'POSIX') FROM pg_collation coll WHERE coll.oid = a.attcollation)
	END
FROM pg_attribute a WHERE a.attrelid = ` + table + `::text::regclass AND a.attname = 'account'`
}

// inspect tells how a row's token is stored, and whether Load reads it:
// as Sealer.Inspect says, and, for a token that opens, only if the row's
// fingerprint is its token's (see Load).
func (s *Store) inspect(key string, blob []byte, fp *string) dropboxsign.Seal {
	st := s.sealer.Inspect(key, blob)
	if st.Err != nil {
		return st
	}
	tok, err := s.sealer.Open(key, blob)
	switch {
	case err != nil: // Inspect opened it: cannot happen
		st.Err = err
	case fp == nil || *fp != fingerprint(tok):
		st.Err = errDisagrees
	}
	return st
}
