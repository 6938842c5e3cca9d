package redisstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/redisstore"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

// Disconnect leaves, whatever shape the key was in (and a key of every
// other type), a hash holding only {disconnected: milliseconds by Redis's
// clock}: nothing of the grant. A mark keeps its time when marked again (a
// mark whose time is unreadable gets one). Load then says disconnected,
// since that time; no Save or MarkRefused, whatever it compares with,
// changes it; Forget erases it only if it is older than the time given;
// Replace overwrites it.
func TestDisconnectInEveryShape(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx := ctxFor(t)
	for _, sealed := range []bool{false, true} {
		opts := redisstore.Options{Prefix: prefix()}
		if sealed {
			opts.Sealer = mustSealer(t, bytes.Repeat([]byte{5}, 32))
		}
		store, err := redisstore.New(c, opts)
		if err != nil {
			t.Fatal(err)
		}
		x := &oauth2.Token{AccessToken: "at-x", RefreshToken: "rt-x", Expiry: time.Now().Add(time.Hour).Round(0)}
		y := &oauth2.Token{AccessToken: "at-y", RefreshToken: "rt-y"}
		z := &oauth2.Token{AccessToken: "at-z", RefreshToken: "rt-z"}
		for i, sh := range shapes {
			t.Run(fmt.Sprintf("sealed=%v/%s", sealed, sh.name), func(t *testing.T) {
				key := fmt.Sprint("shape-", i)
				rk := opts.Prefix + "token:" + key
				mustDo(c.Del(ctx, rk).Err())
				sh.make(ctx, c, store, key, rk, x, y)
				// The mark's time: the one there, for a mark with one; else
				// Redis's clock during Disconnect.
				var kept time.Time
				var was *dropboxsign.DisconnectedError
				if _, err := store.Load(ctx, key); errors.As(err, &was) {
					kept = was.Since
				}
				from := redisNow(t, c)
				if err := store.Disconnect(ctx, key); err != nil {
					t.Fatalf("Disconnect: %v", err)
				}
				to := redisNow(t, c)
				rec := record(t, c, rk)
				if len(rec) != 1 || rec["disconnected"] == "" {
					t.Fatalf("after Disconnect the key holds %v; want only a disconnected field", rec)
				}
				_, err := store.Load(ctx, key)
				var d *dropboxsign.DisconnectedError
				if !errors.As(err, &d) || !errors.Is(err, dropboxsign.ErrDisconnected) || d.Key != key {
					t.Fatalf("Load after Disconnect: %v, want a *DisconnectedError for %q", err, key)
				}
				switch {
				case !kept.IsZero() && !d.Since.Equal(kept):
					t.Errorf("the mark's time is %v, want the one it had, %v", d.Since, kept)
				case kept.IsZero() && (d.Since.Before(from.Truncate(time.Millisecond)) || d.Since.After(to)):
					t.Errorf("the mark's time is %v, want Redis's clock during Disconnect, between %v and %v", d.Since, from, to)
				}
				for _, prev := range []*oauth2.Token{nil, x, y} {
					if err := store.Save(ctx, key, prev, z); !errors.Is(err, dropboxsign.ErrConflict) {
						t.Errorf("Save(prev = %v) over the mark: %v, want ErrConflict", prev, err)
					}
					if prev != nil {
						if err := store.MarkRefused(ctx, key, prev); !errors.Is(err, dropboxsign.ErrConflict) {
							t.Errorf("MarkRefused(%v) over the mark: %v, want ErrConflict", prev, err)
						}
					}
				}
				if err := store.Disconnect(ctx, key); err != nil {
					t.Errorf("Disconnect again: %v", err)
				}
				if err := store.Forget(ctx, key, d.Since); !errors.Is(err, dropboxsign.ErrConflict) {
					t.Errorf("Forget(before = the mark's time): %v, want ErrConflict", err)
				}
				if got := record(t, c, rk); !maps.Equal(got, rec) {
					t.Fatalf("after the conflicting writes and a second Disconnect the key holds %v, want %v as before", got, rec)
				}
				if err := store.Forget(ctx, key, d.Since.Add(time.Nanosecond)); err != nil {
					t.Errorf("Forget(before = just after the mark): %v", err)
				}
				if n := c.Exists(ctx, rk).Val(); n != 0 {
					t.Errorf("Forget left the key: %v", record(t, c, rk))
				}
				if err := store.Forget(ctx, key, time.Now()); err != nil {
					t.Errorf("Forget of nothing: %v, want nil", err)
				}
				if err := store.Disconnect(ctx, key); err != nil {
					t.Fatal(err)
				}
				if err := store.Replace(ctx, key, z); err != nil {
					t.Errorf("Replace over the mark: %v", err)
				}
				if got, err := store.Load(ctx, key); err != nil || !sameToken(got, z) {
					t.Errorf("after Replace, Load says %s; want z", loaded(got, err))
				}
			})
		}
	}
}

