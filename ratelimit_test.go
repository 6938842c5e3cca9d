package dropboxsign_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

func TestParseRateLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header http.Header
		want   dropboxsign.RateLimit
		ok     bool
	}{
		{"documented names", http.Header{"X-Ratelimit-Limit": {"100"}, "X-Ratelimit-Remaining": {"7"}, "X-Ratelimit-Reset": {"1700000000"}},
			dropboxsign.RateLimit{Limit: 100, Remaining: 7, Reset: time.Unix(1700000000, 0)}, true},
		{"live name for remaining", http.Header{"X-Ratelimit-Limit-Remaining": {" 3 "}},
			dropboxsign.RateLimit{Limit: -1, Remaining: 3}, true},
		{"documented name wins", http.Header{"X-Ratelimit-Remaining": {"5"}, "X-Ratelimit-Limit-Remaining": {"3"}},
			dropboxsign.RateLimit{Limit: -1, Remaining: 5}, true},
		{"garbage", http.Header{"X-Ratelimit-Limit": {"lots"}, "X-Ratelimit-Remaining": {"-1"}, "X-Ratelimit-Reset": {"1e99"}},
			dropboxsign.RateLimit{Limit: -1, Remaining: -1}, false},
		{"none", http.Header{}, dropboxsign.RateLimit{Limit: -1, Remaining: -1}, false},
	} {
		got, ok := dropboxsign.ParseRateLimit(tc.header)
		if ok != tc.ok || got.Limit != tc.want.Limit || got.Remaining != tc.want.Remaining || !got.Reset.Equal(tc.want.Reset) {
			t.Errorf("%s: ParseRateLimit = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
