package lease

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// server is a lease held in memory: one owner at a time, no expiry (the
// tests drive loss by hand).
type server struct {
	mu       sync.Mutex
	owner    string
	renewals chan string
	released chan string
}

func newServer() *server {
	return &server{renewals: make(chan string, 100), released: make(chan string, 10)}
}

func (s *server) ops() Ops {
	return Ops{
		Take: func(_ context.Context, owner string) (bool, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.owner != "" {
				return false, nil
			}
			s.owner = owner
			return true, nil
		},
		Renew: func(_ context.Context, owner string) (bool, error) {
			s.mu.Lock()
			held := s.owner == owner
			s.mu.Unlock()
			s.renewals <- owner
			return held, nil
		},
		Release: func(_ context.Context, owner string) {
			s.mu.Lock()
			if s.owner == owner {
				s.owner = ""
			}
			s.mu.Unlock()
			s.released <- owner
		},
	}
}

func (s *server) lose() {
	s.mu.Lock()
	s.owner = ""
	s.mu.Unlock()
}

// A second taker waits until the first unlocks; unlock releases once, in
// the background, however often it is called.
func TestTakeWaitsForTheHolderAndUnlockReleasesOnce(t *testing.T) {
	s := newServer()
	ctx := context.Background()
	unlock, err := Take(ctx, time.Hour, s.ops())
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan func(), 1)
	go func() {
		u, err := Take(ctx, time.Hour, s.ops())
		if err != nil {
			t.Error(err)
		}
		second <- u
	}()
	select {
	case <-second:
		t.Fatal("a second Take got a held lease")
	case <-time.After(50 * time.Millisecond): // a window for the bug to show, not a pass condition
	}
	unlock()
	unlock()
	first := <-s.released
	u := <-second
	u()
	if other := <-s.released; other == first {
		t.Error("both holders released as the same owner")
	}
	select {
	case extra := <-s.released:
		t.Errorf("a second release by %s", extra)
	default:
	}
}

// The holder renews its lease while it holds it, and stops renewing once a
// renewal finds the lease gone.
func TestRenewalStopsWhenTheLeaseIsGone(t *testing.T) {
	s := newServer()
	unlock, err := Take(context.Background(), 30*time.Millisecond, s.ops())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	<-s.renewals
	<-s.renewals // renewed, twice, while held
	s.lose()
	for range 3 { // at most the renewal under way and the one that finds it gone
		select {
		case <-s.renewals:
		case <-time.After(300 * time.Millisecond): // 30 renewal periods
			return // renewing has stopped
		}
	}
	t.Error("still renewing a lease that is gone")
}

// A taker whose context ends while it waits gets the context's error; a
// failing server's error is returned as it is.
func TestTakeEndsWithItsContextOrTheServersError(t *testing.T) {
	s := newServer()
	unlock, _ := Take(context.Background(), time.Hour, s.ops())
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := Take(ctx, time.Hour, s.ops()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting past the context: %v", err)
	}
	broken := errors.New("server down")
	ops := s.ops()
	ops.Take = func(context.Context, string) (bool, error) { return false, broken }
	if _, err := Take(context.Background(), time.Hour, ops); !errors.Is(err, broken) {
		t.Errorf("server down: %v", err)
	}
}
