package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/pgstore"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"
)

// This file checks that Load, Save and MarkRefused agree on what a row
// holds when an operator has edited it by hand so that it disagrees with
// itself: a token that Load returns is one that Save (as prev) finds
// stored, so that no rotation is lost and no spent refresh token presented;
// and a new login repairs any row.

// tokensTable names opts' tokens table in SQL.
func tokensTable(opts pgstore.Options) string {
	return fmt.Sprintf("%s.dropboxsign_tokens", opts.Schema)
}

// mustExec runs an operator's statement on the table.
func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// column reads one column of key's row, as an operator's backup would.
func column[T any](t *testing.T, pool *pgxpool.Pool, opts pgstore.Options, name, key string) T {
	t.Helper()
	var v T
	if err := pool.QueryRow(context.Background(), `SELECT `+name+` FROM `+tokensTable(opts)+` WHERE account = $1`, key).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// expired returns tok, due for a refresh.
func expired(tok *oauth2.Token) *oauth2.Token {
	tok.Expiry = time.Now().Add(-time.Minute)
	return tok
}

// A row whose fingerprint column disagrees with its token, as an operator
// leaves it: one replica refreshes the account, then another. The first
// one's new token, if it gets one, is stored or reported (a *SaveError);
// the second presents no spent refresh token (counted at the fake); and a
// new login repairs the row: Load returns the login's token, which a third
// replica then serves.
func TestRowEditedByHandLosesNoRotation(t *testing.T) {
	edits := []struct {
		name string
		// edit seeds key's row and edits it; the stored token is due.
		edit func(t *testing.T, fake *dropboxsigntest.Server, s *pgstore.Store, pool *pgxpool.Pool, opts pgstore.Options, key string)
	}{
		{"fingerprint changed", func(t *testing.T, fake *dropboxsigntest.Server, s *pgstore.Store, pool *pgxpool.Pool, opts pgstore.Options, key string) {
			if err := s.Save(ctxFor(t), key, nil, expired(fake.IssueToken())); err != nil {
				t.Fatal(err)
			}
			mustExec(t, pool, `UPDATE `+tokensTable(opts)+` SET fingerprint = 'edited by hand' WHERE account = $1`, key)
		}},
		{"fingerprint restored from a backup", func(t *testing.T, fake *dropboxsigntest.Server, s *pgstore.Store, pool *pgxpool.Pool, opts pgstore.Options, key string) {
			ctx := ctxFor(t)
			t0 := expired(fake.IssueToken())
			if err := s.Save(ctx, key, nil, t0); err != nil {
				t.Fatal(err)
			}
			backup := column[string](t, pool, opts, "fingerprint", key)
			t1, err := dropboxsign.Refresh(ctx, fake.Config(), t0.RefreshToken) // a rotation since the backup
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Save(ctx, key, t0, expired(t1)); err != nil {
				t.Fatal(err)
			}
			mustExec(t, pool, `UPDATE `+tokensTable(opts)+` SET fingerprint = $2 WHERE account = $1`, key, backup)
		}},
		{"token restored from a backup", func(t *testing.T, fake *dropboxsigntest.Server, s *pgstore.Store, pool *pgxpool.Pool, opts pgstore.Options, key string) {
			ctx := ctxFor(t)
			t0 := expired(fake.IssueToken())
			if err := s.Save(ctx, key, nil, t0); err != nil {
				t.Fatal(err)
			}
			backup := column[[]byte](t, pool, opts, "token", key)
			t1, err := dropboxsign.Refresh(ctx, fake.Config(), t0.RefreshToken) // t0's refresh token is spent
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Save(ctx, key, t0, t1); err != nil {
				t.Fatal(err)
			}
			mustExec(t, pool, `UPDATE `+tokensTable(opts)+` SET token = $2 WHERE account = $1`, key, backup)
		}},
	}
	for _, sealed := range []bool{false, true} {
		for _, e := range edits {
			t.Run(fmt.Sprintf("%s/sealed=%v", e.name, sealed), func(t *testing.T) {
				_, pool, opts := setUp(t)
				if sealed {
					opts.Sealer = sealer(t)
				}
				ctx := ctxFor(t)
				fake := dropboxsigntest.NewServer()
				defer fake.Close()
				const key = "alice"
				e.edit(t, fake, newStore(t, pool, opts), pool, opts, key)
				before := fake.Stats()

				// Two replicas, each with a store of its own on the table.
				a := dropboxsign.NewAccounts(ctx, fake.Config(), newStore(t, pool, opts))
				tokA, errA := a.TokenSource(key).TokenContext(ctx)
				if fake.Stats().Refreshes > before.Refreshes {
					stored, lerr := newStore(t, pool, opts).Load(ctx, key)
					var saveErr *dropboxsign.SaveError
					if !errors.As(errA, &saveErr) && (tokA == nil || lerr != nil || stored.RefreshToken != tokA.RefreshToken) {
						t.Errorf("the first replica refreshed (%v), but its new token is not stored (Load: %v) and no SaveError says so", errA, lerr)
					}
				}
				b := dropboxsign.NewAccounts(ctx, fake.Config(), newStore(t, pool, opts))
				_, errB := b.TokenSource(key).TokenContext(ctx)
				if n := fake.Stats().StaleRefreshTokens - before.StaleRefreshTokens; n != 0 {
					t.Errorf("%d spent refresh tokens presented (first replica: %v; second: %v)", n, errA, errB)
				}

				// A new login repairs the row.
				code := fakeCode(t, fake, "st")
				tok, err := a.Login(ctx, key, code, "st")
				if err != nil {
					t.Fatalf("Login over the edited row: %v", err)
				}
				if got, err := newStore(t, pool, opts).Load(ctx, key); err != nil || got.RefreshToken != tok.RefreshToken || got.AccessToken != tok.AccessToken {
					t.Fatalf("after Login, Load: %v; want the login's token", err)
				}
				c := dropboxsign.NewAccounts(ctx, fake.Config(), newStore(t, pool, opts))
				if got, err := c.TokenSource(key).TokenContext(ctx); err != nil || got.AccessToken != tok.AccessToken {
					t.Errorf("a third replica after the login: %v; want the login's token", err)
				}
				if n := fake.Stats().StaleRefreshTokens - before.StaleRefreshTokens; n != 0 {
					t.Errorf("%d spent refresh tokens presented", n)
				}
			})
		}
	}
}

// Every way a row can disagree with itself in a table without the DDL's
// CHECK (an app's own migrations may leave it out): what Load says and
// what Save and MarkRefused compare agree. A token Load returns is the
// prev that Save finds; a refusal mark or nothing is what Save with prev
// nil (a new login) replaces, and no token is found there; a row Load
// cannot read, Replace repairs. And Accounts.Login repairs every one.
func TestEveryRowShapeLoadAndSaveAgree(t *testing.T) {
	_, pool, opts := setUp(t)
	ctx := ctxFor(t)
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	store := newStore(t, pool, opts)
	table := tokensTable(opts)
	// The constraint is the table's one CHECK; PostgreSQL names it.
	var check string
	if err := pool.QueryRow(ctx, `SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'c'`, table).Scan(&check); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, `ALTER TABLE `+table+` DROP CONSTRAINT `+check)

	shapes := []struct{ name, set string }{ // applied to a row holding a token
		{"refused, with its token", `refused_at = now()`},
		{"refused, with a token and no fingerprint", `refused_at = now(), fingerprint = NULL`},
		{"refused, with a fingerprint", `refused_at = now(), token = NULL`},
		{"nothing at all", `token = NULL, fingerprint = NULL`},
		{"a fingerprint only", `token = NULL`},
		{"a token without a fingerprint", `fingerprint = NULL`},
		{"a token with another's fingerprint", `fingerprint = 'edited by hand'`},
		{"not a token, with a fingerprint", `token = 'not a token'::bytea`},
	}
	for i, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			shape := func(key string) *oauth2.Token {
				orig := &oauth2.Token{AccessToken: "at-orig-" + key, RefreshToken: "rt-orig-" + key}
				if err := store.Save(ctx, key, nil, orig); err != nil {
					t.Fatal(err)
				}
				mustExec(t, pool, `UPDATE `+table+` SET `+sh.set+` WHERE account = $1`, key)
				return orig
			}
			key := fmt.Sprintf("store-%d", i)
			orig := shape(key)
			next := &oauth2.Token{AccessToken: "at-next-" + key, RefreshToken: "rt-next-" + key}
			got, lerr := store.Load(ctx, key)
			var refused *dropboxsign.RefusedError
			switch {
			case lerr == nil:
				if err := store.Save(ctx, key, nil, next); !errors.Is(err, dropboxsign.ErrConflict) {
					t.Errorf("Load returned a token, and Save with prev nil: %v; want ErrConflict", err)
				}
				if err := store.Save(ctx, key, got, next); err != nil {
					t.Errorf("Load returned a token, and Save with it as prev: %v", err)
				}
			case errors.Is(lerr, dropboxsign.ErrNotFound) || errors.As(lerr, &refused):
				if err := store.Save(ctx, key, orig, next); !errors.Is(err, dropboxsign.ErrConflict) {
					t.Errorf("Load: %v, and Save with a prev: %v; want ErrConflict", lerr, err)
				}
				if err := store.MarkRefused(ctx, key, orig); !errors.Is(err, dropboxsign.ErrConflict) {
					t.Errorf("Load: %v, and MarkRefused: %v; want ErrConflict", lerr, err)
				}
				if err := store.Save(ctx, key, nil, next); err != nil {
					t.Errorf("Load: %v, and Save with prev nil: %v", lerr, err)
				}
			default:
				if err := store.Replace(ctx, key, next); err != nil {
					t.Errorf("Load: %v, and Replace: %v", lerr, err)
				}
			}
			if got, err := store.Load(ctx, key); err != nil || got.RefreshToken != next.RefreshToken {
				t.Errorf("Load after the repair: %v; want the new token", err)
			}

			key = fmt.Sprintf("login-%d", i)
			shape(key)
			accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
			code := fakeCode(t, fake, "st")
			tok, err := accounts.Login(ctx, key, code, "st")
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if got, err := store.Load(ctx, key); err != nil || got.RefreshToken != tok.RefreshToken {
				t.Errorf("Load after Login: %v; want the login's token", err)
			}
		})
	}
}

