package oteldropboxsign

import (
	"context"
	"errors"
	"net/url"
	"strconv"

	"github.com/dropboxsign-go/dropboxsign"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// The attributes, named after the core's log attributes (log.go) in
// OpenTelemetry's style: op is dropboxsign.token.operation (or
// dropboxsign.store.operation), class is dropboxsign.outcome, status is
// http.response.status_code, error_name is dropboxsign.error.name.
const (
	operationKey      = attribute.Key("dropboxsign.token.operation") // exchange, refresh
	outcomeKey        = attribute.Key("dropboxsign.outcome")         // see outcome
	accountKey        = attribute.Key("dropboxsign.account")
	storeOperationKey = attribute.Key("dropboxsign.store.operation") // load, lock, save, mark
	accountStateKey   = attribute.Key("dropboxsign.account.state")   // connected, refused, disconnected
	errorNameKey      = attribute.Key("dropboxsign.error.name")
	rateLimitKey      = attribute.Key("dropboxsign.rate_limit.limit")
	rateRemainingKey  = attribute.Key("dropboxsign.rate_limit.remaining")
	rateResetKey      = attribute.Key("dropboxsign.rate_limit.reset")
	failuresKey       = attribute.Key("dropboxsign.failures")
	sharedKey         = attribute.Key("dropboxsign.token.shared") // the token came from another source's request for the same grant
	retryDelayKey     = attribute.Key("dropboxsign.retry.delay")
)

// disconnectionOriginKey says where a replica learnt of a disconnection:
// "local" (its own Accounts.Disconnect recorded it: summed over replicas,
// the disconnections the app made) or "store" (another replica's, or a
// mark found at a load: once per replica that held or loads the account).
const disconnectionOriginKey = attribute.Key("dropboxsign.disconnection.origin")

// outcome names a Class for the dropboxsign.outcome attribute: Class.String
// in snake case, and "success" for NotAnError.
func outcome(c dropboxsign.Class) string {
	switch c {
	case dropboxsign.NotAnError:
		return "success"
	case dropboxsign.Temporary:
		return "temporary"
	case dropboxsign.RateLimited:
		return "rate_limited"
	case dropboxsign.Reauthorize:
		return "reauthorize"
	case dropboxsign.Misconfigured:
		return "misconfigured"
	}
	return "_OTHER"
}

// knownErrorNames are the error codes that error.type carries as they are:
// RFC 6749's and the ones Dropbox Sign's token route answers with. Any other
// name (a server may send anything) is reported by its HTTP status, so
// that error.type stays a short list.
var knownErrorNames = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true, "unauthorized_client": true,
	"unsupported_grant_type": true, "invalid_scope": true, "access_denied": true, "server_error": true,
	"temporarily_unavailable": true, "unauthorized": true, "forbidden": true, "payment_required": true,
	"exceeded_rate": true,
}

// errorType is the error.type of a failed token request, one of a bounded
// set: a known error code from the answer ("invalid_grant", "exceeded_rate",
// …); else the answer's HTTP status ("503"); "invalid_response" for a 2xx
// answer that held no usable token; "timeout" for a request that ran out of
// time; "network" for one that got no answer; "configuration" for a
// request that could not be made as configured; "_OTHER" for anything else.
func errorType(e dropboxsign.Event) string {
	var ue *url.Error
	switch {
	case knownErrorNames[e.ErrorName]:
		return e.ErrorName
	case e.Status >= 200 && e.Status <= 299:
		return "invalid_response"
	case e.Status != 0:
		return strconv.Itoa(e.Status)
	case errors.Is(e.Err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(e.Err, &ue):
		if ue.Timeout() {
			return "timeout"
		}
		return "network"
	case e.Class == dropboxsign.Misconfigured:
		return "configuration"
	}
	return semconv.ErrorTypeOther.Value.AsString()
}
