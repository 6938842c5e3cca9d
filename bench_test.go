package dropboxsign_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
	"golang.org/x/oauth2"
)

// The hot path: a valid token, served from memory. Compare with
// oauth2.ReuseTokenSource over the same token, and with the floor: one
// time.Now, which TokenContext must make.

func benchToken() *oauth2.Token {
	return &oauth2.Token{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour), ExpiresIn: 3600}
}

func benchSource() *dropboxsign.TokenSource {
	conf := &oauth2.Config{ClientID: "id", ClientSecret: "secret", Endpoint: dropboxsign.Endpoint}
	return dropboxsign.NewTokenSource(context.Background(), conf, benchToken())
}

func BenchmarkHotPath(b *testing.B) {
	ctx := context.Background()
	ours := benchSource()
	theirs := oauth2.ReuseTokenSource(benchToken(), nil) // never asks its source: the token is valid
	b.Run("TimeNow", func(b *testing.B) {
		for b.Loop() {
			time.Now()
		}
	})
	b.Run("TokenContext", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ours.TokenContext(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Token", func(b *testing.B) { // a private copy for x/oauth2 wrappers
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ours.Token(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReuseTokenSource", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := theirs.Token(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("TokenContextParallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ours.TokenContext(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("ReuseTokenSourceParallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := theirs.Token(); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// Requests through each client against a loopback API that checks nothing:
// the authorization's own cost per request.
func BenchmarkClient(b *testing.B) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"account":{}}`))
	}))
	defer api.Close()
	ctx := context.Background()
	conf := &oauth2.Config{ClientID: "id", ClientSecret: "secret", Endpoint: dropboxsign.Endpoint}
	clients := []struct {
		name   string
		client *http.Client
	}{
		{"Unauthenticated", &http.Client{Transport: http.DefaultTransport}},
		{"XOAuth2Static", oauth2.NewClient(ctx, oauth2.StaticTokenSource(benchToken()))},
		{"NewClient", dropboxsign.NewClient(ctx, conf, benchToken())},
	}
	for _, c := range clients {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.client.Get(api.URL)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// cannedTransport answers at once, so that a client benchmark measures only
// what the authorizing transport adds to a request.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" && r.URL.Path == "/authorized" {
		panic("no Authorization header")
	}
	return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
}

// BenchmarkTransportOverhead: a request through each client's transport
// over a base that answers at once: the authorization's own cost.
func BenchmarkTransportOverhead(b *testing.B) {
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: cannedTransport{}})
	conf := &oauth2.Config{ClientID: "id", ClientSecret: "secret", Endpoint: dropboxsign.Endpoint}
	clients := []struct {
		name   string
		client *http.Client
	}{
		{"Unauthenticated", &http.Client{Transport: cannedTransport{}}},
		{"XOAuth2Static", oauth2.NewClient(ctx, oauth2.StaticTokenSource(benchToken()))},
		{"NewClient", dropboxsign.NewClient(ctx, conf, benchToken())},
	}
	for _, c := range clients {
		path := "/authorized"
		if c.name == "Unauthenticated" {
			path = "/open"
		}
		req, _ := http.NewRequest("GET", "http://api.invalid"+path, nil)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
				}
			})
		})
	}
}