// The fingerprint column is edited while a replica's refresh waits on
// Dropbox Sign: the replica's new token is stored or reported (a
// *SaveError, which Shutdown names too), another replica presents no spent
// refresh token, and a new login repairs the row.
func TestRowEditedDuringARefresh(t *testing.T) {
	_, pool, opts := setUp(t)
	ctx := ctxFor(t)
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	const key = "bob"
	if err := newStore(t, pool, opts).Save(ctx, key, nil, expired(fake.IssueToken())); err != nil {
		t.Fatal(err)
	}
	a := dropboxsign.NewAccounts(ctx, fake.Config(), newStore(t, pool, opts))
	release := fake.HoldTokenResponses()
	type result struct {
		tok *oauth2.Token
		err error
	}
	got := make(chan result, 1)
	go func() {
		tok, err := a.TokenSource(key).TokenContext(ctx)
		got <- result{tok, err}
	}()
	if err := fake.WaitTokenRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, `UPDATE `+tokensTable(opts)+` SET fingerprint = 'edited by hand' WHERE account = $1`, key)
	release()
	r := <-got
	if fake.Stats().Refreshes == 0 {
		t.Fatalf("the refresh did not happen: %v", r.err)
	}
	var saveErr *dropboxsign.SaveError
	stored, lerr := newStore(t, pool, opts).Load(ctx, key)
	notStored := r.tok == nil || lerr != nil || stored.RefreshToken != r.tok.RefreshToken
	if notStored && !errors.As(r.err, &saveErr) {
		t.Errorf("the new token is not stored (Load: %v) and no SaveError says so (%v)", lerr, r.err)
	}
	b := dropboxsign.NewAccounts(ctx, fake.Config(), newStore(t, pool, opts))
	_, errB := b.TokenSource(key).TokenContext(ctx)
	if n := fake.Stats().StaleRefreshTokens; n != 0 {
		t.Errorf("%d spent refresh tokens presented (second replica: %v)", n, errB)
	}
	if err := a.Shutdown(ctx); notStored && (err == nil || !strings.Contains(err.Error(), key)) {
		t.Errorf("Shutdown: %v; want it to name %q, whose new token is not stored", err, key)
	}

	c := dropboxsign.NewAccounts(ctx, fake.Config(), newStore(t, pool, opts))
	tok, err := c.Login(ctx, key, fakeCode(t, fake, "st"), "st")
	if err != nil {
		t.Fatalf("Login over the edited row: %v", err)
	}
	if got, err := newStore(t, pool, opts).Load(ctx, key); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Errorf("after Login, Load: %v; want the login's token", err)
	}
}
