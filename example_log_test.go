package dropboxsign_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// WithLogger logs what the sources do with log/slog, at levels meant for
// production at Info: here a refresh, one line with the account and what
// the answer said. (The handler drops times and durations, which change
// from run to run, so that the example can show its output.)
func ExampleWithLogger() {
	fake := dropboxsigntest.NewServer()
	defer fake.Close()
	ctx := context.Background()
	store := dropboxsigntest.NewStore()
	tok := fake.IssueToken()
	tok.AccessToken = "" // due for a refresh
	store.Save(ctx, "user-1", nil, tok)

	text := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if k := a.Value.Kind(); k == slog.KindTime || k == slog.KindDuration {
				return slog.Attr{}
			}
			return a
		},
	})
	// Records are written after the fact, from a goroutine of their own,
	// so that a slow handler never delays a refresh; the example waits for
	// its line (a program has no need to).
	written := make(chan struct{}, 1)
	logger := slog.New(notifying{text, written})

	accounts := dropboxsign.NewAccounts(ctx, fake.Config(), store, dropboxsign.WithLogger(logger))
	defer accounts.Shutdown(ctx)
	resp, err := accounts.Client("user-1").Get(fake.AccountURL())
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	<-written
	fmt.Println(resp.Status)
	// Output:
	// level=INFO msg="dropboxsign: token refreshed" event=token_request account=user-1 op=refresh status=200 rate_limit_remaining=99 rate_limit_limit=100
	// 200 OK
}

// notifying is a slog.Handler that tells when it has written a record.
type notifying struct {
	slog.Handler
	written chan<- struct{}
}

func (h notifying) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	select {
	case h.written <- struct{}{}:
	default:
	}
	return err
}
