package main

import (
	"context"
	"fmt"
	"os"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
	"github.com/jackc/pgx/v5/pgxpool"
)

// tokenStore is the store the app's Accounts keeps tokens in, and what
// closes it.
type tokenStore struct {
	dropboxsign.Store
	Close func()
}

// openStore opens PostgreSQL at dsn if given (making pgstore's tables if
// they are missing: safe when replicas start together), else a FileStore
// in dir (a new temporary directory if empty, removed at Close). where
// says which, for the start-up line, without the DSN's password.
func openStore(ctx context.Context, dir, dsn string) (store tokenStore, where string, err error) {
	if dsn != "" {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			// pgx's error may quote the DSN, password included.
			return tokenStore{}, "", fmt.Errorf("-postgres: the DSN does not parse: expected postgres://user:password@host:port/database?options, or key=value pairs")
		}
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return tokenStore{}, "", fmt.Errorf("-postgres: %w", err)
		}
		if err := pgstore.CreateTables(ctx, pool, pgstore.Options{}); err != nil {
			pool.Close()
			return tokenStore{}, "", fmt.Errorf("-postgres: making the tables: %w", err)
		}
		s, err := pgstore.New(pool, pgstore.Options{})
		if err != nil {
			pool.Close()
			return tokenStore{}, "", err
		}
		return tokenStore{Store: s, Close: pool.Close}, fmt.Sprintf("PostgreSQL database %q on %s", cfg.ConnConfig.Database, cfg.ConnConfig.Host), nil
	}
	closeDir := func() {}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "webapp-tokens-"); err != nil {
			return tokenStore{}, "", err
		}
		tmp := dir
		closeDir = func() { os.RemoveAll(tmp) }
	}
	s, err := dropboxsign.NewFileStore(dir)
	if err != nil {
		closeDir()
		return tokenStore{}, "", err
	}
	return tokenStore{Store: s, Close: closeDir}, dir, nil
}
