package oteldropboxsign_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
	"github.com/dropboxsign-go/dropboxsign/oteldropboxsign"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"
)

// harness is one scenario's world: a fake Dropbox Sign, the real metric and
// trace SDKs, an Observer recording to them, and an event recorder installed
// after it. The core calls observers in order, one event at a time, so once
// the recorder has an event the Observer has recorded it: tests wait on the
// recorder, then collect once, and assert exactly what is there.
type harness struct {
	t      *testing.T
	srv    *dropboxsigntest.Server
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	obs    *oteldropboxsign.Observer
	rec    *recorder
	ctx    context.Context // for NewAccounts: token requests go through otelhttp
	extra  []string        // secrets besides the server's (codes)
}

func newHarness(t *testing.T, opts ...oteldropboxsign.Option) *harness {
	t.Helper()
	srv := dropboxsigntest.NewServer()
	t.Cleanup(srv.Close)
	h := &harness{t: t, srv: srv, reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder(), rec: newRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	t.Cleanup(func() { mp.Shutdown(context.Background()); h.tp.Shutdown(context.Background()) })
	h.obs = oteldropboxsign.NewObserver(append([]oteldropboxsign.Option{
		oteldropboxsign.WithMeterProvider(mp), oteldropboxsign.WithTracerProvider(h.tp)}, opts...)...)
	// The app's HTTP client: otelhttp over the fake's transport, so that its
	// client spans show where they nest.
	hc := &http.Client{Transport: otelhttp.NewTransport(srv.Client().Transport,
		otelhttp.WithTracerProvider(h.tp), otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))}
	h.ctx = context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	return h
}

// options installs the Observer, then the recorder.
func (h *harness) options(more ...dropboxsign.Option) []dropboxsign.Option {
	return append([]dropboxsign.Option{dropboxsign.WithObserver(h.obs), dropboxsign.WithObserver(h.rec)}, more...)
}

// accounts returns an Accounts observed by h, registered for the gauges.
func (h *harness) accounts(store dropboxsign.Store) *dropboxsign.Accounts {
	a := dropboxsign.NewAccounts(h.ctx, h.srv.Config(), store, h.options()...)
	h.t.Cleanup(h.obs.RegisterAccounts(a))
	return a
}

// caller starts the span of an app's request that will wait for a token.
func (h *harness) caller(name string) (context.Context, trace.Span) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	h.t.Cleanup(cancel)
	return h.tp.Tracer("app").Start(ctx, name)
}

// A recorder is an Observer that keeps every event.
type recorder struct {
	mu      sync.Mutex
	events  []dropboxsign.Event
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) RequestStarted(ctx context.Context, _, _ string) context.Context { return ctx }

func (r *recorder) Observe(_ context.Context, e dropboxsign.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until n events of kind have arrived and returns them.
func (r *recorder) waitFor(t *testing.T, kind dropboxsign.EventKind, n int) []dropboxsign.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		got := r.of(kind)
		if len(got) >= n {
			return got
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("%d %v events after 10 s, want %d; all: %+v", len(got), kind, n, r.all())
		}
	}
}

