package dropboxsigntest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The signature request routes of the fake, relative to [Server.URL]: the
// first calls an app makes on its user's behalf after connecting. Both
// answer only live bearer tokens, as /v3/account does (401 and Dropbox
// Sign's error envelope otherwise), and count in [Server.Stats],
// [Server.APIUses] and [Server.InjectAPIFault] like every API route.
const (
	// SignatureRequestSendPath takes a POST of Dropbox Sign's
	// SignatureRequestSendRequest, as application/json,
	// application/x-www-form-urlencoded or multipart/form-data, and answers
	// a SignatureRequestGetResponse. The fake keeps the request under the
	// token's account; it sends no mail and never completes.
	SignatureRequestSendPath = "/v3/signature_request/send"
	// SignatureRequestListPath answers a GET with the token's account's
	// signature requests, newest first, as a SignatureRequestListResponse
	// paged by the page (default 1) and page_size (1 to 100, default 20)
	// query parameters.
	SignatureRequestListPath = "/v3/signature_request/list"
)

// Limits of Dropbox Sign's SignatureRequestSendRequest, and the fake's own
// bounds on what it reads and keeps.
const (
	maxTitle        = 255  // title and subject
	maxMessage      = 5000 // message
	maxSigners      = 100  // signers in one request (the fake's bound)
	maxFileURLs     = 100  // file_urls in one request (the fake's bound)
	maxSendBody     = 8 << 20
	maxSendInMemory = 1 << 20
	maxKeptRequests = 1000 // per account, oldest dropped first
)

// signatureRequest is Dropbox Sign's SignatureRequestResponse, with the
// fields a new, unsigned request has.
type signatureRequest struct {
	TestMode              bool              `json:"test_mode"`
	SignatureRequestID    string            `json:"signature_request_id"`
	RequesterEmailAddress string            `json:"requester_email_address"`
	Title                 string            `json:"title"`
	OriginalTitle         string            `json:"original_title"`
	Subject               *string           `json:"subject"`
	Message               *string           `json:"message"`
	Metadata              map[string]any    `json:"metadata"`
	CreatedAt             int64             `json:"created_at"`
	ExpiresAt             *int64            `json:"expires_at"`
	IsComplete            bool              `json:"is_complete"`
	IsDeclined            bool              `json:"is_declined"`
	HasError              bool              `json:"has_error"`
	FilesURL              string            `json:"files_url"`
	SigningURL            *string           `json:"signing_url"`
	DetailsURL            string            `json:"details_url"`
	CCEmailAddresses      []string          `json:"cc_email_addresses"`
	SigningRedirectURL    *string           `json:"signing_redirect_url"`
	TemplateIDs           []string          `json:"template_ids"`
	CustomFields          []any             `json:"custom_fields"`
	ResponseData          []any             `json:"response_data"`
	Signatures            []signatureStatus `json:"signatures"`
}

// signatureStatus is Dropbox Sign's SignatureRequestResponseSignatures for a
// signer who has not acted yet.
type signatureStatus struct {
	SignatureID        string  `json:"signature_id"`
	SignerEmailAddress string  `json:"signer_email_address"`
	SignerName         string  `json:"signer_name"`
	SignerRole         *string `json:"signer_role"`
	Order              *int    `json:"order"`
	StatusCode         string  `json:"status_code"`
	SignedAt           *int64  `json:"signed_at"`
	LastViewedAt       *int64  `json:"last_viewed_at"`
	LastRemindedAt     *int64  `json:"last_reminded_at"`
	HasPin             bool    `json:"has_pin"`
	HasSMSAuth         bool    `json:"has_sms_auth"`
}

// sendRequest is what the fake reads of a SignatureRequestSendRequest.
type sendRequest struct {
	Title            string         `json:"title"`
	Subject          string         `json:"subject"`
	Message          string         `json:"message"`
	TestMode         bool           `json:"test_mode"`
	FileURLs         []string       `json:"file_urls"`
	Signers          []sendSigner   `json:"signers"`
	CCEmailAddresses []string       `json:"cc_email_addresses"`
	Metadata         map[string]any `json:"metadata"`
	files            int            // uploaded files (multipart only)
}

type sendSigner struct {
	Name         string `json:"name"`
	EmailAddress string `json:"email_address"`
	Order        *int   `json:"order"`
}

