package kmsseal_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/kmsseal"
	"gocloud.dev/secrets"
	_ "gocloud.dev/secrets/localsecrets" // an app imports its KMS's driver: awskms, gcpkms, azurekeyvault, hashivault
	"golang.org/x/oauth2"
)

// The KEK of these examples is a local one (base64key://), so that they
// run offline; an app opens its KMS's URL, such as
// "awskms:///arn:aws:kms:us-east-1:111122223333:key/…".
const (
	kekURL    = "base64key://smGbjm71Nxd1Ig5FS0wj9SlbzAIrnolCz9bQQ6uAhl4="
	newKEKURL = "base64key://ZXhhbXBsZS1rZXktZm9yLWRvY3Mtb25seS0zMmJ5dGU="
)

// An app opens its KMS's keeper, unwraps its data keys once at start-up,
// and gives the Sealer to its store: tokens are then sealed and opened
// with no KMS call.
func Example() {
	ctx := context.Background()
	keeper, err := secrets.OpenKeeper(ctx, kekURL)
	if err != nil {
		log.Fatal(err)
	}
	defer keeper.Close()

	// Once, by the operator: a data key, wrapped, kept in configuration
	// (DROPBOX_SIGN_WRAPPED_KEYS, say).
	wrapped, err := kmsseal.NewDataKey(ctx, keeper)
	if err != nil {
		log.Fatal(err)
	}
	config := kmsseal.FormatWrappedKeys(wrapped)

	// At each start of the app.
	keys, err := kmsseal.ParseWrappedKeys(config)
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := kmsseal.NewSealer(ctx, keeper, keys...)
	if err != nil {
		log.Fatal(err) // a KMS down or refusing: the process does not start
	}
	dir, err := os.MkdirTemp("", "tokens")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := dropboxsign.NewFileStore(dir, dropboxsign.WithSealer(sealer))
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Save(ctx, "alice", nil, &oauth2.Token{AccessToken: "a", RefreshToken: "r"}); err != nil {
		log.Fatal(err)
	}
	report, err := dropboxsign.Census(ctx, store)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("tokens:", report.Tokens, "under the sealing key:", report.ByKey[sealer.KeyIDs()[0]])
	// Output: tokens: 1 under the sealing key: 1
}

// NewSealer takes the wrapped keys newest first: the first seals, every
// one opens (during a data key rotation, [new, old]).
func ExampleNewSealer() {
	ctx := context.Background()
	keeper, err := secrets.OpenKeeper(ctx, kekURL)
	if err != nil {
		log.Fatal(err)
	}
	defer keeper.Close()
	oldKey, _ := kmsseal.NewDataKey(ctx, keeper)
	newKey, _ := kmsseal.NewDataKey(ctx, keeper)

	before, err := kmsseal.NewSealer(ctx, keeper, oldKey)
	if err != nil {
		log.Fatal(err)
	}
	blob, _ := before.Seal("alice", &oauth2.Token{AccessToken: "a", RefreshToken: "r"})

	during, err := kmsseal.NewSealer(ctx, keeper, newKey, oldKey)
	if err != nil {
		log.Fatal(err)
	}
	tok, err := during.Open("alice", blob)
	fmt.Println("opens a token the old key sealed:", err == nil && tok.RefreshToken == "r")
	_, current := during.Sealed(blob)
	fmt.Println("current (no re-seal needed):", current)

	_, err = kmsseal.NewSealer(ctx, keeper, newKey, []byte("not a wrapped key, far too short"))
	fmt.Println(err)
	// Output:
	// opens a token the old key sealed: true
	// current (no re-seal needed): false
	// kmsseal: unwrapping wrapped data key 2 of 2 with the KMS (code Unknown, class temporary): secrets (code=Unknown): localsecrets: Decrypt failed (made under another key-encryption key, damaged, or the KMS unreachable or refusing this caller)
}

// Rewrap moves a data key to a new key-encryption key (a rotated KMS key,
// or another KMS): the data key and its ID are the same, so no token is
// sealed again; the new wrapped key replaces the old in configuration.
func ExampleRewrap() {
	ctx := context.Background()
	oldKEK, err := secrets.OpenKeeper(ctx, kekURL)
	if err != nil {
		log.Fatal(err)
	}
	defer oldKEK.Close()
	newKEK, err := secrets.OpenKeeper(ctx, newKEKURL)
	if err != nil {
		log.Fatal(err)
	}
	defer newKEK.Close()

	wrapped, _ := kmsseal.NewDataKey(ctx, oldKEK)
	rewrapped, err := kmsseal.Rewrap(ctx, oldKEK, newKEK, wrapped)
	if err != nil {
		log.Fatal(err)
	}
	before, _ := kmsseal.DataKeyID(ctx, oldKEK, wrapped)
	after, _ := kmsseal.DataKeyID(ctx, newKEK, rewrapped)
	fmt.Println("same data key:", before == after, len(after), "hex digits")
	_, err = kmsseal.NewSealer(ctx, oldKEK, rewrapped)
	fmt.Println("the old KEK opens the rewrapped key:", err == nil)
	// Output:
	// same data key: true 16 hex digits
	// the old KEK opens the rewrapped key: false
}