func (r *recorder) of(kind dropboxsign.EventKind) []dropboxsign.Event {
	var out []dropboxsign.Event
	for _, e := range r.all() {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) all() []dropboxsign.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// instrument is what every collected metric must be.
type instrument struct {
	unit     string
	kind     string // "counter", "updowncounter" or "histogram"
	observed bool   // asynchronous: reported at each collection
}

var instruments = map[string]instrument{
	"dropboxsign.token.requests":         {"{request}", "counter", false},
	"dropboxsign.token.request.duration": {"s", "histogram", false},
	"dropboxsign.store.errors":           {"{error}", "counter", false},
	"dropboxsign.token.save.failures":    {"{failure}", "counter", false},
	"dropboxsign.token.invalidations":    {"{invalidation}", "counter", false},
	"dropboxsign.account.refusals":       {"{refusal}", "counter", false},
	"dropboxsign.account.disconnections": {"{disconnection}", "counter", false},
	"dropboxsign.store.watch.failures":   {"{failure}", "counter", false},
	"dropboxsign.account.logins":         {"{login}", "counter", false},
	"dropboxsign.token.adoptions":        {"{token}", "counter", false},
	"dropboxsign.store.plaintext_tokens": {"{token}", "counter", false},
	"dropboxsign.account.count":          {"{account}", "updowncounter", true},
	"dropboxsign.event.dropped":          {"{event}", "counter", true},
}

var semconvBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// collected is one collection: each data point as `name{k=v,…}` and its
// value (a histogram's count), the sum of the histograms' sums, and every
// attribute, for the secrets scan.
type collected struct {
	points      map[string]float64
	durationSum float64
	texts       []string
}

// collect reads the Observer's metrics once, checking each instrument's
// unit, kind, temporality and buckets as it goes.
func (h *harness) collect() collected {
	h.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		h.t.Fatal(err)
	}
	c := collected{points: map[string]float64{}}
	key := func(name string, set attribute.Set) string {
		for _, kv := range set.ToSlice() {
			c.texts = append(c.texts, string(kv.Key)+"="+kv.Value.String())
		}
		return name + "{" + set.Encoded(attribute.DefaultEncoder()) + "}"
	}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != oteldropboxsign.ScopeName {
			h.t.Errorf("metrics of scope %q", sm.Scope.Name)
			continue
		}
		for _, m := range sm.Metrics {
			want, ok := instruments[m.Name]
			if !ok {
				h.t.Errorf("unexpected instrument %q", m.Name)
				continue
			}
			if m.Unit != want.unit || m.Description == "" {
				h.t.Errorf("%s: unit %q, description %q; want unit %q and a description", m.Name, m.Unit, m.Description, want.unit)
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if kind := map[bool]string{true: "counter", false: "updowncounter"}[d.IsMonotonic]; kind != want.kind || d.Temporality != metricdata.CumulativeTemporality {
					h.t.Errorf("%s: a %s of temporality %v, want a cumulative %s", m.Name, kind, d.Temporality, want.kind)
				}
				for _, p := range d.DataPoints {
					c.points[key(m.Name, p.Attributes)] += float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				if want.kind != "histogram" {
					h.t.Errorf("%s: a histogram, want a %s", m.Name, want.kind)
				}
				for _, p := range d.DataPoints {
					if !slices.Equal(p.Bounds, semconvBuckets) {
						h.t.Errorf("%s: buckets %v, want %v", m.Name, p.Bounds, semconvBuckets)
					}
					var n uint64
					for _, b := range p.BucketCounts {
						n += b
					}
					if n != p.Count {
						h.t.Errorf("%s: %d in buckets, count %d", m.Name, n, p.Count)
					}
					c.points[key(m.Name, p.Attributes)] += float64(p.Count)
					c.durationSum += p.Sum
				}
			default:
				h.t.Errorf("%s: data of type %T", m.Name, m.Data)
			}
		}
	}
	return c
}

// wantMetrics collects and asserts exactly the data points in want (a
// histogram's value is its count), and that the durations recorded add up
// to those of the token request events.
func (h *harness) wantMetrics(want map[string]float64) collected {
	h.t.Helper()
	c := h.collect()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range c.points {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		got, gotOK := c.points[k]
		w, wantOK := want[k]
		switch {
		case !gotOK:
			h.t.Errorf("missing  %s = %v", k, w)
		case !wantOK:
			h.t.Errorf("unwanted %s = %v", k, got)
		case got != w:
			h.t.Errorf("%s = %v, want %v", k, got, w)
		}
	}
	var sum float64
	for _, e := range h.rec.of(dropboxsign.EventTokenRequest) {
		sum += e.Duration.Seconds()
	}
	if math.Abs(sum-c.durationSum) > 1e-9 || (sum == 0) != (c.durationSum == 0) {
		h.t.Errorf("durations recorded add up to %v s; the events' to %v s", c.durationSum, sum)
	}
	return c
}

