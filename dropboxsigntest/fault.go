package dropboxsigntest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// A Fault is an answer the token route gives instead of the real one.
type Fault struct {
	Status int         // HTTP status; 0 means 500
	Header http.Header // extra response headers
	Body   string      // response body, sent as is
	// Count is how many token requests the fault answers before the server
	// behaves again; 0 means every request until ClearFaults.
	Count int
}

// InjectFault queues f: the next token requests get it instead of a real
// answer. Faults queue in order; a fault with Count 0 stays at the head.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	s.faults = append(s.faults, f)
	s.mu.Unlock()
}

// InjectAPIFault queues f for the API routes, as InjectFault does for the
// token route: the next API requests get it whatever their token.
func (s *Server) InjectAPIFault(f Fault) {
	s.mu.Lock()
	s.apiFaults = append(s.apiFaults, f)
	s.mu.Unlock()
}

// ClearFaults removes every queued fault, of both kinds.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults, s.apiFaults = nil, nil
	s.mu.Unlock()
}

// takeFault pops the fault for one request from queue; the caller holds s.mu.
func takeFault(queue *[]Fault) (Fault, bool) {
	if len(*queue) == 0 {
		return Fault{}, false
	}
	f := (*queue)[0]
	if f.Count > 0 {
		if f.Count == 1 {
			*queue = (*queue)[1:]
		} else {
			(*queue)[0].Count--
		}
	}
	return f, true
}

func (f Fault) write(w http.ResponseWriter) {
	for k, vs := range f.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	w.WriteHeader(status)
	w.Write([]byte(f.Body))
}

// EnvelopeError is a fault in Dropbox Sign's own error shape:
// {"error":{"error_msg":msg,"error_name":name}}.
func EnvelopeError(status int, name, msg string) Fault {
	return jsonFault(status, envelope(name, msg))
}

// OAuthError is a fault in the RFC 6749 shape the live token endpoint uses:
// {"error":code,"error_description":description}.
func OAuthError(status int, code, description string) Fault {
	return jsonFault(status, oauthError(code, description))
}

// RateLimited is a 429 exceeded_rate answer with rate-limit headers saying
// the window resets at reset.
func RateLimited(reset time.Time) Fault {
	f := EnvelopeError(http.StatusTooManyRequests, "exceeded_rate", "Too many requests.")
	f.Header.Set("X-RateLimit-Limit", "100")
	f.Header.Set("X-RateLimit-Remaining", "0")
	f.Header.Set("X-Ratelimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	return f
}

// BadGateway is the HTML page a proxy answers with when the service behind it
// is down.
func BadGateway() Fault {
	return Fault{
		Status: http.StatusBadGateway,
		Header: http.Header{"Content-Type": {"text/html"}},
		Body:   "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
	}
}

func jsonFault(status int, v any) Fault {
	b, _ := json.Marshal(v)
	return Fault{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: string(b)}
}
