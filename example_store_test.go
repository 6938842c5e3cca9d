package dropboxsign_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"golang.org/x/oauth2"
)

// Processes share each account's token through a Store: here two sources
// stand for two replicas on one machine, sharing a FileStore. The first that
// needs a refresh makes it under the store's lock and stores the new token;
// the second adopts that token from the store, without a token request of
// its own, and never presents the refresh token the first one has spent.
func ExampleWithStore() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	dir, _ := os.MkdirTemp("", "tokens")
	defer os.RemoveAll(dir)
	store, err := dropboxsign.NewFileStore(dir) // e.g. /var/lib/myapp/tokens
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	// After a login, the app stores the grant once (prev nil: nothing
	// was stored before).
	tok := fake.IssueToken()
	tok.AccessToken = "" // due for a refresh
	if err := store.Save(ctx, "user-1", nil, tok); err != nil {
		panic(err)
	}

	// Each replica: t nil, the store is the source of truth.
	replica1 := dropboxsign.NewTokenSource(ctx, fake.Config(), nil, dropboxsign.WithStore(store, "user-1"))
	replica2 := dropboxsign.NewTokenSource(ctx, fake.Config(), nil, dropboxsign.WithStore(store, "user-1"))

	t1, err := replica1.TokenContext(ctx) // refreshes, saves, then hands the token out
	if err != nil {
		panic(err)
	}
	t2, err := replica2.TokenContext(ctx) // finds it in the store
	if err != nil {
		panic(err)
	}
	fmt.Println("same token:", t1.AccessToken == t2.AccessToken)
	fmt.Println("refreshes:", fake.Stats().Refreshes)
	// Output:
	// same token: true
	// refreshes: 1
}

// With WithSealer, a FileStore keeps tokens sealed with AES-256-GCM: a token
// file shows no token to a backup, an operator or another program that lacks
// the key. Every replica is given the same 32-byte key, from the app's
// secret manager.
func ExampleWithSealer() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	dir, _ := os.MkdirTemp("", "tokens")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	key := make([]byte, 32)
	rand.Read(key) // in production: from the secret manager, the same on every replica
	sealer, err := dropboxsign.NewSealer(key)
	if err != nil {
		panic(err)
	}
	store, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(sealer))
	if err != nil {
		panic(err)
	}

	first := fake.IssueToken()
	first.AccessToken = "" // due for a refresh
	store.Save(ctx, "user-1", nil, first)
	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store)
	defer accounts.Shutdown(ctx)
	tok, err := accounts.TokenSource("user-1").TokenContext(ctx) // refreshes, stores it sealed
	if err != nil {
		panic(err)
	}

	file, _ := os.ReadFile(store.Path("user-1"))
	fmt.Println("refresh token in the file:", bytes.Contains(file, []byte(tok.RefreshToken)))
	fmt.Println("access token in the file:", bytes.Contains(file, []byte(tok.AccessToken)))

	withoutKey, _ := dropboxsign.NewFileStore(dir)
	_, err = withoutKey.Load(ctx, "user-1")
	fmt.Println("opens without the key:", err == nil)
	// Output:
	// refresh token in the file: false
	// access token in the file: false
	// opens without the key: false
}

// A Sealer serves stores of your own as well (Seal before writing, Open
// after reading), and its keys rotate across a running fleet in three
// deploys: [old, new] everywhere, so that every replica opens what new will
// seal; then [new, old], so that new seals; then [new] alone, once every
// token has been saved again.
func ExampleSealer() {
	oldKey, newKey := make([]byte, 32), make([]byte, 32)
	rand.Read(oldKey)
	rand.Read(newKey)
	tok := &oauth2.Token{AccessToken: "at_example", RefreshToken: "rt_example", TokenType: "Bearer"}

	before, _ := dropboxsign.NewSealer(oldKey)
	blob, _ := before.Seal("user-1", tok) // what the store holds

	during, _ := dropboxsign.NewSealer(newKey, oldKey)
	opened, err := during.Open("user-1", blob)
	fmt.Println("old seal opens:", err == nil && opened.RefreshToken == tok.RefreshToken)
	_, current := during.Sealed(blob)
	fmt.Println("sealed with the new key:", current)
	blob, _ = during.Seal("user-1", opened) // the next save seals it with the new key
	_, current = during.Sealed(blob)
	fmt.Println("after the next save:", current)

	after, _ := dropboxsign.NewSealer(newKey)
	_, err = after.Open("user-1", blob)
	fmt.Println("opens with the new key alone:", err == nil)
	_, err = after.Open("user-2", blob)
	fmt.Println("under another account:", err)
	// Output:
	// old seal opens: true
	// sealed with the new key: false
	// after the next save: true
	// opens with the new key alone: true
	// under another account: the stored token does not open: tampered with, or stored under another account
}