// tokenSpans returns the Observer's spans, in the order they ended, and
// checks that each has exactly one otelhttp client span under it (the token
// request's HTTP request) whose status code is the span's.
func (h *harness) tokenSpans(n int) []sdktrace.ReadOnlySpan {
	h.t.Helper()
	var ours, http []sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		switch {
		case strings.HasPrefix(s.Name(), "dropboxsign."):
			ours = append(ours, s)
		case s.SpanKind() == trace.SpanKindClient:
			http = append(http, s)
		}
	}
	if len(ours) != n {
		h.t.Fatalf("%d token request spans, want %d: %v", len(ours), n, names(ours))
	}
	for _, s := range ours {
		var children []sdktrace.ReadOnlySpan
		for _, c := range http {
			if c.Parent().SpanID() == s.SpanContext().SpanID() {
				children = append(children, c)
			}
		}
		if len(children) != 1 {
			h.t.Errorf("%s has %d HTTP client spans under it, want 1", s.Name(), len(children))
			continue
		}
		if got, want := attrOf(children[0], "http.response.status_code"), attrOf(s, "http.response.status_code"); got != want {
			h.t.Errorf("%s: the HTTP span's status %q, the token request's %q", s.Name(), got, want)
		}
	}
	return ours
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func attrOf(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// spanWant is what a token request's span must be.
type spanWant struct {
	name   string
	parent trace.SpanContext // the caller's span; invalid for a root
	attrs  map[string]string // exactly these, as emitted
	failed bool              // status Error with the event's error text
	event  dropboxsign.Event // whose Time the span ends at
}

func checkSpan(t *testing.T, s sdktrace.ReadOnlySpan, w spanWant) {
	t.Helper()
	if s.Name() != w.name || s.SpanKind() != trace.SpanKindInternal {
		t.Errorf("span %q of kind %v, want %q, internal", s.Name(), s.SpanKind(), w.name)
	}
	if w.parent.IsValid() {
		if s.Parent().SpanID() != w.parent.SpanID() || s.SpanContext().TraceID() != w.parent.TraceID() {
			t.Errorf("%s: parent %v, want the caller's span %v", s.Name(), s.Parent().SpanID(), w.parent.SpanID())
		}
	} else if s.Parent().IsValid() {
		t.Errorf("%s: parent %v, want none", s.Name(), s.Parent().SpanID())
	}
	got := map[string]string{}
	for _, kv := range s.Attributes() {
		got[string(kv.Key)] = kv.Value.String()
	}
	if fmt.Sprint(got) != fmt.Sprint(w.attrs) {
		t.Errorf("%s: attributes\n%v\nwant\n%v", s.Name(), got, w.attrs)
	}
	st := s.Status()
	switch {
	case w.failed && (st.Code != codes.Error || st.Description != w.event.Err.Error()):
		t.Errorf("%s: status %v %q, want Error %q", s.Name(), st.Code, st.Description, w.event.Err.Error())
	case !w.failed && st.Code != codes.Unset:
		t.Errorf("%s: status %v %q, want unset", s.Name(), st.Code, st.Description)
	}
	if !s.EndTime().Equal(w.event.Time) || s.StartTime().After(s.EndTime()) {
		t.Errorf("%s: from %v to %v, want to end at the request's end %v", s.Name(), s.StartTime(), s.EndTime(), w.event.Time)
	}
	if len(s.Events()) != 0 || len(s.Links()) != 0 {
		t.Errorf("%s: events %v, links %v", s.Name(), s.Events(), s.Links())
	}
}

// noSecrets scans every span (the HTTP spans too: name, attributes, status,
// events) and every metric attribute for the secrets the scenario used.
func (h *harness) noSecrets(c collected) {
	h.t.Helper()
	texts := c.texts
	for _, s := range h.spans.Ended() {
		texts = append(texts, s.Name(), s.Status().Description)
		for _, kv := range s.Attributes() {
			texts = append(texts, string(kv.Key)+"="+kv.Value.String())
		}
		for _, ev := range s.Events() {
			texts = append(texts, ev.Name)
			for _, kv := range ev.Attributes {
				texts = append(texts, string(kv.Key)+"="+kv.Value.String())
			}
		}
	}
	secrets := append(h.srv.Secrets(), h.extra...)
	if len(secrets) < 2 {
		h.t.Fatal("the server knows no secrets")
	}
	for _, text := range texts {
		for _, s := range secrets {
			if len(s) >= 4 && strings.Contains(text, s) {
				h.t.Errorf("a secret shows in %q", text)
			}
		}
	}
}

// expired returns a copy of tok that the client believes has expired.
func expired(tok *oauth2.Token) *oauth2.Token {
	c := *tok
	c.Expiry = time.Now().Add(-time.Minute)
	return &c
}

// authorize walks the fake's consent page and returns the code it gives.
func (h *harness) authorize(state string) string {
	h.t.Helper()
	resp, err := h.srv.Client().Get(h.srv.Config().AuthCodeURL(state))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var cb struct{ Code, State string }
	if err := json.NewDecoder(resp.Body).Decode(&cb); err != nil || cb.Code == "" || cb.State != state {
		h.t.Fatalf("callback: %+v %v", cb, err)
	}
	h.extra = append(h.extra, cb.Code)
	return cb.Code
}

// flakyStore is a dropboxsigntest.Store whose saves or loads fail while
// told to.
type flakyStore struct {
	*dropboxsigntest.Store
	mu                   sync.Mutex
	failSaves, failLoads bool
}

func (f *flakyStore) set(saves, loads bool) {
	f.mu.Lock()
	f.failSaves, f.failLoads = saves, loads
	f.mu.Unlock()
}

func (f *flakyStore) Save(ctx context.Context, key string, prev, t *oauth2.Token) error {
	f.mu.Lock()
	fail := f.failSaves
	f.mu.Unlock()
	// A replica's mark that it is about to spend the stored refresh token
	// (a negative ExpiresIn) goes through: failSaves is about the save of
	// a new token, after its refresh; without the mark, none is made.
	if fail && t.ExpiresIn >= 0 {
		return fmt.Errorf("flaky store: disk full")
	}
	return f.Store.Save(ctx, key, prev, t)
}

func (f *flakyStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	f.mu.Lock()
	fail := f.failLoads
	f.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("flaky store: connection reset")
	}
	return f.Store.Load(ctx, key)
}