// apiError is a 400 answer with Dropbox Sign's error envelope; path is its
// error_path, the parameter at fault, if any.
type apiError struct {
	msg, path string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(path, format string, args ...any) *apiError {
	return &apiError{msg: fmt.Sprintf(format, args...), path: path}
}

func writeAPIError(w http.ResponseWriter, status int, name string, e *apiError) {
	body := map[string]string{"error_msg": e.msg, "error_name": name}
	if e.path != "" {
		body["error_path"] = e.path
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// handleSignatureRequestSend answers POST /v3/signature_request/send for
// account, whose bearer token handleAPI has checked.
func (s *Server) handleSignatureRequestSend(w http.ResponseWriter, r *http.Request, account string) {
	if r.Method != http.MethodPost {
		writeEnvelope(w, http.StatusMethodNotAllowed, "method_not_allowed", "Use POST.")
		return
	}
	req, err := readSendRequest(w, r)
	if err == nil {
		err = req.validate()
	}
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_request", err)
		return
	}
	id := randomHex(20)
	sr := signatureRequest{
		TestMode:              req.TestMode,
		SignatureRequestID:    id,
		RequesterEmailAddress: account + "@example.com",
		Title:                 req.Title,
		OriginalTitle:         req.Title,
		Metadata:              req.Metadata,
		CreatedAt:             time.Now().Unix(),
		FilesURL:              s.URL + "/v3/signature_request/files/" + id,
		DetailsURL:            s.URL + "/home/manage?guid=" + id,
		CCEmailAddresses:      req.CCEmailAddresses,
		CustomFields:          []any{},
		ResponseData:          []any{},
	}
	if sr.Metadata == nil {
		sr.Metadata = map[string]any{}
	}
	if sr.CCEmailAddresses == nil {
		sr.CCEmailAddresses = []string{}
	}
	if req.Subject != "" {
		sr.Subject = &req.Subject
	}
	if req.Message != "" {
		sr.Message = &req.Message
	}
	signing := s.URL + "/sign/" + id
	sr.SigningURL = &signing
	for i, signer := range req.Signers {
		order := i
		if signer.Order != nil {
			order = *signer.Order
		}
		sr.Signatures = append(sr.Signatures, signatureStatus{
			SignatureID:        randomHex(16),
			SignerEmailAddress: signer.EmailAddress,
			SignerName:         signer.Name,
			Order:              &order,
			StatusCode:         "awaiting_signature",
		})
	}
	s.mu.Lock()
	if s.signatureRequests == nil {
		s.signatureRequests = map[string][]signatureRequest{}
	}
	kept := append(s.signatureRequests[account], sr)
	if len(kept) > maxKeptRequests {
		kept = kept[len(kept)-maxKeptRequests:]
	}
	s.signatureRequests[account] = kept
	s.mu.Unlock()
	writeJSON(w, map[string]any{"signature_request": sr})
}

// handleSignatureRequestList answers GET /v3/signature_request/list for
// account, whose bearer token handleAPI has checked.
func (s *Server) handleSignatureRequestList(w http.ResponseWriter, r *http.Request, account string) {
	if r.Method != http.MethodGet {
		writeEnvelope(w, http.StatusMethodNotAllowed, "method_not_allowed", "Use GET.")
		return
	}
	q := r.URL.Query()
	page, err := intParam(q.Get("page"), "page", 1, 1, 1<<30)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_request", err)
		return
	}
	size, err := intParam(q.Get("page_size"), "page_size", 20, 1, 100)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_request", err)
		return
	}
	// Only the caller's own account (or "all", a team of one here): the
	// fake has no teams, and another account's requests are not theirs.
	if id := q.Get("account_id"); id != "" && id != "all" && id != account {
		writeAPIError(w, http.StatusForbidden, "forbidden", &apiError{msg: "You do not have access to this account.", path: "account_id"})
		return
	}
	s.mu.Lock()
	all := slices.Clone(s.signatureRequests[account])
	s.mu.Unlock()
	slices.Reverse(all) // newest first
	start := min((page-1)*size, len(all))
	end := min(start+size, len(all))
	out := all[start:end]
	if out == nil {
		out = []signatureRequest{}
	}
	writeJSON(w, map[string]any{
		"signature_requests": out,
		"list_info": map[string]int{
			"page":        page,
			"num_pages":   (len(all) + size - 1) / size,
			"num_results": len(all),
			"page_size":   size,
		},
	})
}

// intParam reads an integer query parameter between lo and hi, def if absent.
func intParam(v, name string, def, lo, hi int) (int, *apiError) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest(name, "%s must be an integer between %d and %d.", name, lo, hi)
	}
	return n, nil
}

// readSendRequest reads a send request's body in any of the content types
// Dropbox Sign accepts.
func readSendRequest(w http.ResponseWriter, r *http.Request) (*sendRequest, *apiError) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSendBody)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		var req sendRequest
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&req); err != nil {
			return nil, badRequest("", "The body is not a valid SignatureRequestSendRequest: %s.", jsonProblem(err))
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, badRequest("", "The body must hold one JSON object.")
		}
		return &req, nil
	case "application/x-www-form-urlencoded", "multipart/form-data":
		var err error
		if ct == "multipart/form-data" {
			err = r.ParseMultipartForm(maxSendInMemory)
		} else {
			err = r.ParseForm()
		}
		if err != nil {
			return nil, badRequest("", "The form body is unreadable or too large.")
		}
		if r.MultipartForm != nil {
			defer r.MultipartForm.RemoveAll()
		}
		return formSendRequest(r)
	default:
		return nil, badRequest("", "Content-Type must be application/json, application/x-www-form-urlencoded or multipart/form-data, not %q.", ct)
	}
}

// jsonProblem describes a JSON decoding error without echoing the body.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Sprintf("%s must be a %s", typeErr.Field, typeErr.Type)
	case errors.Is(err, io.EOF):
		return "it is empty"
	default:
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "it is too large"
		}
		return "it is not JSON"
	}
}

