package pgstore

import (
	"context"
	"strings"
)

// Bytewise reports whether InspectSeals reads s's tokens in the account
// column's own order (by the primary key's index), which it does when
// that order is bytewise.
func Bytewise(ctx context.Context, s *Store) (bool, error) {
	var b bool
	err := s.pool.QueryRow(ctx, `SELECT coalesce((`+bytewiseSQL("$1")+`), false)`, execMode, s.tokens).Scan(&b)
	return b, err
}

// InspectSealsPlan returns EXPLAIN ANALYZE of InspectSeals's statement.
func InspectSealsPlan(ctx context.Context, s *Store, after string, limit int) (string, error) {
	return explain(ctx, s, s.inspectSQL(), after, limit, s.tokens)
}

// SampleSealsPlan returns EXPLAIN ANALYZE of SampleSeals's statement.
func SampleSealsPlan(ctx context.Context, s *Store, n int) (string, error) {
	return explain(ctx, s, s.sampleSQL(), n)
}

func explain(ctx context.Context, s *Store, sql string, args ...any) (string, error) {
	rows, err := s.pool.Query(ctx, `EXPLAIN ANALYZE `+sql, append([]any{execMode}, args...)...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return "", err
		}
		b.WriteString(line + "\n")
	}
	return b.String(), rows.Err()
}
