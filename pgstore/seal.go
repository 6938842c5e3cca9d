package pgstore

import (
	"context"
	"fmt"

	"github.com/dropboxsign-go/dropboxsign"
)

var _ dropboxsign.SealInspector = (*Store)(nil)

// InspectSeals tells how the tokens of up to limit accounts whose keys sort
// after after are stored (see dropboxsign.SealInspector), in one statement:
// the rows holding a token (refusal and disconnection marks are left out),
// in bytewise order of their keys (COLLATE "C", whatever the column's or
// the database's collation: a census resumes from a key in Go's order), each
// told by the store's Sealer (Options.Sealer) with Inspect. A row Load
// cannot read (a token that does not open, a value that is no token, a
// fingerprint that is not its token's) is reported with its Err; the
// listing goes on.
//
// Cost: the statement reads at most limit rows. In a database whose
// collation is not "C" (initdb --no-locale, or LOCALE 'C'), the primary
// key's index does not give bytewise order, so each page scans the whole
// table and keeps the first limit rows (a top-N sort, in memory of the
// page's size): a census of N tokens in pages of P costs N/P scans of the
// table. An index in that order, CREATE INDEX ON <prefix>tokens (account
// COLLATE "C"), makes each page an index range scan.
func (s *Store) InspectSeals(ctx context.Context, after string, limit int) ([]dropboxsign.StoredSeal, error) {
	if limit < 1 {
		return nil, fmt.Errorf("pgstore: InspectSeals: limit %d, want at least 1", limit)
	}
	rows, err := s.pool.Query(ctx, `SELECT account, token, fingerprint FROM `+s.tokens+`
WHERE account COLLATE "C" > $1 AND refused_at IS NULL AND NOT `+isMark("")+`
ORDER BY account COLLATE "C" LIMIT $2`, execMode, after, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: inspecting seals: %w", schemaHint(err))
	}
	defer rows.Close()
	var out []dropboxsign.StoredSeal
	for rows.Next() {
		var key string
		var blob []byte
		var fp *string
		if err := rows.Scan(&key, &blob, &fp); err != nil {
			return nil, fmt.Errorf("pgstore: inspecting seals: %w", err)
		}
		out = append(out, dropboxsign.StoredSeal{Key: key, Seal: s.inspect(key, blob, fp)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: inspecting seals: %w", schemaHint(err))
	}
	return out, nil
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