// signerField matches signers[i][field], the form encoding of signers.
var signerField = regexp.MustCompile(`^signers\[([0-9]{1,3})\]\[([a-z_]+)\]$`)

// formSendRequest reads a send request from r's parsed form, in Dropbox
// Sign's form encoding: signers[0][name], file_urls[] or file_urls[0],
// files[] or files[0].
func formSendRequest(r *http.Request) (*sendRequest, *apiError) {
	form := r.PostForm
	if r.MultipartForm != nil {
		form = r.MultipartForm.Value
	}
	req := &sendRequest{
		Title:   first(form["title"]),
		Subject: first(form["subject"]),
		Message: first(form["message"]),
	}
	if v := first(form["test_mode"]); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, badRequest("test_mode", "test_mode must be true, false, 1 or 0.")
		}
		req.TestMode = b
	}
	signers := map[int]*sendSigner{}
	for key, vals := range form {
		switch {
		case isListKey(key, "file_urls"):
			req.FileURLs = append(req.FileURLs, vals...)
		case isListKey(key, "cc_email_addresses"):
			req.CCEmailAddresses = append(req.CCEmailAddresses, vals...)
		case strings.HasPrefix(key, "signers["):
			m := signerField.FindStringSubmatch(key)
			if m == nil {
				return nil, badRequest(key, "Unknown parameter %q: signers are signers[i][name], signers[i][email_address] and signers[i][order].", key)
			}
			i, _ := strconv.Atoi(m[1])
			sg := signers[i]
			if sg == nil {
				if len(signers) >= maxSigners {
					return nil, badRequest("signers", "At most %d signers.", maxSigners)
				}
				sg = &sendSigner{}
				signers[i] = sg
			}
			switch m[2] {
			case "name":
				sg.Name = first(vals)
			case "email_address":
				sg.EmailAddress = first(vals)
			case "order":
				n, err := strconv.Atoi(first(vals))
				if err != nil {
					return nil, badRequest(key, "%s must be an integer.", key)
				}
				sg.Order = &n
			}
		}
	}
	for _, i := range slices.Sorted(maps.Keys(signers)) {
		req.Signers = append(req.Signers, *signers[i])
	}
	if r.MultipartForm != nil {
		for key, fhs := range r.MultipartForm.File {
			if isListKey(key, "files") || key == "file" {
				req.files += len(fhs)
			}
		}
	}
	return req, nil
}

// isListKey says whether key names an element of the list name: name,
// name[] or name[i].
func isListKey(key, name string) bool {
	rest, ok := strings.CutPrefix(key, name)
	if !ok {
		return false
	}
	if rest == "" || rest == "[]" {
		return true
	}
	inner, ok := strings.CutPrefix(rest, "[")
	if !ok {
		return false
	}
	inner, ok = strings.CutSuffix(inner, "]")
	_, err := strconv.Atoi(inner)
	return ok && err == nil
}

func first(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	return vals[0]
}

// validate checks what Dropbox Sign requires of a send request.
func (req *sendRequest) validate() *apiError {
	switch {
	case len(req.Signers) == 0:
		return badRequest("signers", "signers is required: at least one signer with a name and an email_address.")
	case len(req.Signers) > maxSigners:
		return badRequest("signers", "At most %d signers.", maxSigners)
	case req.files == 0 && len(req.FileURLs) == 0:
		return badRequest("file_urls", "Either files or file_urls is required.")
	case req.files > 0 && len(req.FileURLs) > 0:
		return badRequest("file_urls", "Give files or file_urls, not both.")
	case len(req.FileURLs) > maxFileURLs:
		return badRequest("file_urls", "At most %d file_urls.", maxFileURLs)
	case len(req.Title) > maxTitle:
		return badRequest("title", "title must be at most %d characters.", maxTitle)
	case len(req.Subject) > maxTitle:
		return badRequest("subject", "subject must be at most %d characters.", maxTitle)
	case len(req.Message) > maxMessage:
		return badRequest("message", "message must be at most %d characters.", maxMessage)
	}
	for i, u := range req.FileURLs {
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return badRequest(fmt.Sprintf("file_urls[%d]", i), "file_urls[%d] must be an http or https URL.", i)
		}
	}
	for i, sg := range req.Signers {
		if strings.TrimSpace(sg.Name) == "" {
			return badRequest(fmt.Sprintf("signers[%d][name]", i), "This value should not be blank")
		}
		if !validEmail(sg.EmailAddress) {
			return badRequest(fmt.Sprintf("signers[%d][email_address]", i), "This value is not a valid email address.")
		}
	}
	for i, cc := range req.CCEmailAddresses {
		if !validEmail(cc) {
			return badRequest(fmt.Sprintf("cc_email_addresses[%d]", i), "This value is not a valid email address.")
		}
	}
	return nil
}

// validEmail is a plausibility check, name@domain, not RFC 5322.
func validEmail(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && len(s) <= 254 && !strings.ContainsAny(s, " \t\r\n<>")
}
