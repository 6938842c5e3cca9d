package fleettest

import (
	"strings"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

var mark = StoreState{Mark: true}

// disconnectReport: one worker, accounts a (grant g1, token t1) and b (g2,
// t2); a is disconnected from 2 s to 2.01 s, the worker is told at 2.1 s
// and last presented t1 in a call that began at 2.05 s; its calls for a
// fail as disconnected from 2.2 s; its store reads take 10 ms; the poll is
// 1 s, so the bound is 3.02 s. All is well.
func disconnectReport() *DisconnectReport {
	return &DisconnectReport{
		Name: "test", Poll: time.Second, Started: t0,
		grant:     map[string]string{"a": "g1", "b": "g2"},
		Final:     map[string]StoreState{"a": mark, "b": {Grant: "g2"}},
		Untouched: []string{"b"},
		valid:     map[string]bool{"b": true},
		Events:    []DisconnectEvent{{Key: "a", Grant: "g1", Start: at(2), End: at(2.01), After: mark}},
		issued: map[string]dropboxsigntest.IssuedToken{
			"t1": {Account: "g1", Requested: at(0), Issued: at(0)},
			"t2": {Account: "g2", Requested: at(0), Issued: at(0)},
		},
		apiUses: map[string]dropboxsigntest.APIUse{"t1": {Count: 10, First: at(0.5), Last: at(2.06)}, "t2": {Count: 10, First: at(0.5), Last: at(4.9)}},
		workers: []workerRecord{{
			reports: map[string][]time.Time{"a": {at(2.1)}},
			res: dResult{
				Ended:        at(5),
				Uses:         map[string][]dUse{"a": {{Token: "t1", Count: 10, First: at(0.5), Last: at(2.05)}}, "b": {{Token: "t2", Count: 10, First: at(0.5), Last: at(4.9)}}},
				Answers:      map[string]map[string]int64{"a": {"g1": 10}, "b": {"g2": 10}},
				Disconnected: map[string]*dSpan{"a": {Count: 3, First: at(2.2), Last: at(4.9)}},
				Loads:        []window{{at(1.5), at(1.51)}, {at(2.5), at(2.51)}},
			},
		}},
	}
}

// withRelogin: a is logged in again from 3 s to 3.3 s (grant g3, token
// t3); the worker is told at 3.2 s, its last call failed as disconnected
// began at 3.1 s, and it serves g3 after.
func withRelogin(rep *DisconnectReport) {
	rep.Events[0].Relogin = &Relogin{Start: at(3), End: at(3.3), Grant: "g3", Before: mark}
	rep.Final["a"] = StoreState{Grant: "g3"}
	rep.valid["a"] = true
	rep.issued["t3"] = dropboxsigntest.IssuedToken{Account: "g3", Requested: at(3), Issued: at(3.29)}
	w := &rep.workers[0]
	w.reports["a"] = append(w.reports["a"], at(3.2))
	w.res.Disconnected["a"].Last = at(3.1)
	w.res.Answers["a"]["g3"] = 5
	w.res.Uses["a"] = append(w.res.Uses["a"], dUse{Token: "t3", Count: 5, First: at(3.2), Last: at(4.9)})
}

func TestCheckDisconnects(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(r *DisconnectReport)
		want   []string // what the errors say, one each
	}{
		{"all well", func(*DisconnectReport) {}, nil},
		{"all well, with a new login", withRelogin, nil},
		{"handed out after the worker was told", func(r *DisconnectReport) {
			r.workers[0].res.Uses["a"][0].Last = at(2.2)
		}, []string{"after its watch reported the disconnection"}},
		{"handed out past the bound as well", func(r *DisconnectReport) {
			r.workers[0].res.Uses["a"][0].Last = at(3.5)
		}, []string{"after its watch reported the disconnection", "past the bound of 1010 ms"}},
		{"told past the bound", func(r *DisconnectReport) {
			r.workers[0].reports["a"] = []time.Time{at(3.5)}
		}, []string{"told of the disconnection 1490 ms after Disconnect returned, past the bound of 1010 ms"}},
		{"told late, within the bound its stalls make", func(r *DisconnectReport) {
			r.workers[0].reports["a"] = []time.Time{at(3.2)}
			r.workers[0].res.Stalls = []window{{at(2.5), at(2.8)}}
		}, nil},
		{"told late, its stalls before the change do not count", func(r *DisconnectReport) {
			r.workers[0].reports["a"] = []time.Time{at(3.2)}
			r.workers[0].res.Stalls = []window{{at(1.5), at(1.8)}}
		}, []string{"past the bound"}},
		{"told before Disconnect began: not of it", func(r *DisconnectReport) {
			r.workers[0].reports["a"] = []time.Time{at(1.9)}
		}, []string{"never told of the disconnection"}},
		{"never told, but ended within the bound", func(r *DisconnectReport) {
			r.workers[0].reports["a"] = nil
			r.workers[0].res.Ended = at(2.5)
			r.workers[0].res.Disconnected["a"].Last = at(2.4)
			r.apiUses["t2"] = dropboxsigntest.APIUse{Count: 1, Last: at(2.4)}
		}, nil},
		{"told by All after the return", func(r *DisconnectReport) {
			r.workers[0].reports["a"] = nil
			r.workers[0].all = []time.Time{at(2.005), at(2.1)}
		}, nil},
		{"a refresh's token issued after the return, never presented", func(r *DisconnectReport) {
			r.issued["t4"] = dropboxsigntest.IssuedToken{Account: "g1", Requested: at(1.9), Issued: at(2.2), Refresh: true}
		}, nil},
		{"a refresh's token issued after the return, presented", func(r *DisconnectReport) {
			r.issued["t4"] = dropboxsigntest.IssuedToken{Account: "g1", Requested: at(1.9), Issued: at(2.2), Refresh: true}
			r.apiUses["t4"] = dropboxsigntest.APIUse{Count: 1, First: at(2.3), Last: at(2.3)}
			r.workers[0].res.Uses["a"] = append(r.workers[0].res.Uses["a"], dUse{Token: "t4", Count: 1, First: at(2.09), Last: at(2.09)})
		}, []string{"was presented 1 times at the fake", "presented a token of the disconnected grant issued after"}},
		{"no mark just after Disconnect", func(r *DisconnectReport) {
			r.Events[0].After = StoreState{Grant: "g1"}
		}, []string{"just after Disconnect returned the store held a token of grant g1"}},
		{"Disconnect failed", func(r *DisconnectReport) {
			r.Events[0].Err = "store down"
			r.Events[0].End = time.Time{}
		}, []string{"Disconnect: store down"}},
		{"written back", func(r *DisconnectReport) {
			r.Final["a"] = StoreState{Grant: "g1"}
			r.valid["a"] = true
		}, []string{"at the end the store held a token of grant g1; want the mark"}},
		{"written back before the new login", func(r *DisconnectReport) {
			withRelogin(r)
			r.Events[0].Relogin.Before = StoreState{Grant: "g1"}
		}, []string{"a grant written back"}},
		{"the new login not in the store at the end", func(r *DisconnectReport) {
			withRelogin(r)
			r.Final["a"] = mark
		}, []string{"want the new login's grant g3"}},
		{"failed as disconnected after told of the new login", func(r *DisconnectReport) {
			withRelogin(r)
			r.workers[0].res.Disconnected["a"].Last = at(3.25)
		}, []string{"after its watch reported the new login failed as disconnected"}},
		{"a late report of the disconnection while Login ran is not the login's", func(r *DisconnectReport) {
			withRelogin(r)
			r.workers[0].reports["a"] = []time.Time{at(2.1), at(3.05), at(3.4)}
			r.workers[0].res.Disconnected["a"].Last = at(3.35)
		}, nil},
		{"the new login never served", func(r *DisconnectReport) {
			withRelogin(r)
			delete(r.workers[0].res.Answers["a"], "g3")
		}, []string{"never served the new login"}},
		{"failed as disconnected before Disconnect began", func(r *DisconnectReport) {
			r.workers[0].res.Disconnected["a"].First = at(1.9)
		}, []string{"before Disconnect began"}},
		{"an account never disconnected failed as disconnected", func(r *DisconnectReport) {
			r.workers[0].res.Disconnected["b"] = &dSpan{Count: 1, First: at(3), Last: at(3)}
		}, []string{"never disconnected"}},
		{"answered by another grant", func(r *DisconnectReport) {
			r.workers[0].res.Answers["b"]["g1"] = 1
		}, []string{"answered by g1, not by one of its grants"}},
		{"another failure", func(r *DisconnectReport) {
			r.workers[0].res.FirstFailures = []dFailure{{Key: "b", At: at(3), Error: "500 Internal Server Error"}}
		}, []string{"500 Internal Server Error"}},
		{"an untouched account lost its grant", func(r *DisconnectReport) {
			r.Final["b"] = StoreState{Err: "unreadable"}
		}, []string{"never disconnected, ended holding error: unreadable"}},
		{"an untouched account's refresh token fails", func(r *DisconnectReport) {
			delete(r.valid, "b")
		}, []string{"does not work"}},
		{"a stale refresh token", func(r *DisconnectReport) {
			r.Stats.StaleRefreshTokens = 1
		}, []string{"stale refresh tokens"}},
		{"killed: the store held something else", func(r *DisconnectReport) {
			r.Kills = 1
			r.Events[0].AfterKill = StoreState{Err: "half a record"}
		}, []string{"after the kill the store held error: half a record"}},
		{"killed: the token or the mark", func(r *DisconnectReport) {
			r.Kills = 1
			r.Events[0].Killed = true
			r.Events[0].AfterKill = StoreState{Grant: "g1"}
		}, nil},
		{"killed before it began an account: it keeps its grant", func(r *DisconnectReport) {
			r.Kills = 1
			r.Events[0].AfterKill = mark
			r.Events = append(r.Events, DisconnectEvent{Key: "b", Grant: "g2", AfterKill: mark})
		}, []string{"never begun by the killed child"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := disconnectReport()
			c.change(rep)
			var r recorder
			checkDisconnects(&r, rep)
			if len(r.errs) != len(c.want) {
				t.Fatalf("errors %q; want %d, saying %q", r.errs, len(c.want), c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(r.errs[i], w) {
					t.Errorf("error %q; want it to say %q", r.errs[i], w)
				}
			}
		})
	}
}

func TestCheckDisconnectsFigures(t *testing.T) {
	rep := disconnectReport()
	rep.Events = append(rep.Events, DisconnectEvent{Key: "b", Grant: "g2", Start: at(4), End: at(4.5), After: mark})
	rep.Final["b"] = mark
	rep.Untouched = nil
	delete(rep.valid, "b")
	w := &rep.workers[0]
	w.reports["b"] = []time.Time{at(4.3)} // pushed before Disconnect returned: 0
	w.res.Uses["b"][0].Last = at(4.2)
	rep.apiUses["t2"] = dropboxsigntest.APIUse{Count: 10, Last: at(4.4)} // before the return: 0
	w.res.Disconnected["b"] = &dSpan{Count: 1, First: at(4.35), Last: at(4.9)}
	var r recorder
	fig := checkDisconnects(&r, rep)
	if len(r.errs) != 0 {
		t.Fatalf("errors %q", r.errs)
	}
	round := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	if fig.N != 2 || fig.P50 != 0 || round(fig.Max) != 50*time.Millisecond || round(fig.ToldMax) != 90*time.Millisecond || fig.ToldP50 != 0 {
		t.Errorf("%+v; want 2 disconnections, the last requests 0 and 50 ms after, told 90 and 0 ms after", fig)
	}
	if s := fig.String(); !strings.Contains(s, "p50 0 ms, p99 50 ms, max 50 ms") {
		t.Errorf("%s", s)
	}
}

func TestPercentile(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(100-i) * time.Millisecond
	}
	if p50, p99, top := percentile(ds, 0.5), percentile(ds, 0.99), percentile(ds, 1); p50 != 50*time.Millisecond || p99 != 99*time.Millisecond || top != 100*time.Millisecond {
		t.Errorf("p50 %v, p99 %v, max %v; want 50, 99, 100 ms", p50, p99, top)
	}
	if p := percentile(nil, 0.5); p != 0 {
		t.Errorf("of nothing: %v", p)
	}
	if p := percentile([]time.Duration{7}, 0.99); p != 7 {
		t.Errorf("of one: %v", p)
	}
}
