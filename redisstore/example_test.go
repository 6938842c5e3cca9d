package redisstore_test

import (
	"context"
	"encoding/base64"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

// The setup of each replica of a fleet: one Redis for all of them, tokens
// sealed at rest, one Accounts per process. Every replica runs the same
// code; Redis makes them refresh each account once per expiry between them.
//
// This example has no Output line: it needs a Redis server, which an example
// cannot start portably, so go test compiles it but does not run it. This
// module's tests run the same setup against a real redis-server that they
// start on loopback.
func Example() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer client.Close() // after accounts.Shutdown (deferred below, so it runs first)

	// The key, 32 bytes, from the secret manager: the same on every replica.
	key, err := base64.StdEncoding.DecodeString(os.Getenv("TOKEN_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := dropboxsign.NewSealer(key)
	if err != nil {
		log.Fatal(err)
	}
	store, err := redisstore.New(client, redisstore.Options{
		Prefix:   "myapp:dropboxsign:", // apps that share a Redis use different prefixes
		Sealer:   sealer,
		LeaseTTL: 10 * time.Second, // how long others wait for a replica that died refreshing
	})
	if err != nil {
		log.Fatal(err)
	}

	conf := &oauth2.Config{
		ClientID:     os.Getenv("DROPBOX_SIGN_CLIENT_ID"),
		ClientSecret: os.Getenv("DROPBOX_SIGN_CLIENT_SECRET"),
		Endpoint:     dropboxsign.Endpoint,
	}
	accounts := dropboxsign.NewAccounts(ctx, conf, store)
	defer accounts.Shutdown(ctx) // after the HTTP server's Shutdown: see Accounts.Shutdown

	// In a handler, for the app's user "user-42" (stored by Accounts.Login
	// in the OAuth callback, on whichever replica took it):
	resp, err := accounts.Client("user-42").Get(dropboxsign.APIBaseURL + "/account")
	if err != nil {
		log.Print(err) // dropboxsign.Classify(err) tells what to do
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		log.Print(resp.Status)
	}
}

// With Redis Cluster, the same: New takes any redis.UniversalClient (each
// command and script of the store touches one key, and listing visits every
// master). No Output line, as for Example.
func Example_cluster() {
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: []string{"redis-0:6379", "redis-1:6379", "redis-2:6379"},
	})
	defer client.Close()
	key, _ := base64.StdEncoding.DecodeString(os.Getenv("TOKEN_KEY"))
	sealer, err := dropboxsign.NewSealer(key)
	if err != nil {
		log.Fatal(err)
	}
	store, err := redisstore.New(client, redisstore.Options{Prefix: "myapp:dropboxsign:", Sealer: sealer})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	accounts := dropboxsign.NewAccounts(ctx, &oauth2.Config{
		ClientID:     os.Getenv("DROPBOX_SIGN_CLIENT_ID"),
		ClientSecret: os.Getenv("DROPBOX_SIGN_CLIENT_SECRET"),
		Endpoint:     dropboxsign.Endpoint,
	}, store)
	defer accounts.Shutdown(ctx)
	_ = accounts.Client("user-42") // as in Example
}