// Forget erases nothing but a disconnection mark: on a token, a refusal
// mark or a blob it cannot open it is a conflict, on what Load reads as
// nothing (another application's hash, say) it does nothing and says nil,
// and a key of another type is an error that says so. A mark whose time is
// unreadable is a conflict until Disconnect stamps it.
func TestForgetInEveryShape(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx := ctxFor(t)
	p := prefix()
	store, err := redisstore.New(c, redisstore.Options{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	x := &oauth2.Token{AccessToken: "at-x", RefreshToken: "rt-x"}
	y := &oauth2.Token{AccessToken: "at-y", RefreshToken: "rt-y"}
	future := time.Now().Add(time.Hour)
	for i, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			key := fmt.Sprint("forget-", i)
			rk := p + "token:" + key
			sh.make(ctx, c, store, key, rk, x, y)
			before := rawDump(t, c, rk)
			err := store.Forget(ctx, key, future)
			switch {
			case sh.name == "a disconnection mark that is not a time":
				if !errors.Is(err, dropboxsign.ErrConflict) {
					t.Fatalf("Forget: %v, want ErrConflict", err)
				}
				if err := store.Disconnect(ctx, key); err != nil {
					t.Fatal(err)
				}
				if err := store.Forget(ctx, key, future); err != nil {
					t.Errorf("Forget once Disconnect stamped the mark: %v", err)
				}
				return
			case sh.loads == "disconnected":
				if err != nil {
					t.Errorf("Forget: %v, want nil", err)
				}
				if n := c.Exists(ctx, rk).Val(); n != 0 {
					t.Errorf("Forget left the key")
				}
				return
			case sh.loads == "nothing":
				if err != nil {
					t.Errorf("Forget: %v, want nil", err)
				}
			case sh.loads == "error" && sh.skippedAs != "" && sh.skippedAs != "hash":
				if err == nil || errors.Is(err, dropboxsign.ErrConflict) || !strings.Contains(err.Error(), "holds a "+sh.skippedAs) {
					t.Errorf("Forget: %v, want an error naming the type", err)
				}
			default:
				if !errors.Is(err, dropboxsign.ErrConflict) {
					t.Errorf("Forget where Load finds %s: %v, want ErrConflict", sh.loads, err)
				}
			}
			if after := rawDump(t, c, rk); after != before {
				t.Errorf("Forget changed the key")
			}
		})
	}
}

// With WaitReplicas, Disconnect waits for replicas as Save does: a server
// without any makes it an error, though the mark is written, and logged
// (a watcher reports it).
func TestDisconnectWaitsForReplicas(t *testing.T) {
	r := startRedis(t)
	c := r.Client(t)
	ctx := ctxFor(t)
	p := prefix()
	store, err := redisstore.New(c, redisstore.Options{Prefix: p, WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, store, time.Hour)
	waitFor(t, "the watcher subscribed", func() bool { return c.PubSubNumSub(ctx, p+"changes").Val()[p+"changes"] == 1 })
	err = store.Disconnect(ctx, "acct")
	if err == nil || !strings.Contains(err.Error(), "written, but only 0 of 1 replicas had it") {
		t.Errorf("Disconnect waiting for a replica there is not: %v", err)
	}
	if _, err := store.Load(ctx, "acct"); !errors.Is(err, dropboxsign.ErrDisconnected) {
		t.Errorf("marked all the same? Load says %v", err)
	}
	w.await(t, "acct reported", isKey("acct"))
}

// redisNow is Redis's clock.
func redisNow(t *testing.T, c redis.Cmdable) time.Time {
	now, err := c.Time(ctxFor(t)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// record returns the fields of the hash at rk.
func record(t *testing.T, c redis.Cmdable, rk string) map[string]string {
	f, err := c.HGetAll(ctxFor(t), rk).Result()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// rawDump returns what DUMP says of rk: its type and contents.
func rawDump(t *testing.T, c redis.Cmdable, rk string) string {
	v, err := c.Dump(ctxFor(t), rk).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return v
}
