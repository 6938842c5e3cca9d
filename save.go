package dropboxsign

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// save persists next.tok with the WithOnRefresh function and records the
// outcome in next, which is not yet published. failures counts the failed
// saves before this one, for the backoff.
func (s *TokenSource) save(next *state, failures int, now time.Time) {
	next.saveErr, next.saveFailures, next.saveRetryAt = nil, 0, time.Time{}
	if s.opts.onRefresh == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.timeout)
	defer cancel()
	if err := callOnRefresh(ctx, s.opts.onRefresh, next.tok); err != nil {
		next.saveErr = &SaveError{Err: err}
		next.saveFailures = failures + 1
		next.saveRetryAt = now.Add(backoff(next.saveFailures))
	}
}

// callOnRefresh runs the user's function on a goroutine of its own, so that
// a panic or runtime.Goexit in it becomes an error: the run goes on, the new
// token is published, and no caller waits forever.
func callOnRefresh(ctx context.Context, fn func(context.Context, *oauth2.Token) error, tok *oauth2.Token) error {
	done := make(chan error, 1)
	go func() {
		returned := false
		defer func() {
			if returned {
				return
			}
			if r := recover(); r != nil {
				done <- fmt.Errorf("dropboxsign: the WithOnRefresh function panicked: %v", r)
			} else {
				done <- fmt.Errorf("dropboxsign: the WithOnRefresh function exited without returning")
			}
		}()
		err := fn(ctx, tok)
		returned = true
		done <- err
	}()
	return <-done
}
