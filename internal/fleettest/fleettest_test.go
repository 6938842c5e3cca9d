package fleettest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a reporter that keeps what the checks say.
type recorder struct{ logs, errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// outageReport: 2 workers, 2 accounts; worker 1 still presented account/01's
// seed (serving until 3.6 s) before the fault at 3 s, and a newer token
// (serving until 6 s) only after it; every other pair held a token serving
// until 5.5 s.
func outageReport(failed ...Failure) Report {
	return Report{Started: t0, workers: 2, keys: []string{"account/00", "account/01"}, FailedCalls: failed,
		holds: []hold{
			{0, "account/00", at(0.5), at(3.6)}, {0, "account/00", at(2.1), at(5.5)},
			{0, "account/01", at(2.2), at(5.5)},
			{1, "account/00", at(2.3), at(5.5)},
			{1, "account/01", at(0.6), at(3.6)}, {1, "account/01", at(3.5), at(6)},
		}}
}

func TestHeldAt(t *testing.T) {
	held := outageReport().HeldAt(at(3))
	if len(held) != 4 {
		t.Fatalf("%d holds, want one per worker and account: %v", len(held), held)
	}
	if h := held[0]; h.Worker != 1 || h.Key != "account/01" || !h.UsableUntil.Equal(at(3.6)) {
		t.Errorf("earliest: %+v; want worker 1's seed of account/01, until 3.6 s", h)
	}
	for _, h := range held[1:] {
		if !h.UsableUntil.Equal(at(5.5)) {
			t.Errorf("%+v; want the newest token presented before 3 s, until 5.5 s", h)
		}
	}
	if h := outageReport().HeldAt(at(0.1)); !h[0].UsableUntil.IsZero() {
		t.Errorf("before any call: %+v; want nothing held", h[0])
	}
}

func TestCheckOutage(t *testing.T) {
	for _, c := range []struct {
		name       string
		back       float64
		failed     []Failure
		wantErrs   int
		wantInLogs string
	}{
		{"fast machine, no failure", 3.5, nil, 0, "no call may fail"},
		{"fast machine, a failure", 3.5, []Failure{{Worker: 0, Key: "account/00", Calls: 2, First: at(4), Last: at(4.1)}}, 1, "no call may fail"},
		{"slow machine, the exposed pair fails after its token", 4, []Failure{{Worker: 1, Key: "account/01", Calls: 3, First: at(3.7), Last: at(5)}}, 0, "too slow"},
		{"slow machine, the exposed pair fails before its token ran out", 4, []Failure{{Worker: 1, Key: "account/01", Calls: 1, First: at(3.2), Last: at(3.2)}}, 1, "too slow"},
		{"slow machine, another pair fails", 4, []Failure{{Worker: 0, Key: "account/01", Calls: 1, First: at(4.5), Last: at(4.5)}}, 1, "too slow"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r recorder
			checkOutage(&r, outageReport(c.failed...), at(3), at(c.back))
			if len(r.errs) != c.wantErrs || !strings.Contains(strings.Join(r.logs, "\n"), c.wantInLogs) {
				t.Errorf("errors %q, logs %q; want %d errors and a log saying %q", r.errs, r.logs, c.wantErrs, c.wantInLogs)
			}
		})
	}
	var r recorder
	rep := outageReport()
	rep.Server.StaleRefreshTokens = 1
	if checkOutage(&r, rep, at(3), at(3.5)); len(r.errs) != 1 {
		t.Errorf("a stale refresh token: errors %q", r.errs)
	}
}

func TestCheckKill(t *testing.T) {
	base := Report{Started: t0, Killed: true, KilledAt: at(3.01), LockSeenAt: at(3), Account0Calls: 10}
	for _, c := range []struct {
		name     string
		refresh  float64
		lost     bool
		wantErrs int
	}{
		{"refreshed after the lock was free", 4, false, 0},
		{"refreshed while the lock was seen held", 2.5, false, 1},
		{"the lease had lapsed before the kill: unchecked", 2.5, true, 0},
		{"never refreshed", -1, false, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := base
			rep.LockLost = c.lost
			if c.refresh >= 0 {
				rep.Account0FirstRefresh = at(c.refresh)
			}
			var r recorder
			checkKill(&r, rep)
			if len(r.errs) != c.wantErrs {
				t.Errorf("errors %q; want %d", r.errs, c.wantErrs)
			}
		})
	}
}
