package dropboxsign_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// Issue 21's adversarial review: what held, pinned.

// afterLoad runs a hook after each successful Load of the store it wraps:
// between a re-seal's read and its write.
type afterLoad struct {
	dropboxsign.SealInspector
	hook func(key string, tok *oauth2.Token)
}

func (a *afterLoad) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	tok, err := a.SealInspector.Load(ctx, key)
	if err == nil {
		a.hook(key, tok)
	}
	return tok, err
}

// Held: a disconnection, a refusal mark or a new login landing between a
// re-seal's read and its write is left as it is (counted Changed), never
// written over; the re-seal goes on to the next token.
func TestReview21ResealLeavesADisconnectionARefusalAndALoginAlone(t *testing.T) {
	_, fs := resealDir(t, []string{"d", "m", "r", "z"}, nil)
	ctx := context.Background()
	login := resealToken(77)
	h := &afterLoad{SealInspector: fs, hook: func(key string, tok *oauth2.Token) {
		var err error
		switch key {
		case "d":
			err = fs.Disconnect(ctx, key)
		case "m":
			err = fs.MarkRefused(ctx, key, tok)
		case "r":
			err = fs.Replace(ctx, key, login)
		}
		if err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}}
	p, err := dropboxsign.Reseal(ctx, h, dropboxsign.ResealOptions{PerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if want := (dropboxsign.ResealProgress{Visited: 4, Resealed: 1, Changed: 3, Last: "z"}); p != want {
		t.Errorf("Reseal = %+v, want %+v", p, want)
	}
	var de *dropboxsign.DisconnectedError
	if _, err := fs.Load(ctx, "d"); !errors.As(err, &de) {
		t.Errorf("d after the re-seal: %v, want still disconnected", err)
	}
	var re *dropboxsign.RefusedError
	if _, err := fs.Load(ctx, "m"); !errors.As(err, &re) {
		t.Errorf("m after the re-seal: %v, want still refused", err)
	}
	if got, err := fs.Load(ctx, "r"); err != nil || got.RefreshToken != login.RefreshToken {
		t.Errorf("r after the re-seal: %v, %v; want the login's token", got, err)
	}
}
