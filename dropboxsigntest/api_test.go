package dropboxsigntest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dropboxsign-go/dropboxsign/dropboxsigntest"
)

// apiCall sends one API request with token (none if empty) and decodes the
// JSON answer.
func apiCall(t *testing.T, srv *dropboxsigntest.Server, method, path, token, contentType string, body []byte) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: %d, body not JSON: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, m
}

func sendJSON(t *testing.T, srv *dropboxsigntest.Server, token string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	return apiCall(t, srv, "POST", dropboxsigntest.SignatureRequestSendPath, token, "application/json", b)
}

func list(t *testing.T, srv *dropboxsigntest.Server, token, query string) (int, map[string]any) {
	t.Helper()
	return apiCall(t, srv, "GET", dropboxsigntest.SignatureRequestListPath+query, token, "", nil)
}

// errorOf returns the error envelope's error_name and error_path, failing
// the test if the answer is not Dropbox Sign's envelope.
func errorOf(t *testing.T, m map[string]any) (name, path string) {
	t.Helper()
	e, ok := m["error"].(map[string]any)
	if !ok || e["error_name"] == nil || e["error_msg"] == "" || e["error_msg"] == nil {
		t.Fatalf("not an error envelope: %v", m)
	}
	path, _ = e["error_path"].(string)
	return e["error_name"].(string), path
}

func TestSignatureRequestSendThenList(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	tok := srv.IssueToken()

	status, sent := sendJSON(t, srv, tok.AccessToken, map[string]any{
		"title":     "NDA with Acme Co.",
		"subject":   "The NDA we talked about",
		"message":   "Please sign.",
		"test_mode": true,
		"file_urls": []string{"https://example.com/nda.pdf"},
		"signers": []map[string]any{
			{"email_address": "jack@example.com", "name": "Jack"},
			{"email_address": "jill@example.com", "name": "Jill"},
		},
	})
	if status != 200 {
		t.Fatalf("send: %d %v", status, sent)
	}
	sr := sent["signature_request"].(map[string]any)
	id, _ := sr["signature_request_id"].(string)
	if id == "" || sr["title"] != "NDA with Acme Co." || sr["subject"] != "The NDA we talked about" ||
		sr["message"] != "Please sign." || sr["test_mode"] != true || sr["is_complete"] != false {
		t.Errorf("send answered %v", sr)
	}
	sigs := sr["signatures"].([]any)
	if len(sigs) != 2 {
		t.Fatalf("signatures = %v", sigs)
	}
	jill := sigs[1].(map[string]any)
	if jill["signer_email_address"] != "jill@example.com" || jill["signer_name"] != "Jill" ||
		jill["status_code"] != "awaiting_signature" || jill["order"] != 1.0 {
		t.Errorf("second signature = %v", jill)
	}

	// A second request, as a form: the list has both, newest first.
	form := url.Values{
		"title":                     {"Lease"},
		"test_mode":                 {"1"},
		"file_urls[]":               {"https://example.com/lease.pdf"},
		"signers[0][email_address]": {"tenant@example.com"},
		"signers[0][name]":          {"Tenant"},
	}
	status, sent2 := apiCall(t, srv, "POST", dropboxsigntest.SignatureRequestSendPath, tok.AccessToken,
		"application/x-www-form-urlencoded", []byte(form.Encode()))
	if status != 200 {
		t.Fatalf("form send: %d %v", status, sent2)
	}
	id2 := sent2["signature_request"].(map[string]any)["signature_request_id"]

	status, listed := list(t, srv, tok.AccessToken, "")
	if status != 200 {
		t.Fatalf("list: %d %v", status, listed)
	}
	reqs := listed["signature_requests"].([]any)
	if len(reqs) != 2 || reqs[0].(map[string]any)["signature_request_id"] != id2 ||
		reqs[1].(map[string]any)["signature_request_id"] != id {
		t.Errorf("list = %v, want %v then %s", reqs, id2, id)
	}
	info := listed["list_info"].(map[string]any)
	if info["page"] != 1.0 || info["num_pages"] != 1.0 || info["num_results"] != 2.0 || info["page_size"] != 20.0 {
		t.Errorf("list_info = %v", info)
	}

	// Paging: one a page, page 2 is the older one.
	_, p2 := list(t, srv, tok.AccessToken, "?page=2&page_size=1")
	reqs = p2["signature_requests"].([]any)
	info = p2["list_info"].(map[string]any)
	if len(reqs) != 1 || reqs[0].(map[string]any)["signature_request_id"] != id ||
		info["page"] != 2.0 || info["num_pages"] != 2.0 || info["num_results"] != 2.0 || info["page_size"] != 1.0 {
		t.Errorf("page 2 of 1 each: %v", p2)
	}
	// Past the end: no requests, the same totals.
	_, p3 := list(t, srv, tok.AccessToken, "?page=3&page_size=1")
	if reqs := p3["signature_requests"].([]any); len(reqs) != 0 || p3["list_info"].(map[string]any)["num_results"] != 2.0 {
		t.Errorf("page 3 of 1 each: %v", p3)
	}

	if st := srv.Stats(); st.APICalls != 5 || st.APIRejected != 0 {
		t.Errorf("stats = %+v", st)
	}
	if u := srv.APIUses()[tok.AccessToken]; u.Count != 5 {
		t.Errorf("APIUses count = %d, want 5", u.Count)
	}
}

func TestSignatureRequestSendMultipart(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	tok := srv.IssueToken()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("title", "Uploaded")
	mw.WriteField("signers[0][email_address]", "a@example.com")
	mw.WriteField("signers[0][name]", "A")
	fw, _ := mw.CreateFormFile("files[0]", "doc.pdf")
	fw.Write([]byte("%PDF-1.4 not really"))
	mw.Close()
	status, m := apiCall(t, srv, "POST", dropboxsigntest.SignatureRequestSendPath, tok.AccessToken, mw.FormDataContentType(), body.Bytes())
	if status != 200 || m["signature_request"].(map[string]any)["title"] != "Uploaded" {
		t.Fatalf("multipart send: %d %v", status, m)
	}
}

func TestSignatureRequestSendValidates(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	tok := srv.IssueToken()
	file := []string{"https://example.com/a.pdf"}
	signer := []map[string]any{{"email_address": "a@example.com", "name": "A"}}
	for _, tc := range []struct {
		name     string
		body     map[string]any
		wantPath string
	}{
		{"no signers", map[string]any{"file_urls": file}, "signers"},
		{"empty signers", map[string]any{"file_urls": file, "signers": []any{}}, "signers"},
		{"no files", map[string]any{"signers": signer}, "file_urls"},
		{"signer without email", map[string]any{"file_urls": file, "signers": []map[string]any{{"name": "A"}}}, "signers[0][email_address]"},
		{"signer with a bad email", map[string]any{"file_urls": file, "signers": []map[string]any{{"name": "A", "email_address": "nobody"}}}, "signers[0][email_address]"},
		{"signer without name", map[string]any{"file_urls": file, "signers": []map[string]any{{"email_address": "a@example.com"}}}, "signers[0][name]"},
		{"title too long", map[string]any{"file_urls": file, "signers": signer, "title": strings.Repeat("t", 256)}, "title"},
		{"message too long", map[string]any{"file_urls": file, "signers": signer, "message": strings.Repeat("m", 5001)}, "message"},
		{"file URL not a URL", map[string]any{"file_urls": []string{"a.pdf"}, "signers": signer}, "file_urls[0]"},
		{"test_mode not a boolean", map[string]any{"file_urls": file, "signers": signer, "test_mode": "yes"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := sendJSON(t, srv, tok.AccessToken, tc.body)
			name, path := errorOf(t, m)
			if status != 400 || name != "bad_request" || path != tc.wantPath {
				t.Errorf("got %d %s at %q, want 400 bad_request at %q: %v", status, name, path, tc.wantPath, m)
			}
		})
	}
	for _, tc := range []struct{ name, contentType, body string }{
		{"not JSON", "application/json", "{"},
		{"two JSON values", "application/json", `{} {}`},
		{"unknown content type", "text/plain", "title=x"},
		{"form signer without email", "application/x-www-form-urlencoded", "file_urls[]=https://example.com/a.pdf&signers[0][name]=A"},
		{"form bad test_mode", "application/x-www-form-urlencoded", "test_mode=maybe&file_urls[]=https://example.com/a.pdf&signers[0][name]=A&signers[0][email_address]=a@example.com"},
		{"form unknown signer parameter", "application/x-www-form-urlencoded", "signers[x]=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := apiCall(t, srv, "POST", dropboxsigntest.SignatureRequestSendPath, tok.AccessToken, tc.contentType, []byte(tc.body))
			if name, _ := errorOf(t, m); status != 400 || name != "bad_request" {
				t.Errorf("got %d %s, want 400 bad_request: %v", status, name, m)
			}
		})
	}
	for _, q := range []string{"?page=0", "?page=x", "?page_size=0", "?page_size=101"} {
		status, m := list(t, srv, tok.AccessToken, q)
		if name, _ := errorOf(t, m); status != 400 || name != "bad_request" {
			t.Errorf("list%s: %d %s, want 400 bad_request", q, status, name)
		}
	}
	if status, m := apiCall(t, srv, "GET", dropboxsigntest.SignatureRequestSendPath, tok.AccessToken, "", nil); status != 405 {
		t.Errorf("GET send: %d %v", status, m)
	}
	if status, m := apiCall(t, srv, "POST", dropboxsigntest.SignatureRequestListPath, tok.AccessToken, "", nil); status != 405 {
		t.Errorf("POST list: %d %v", status, m)
	}
	// Nothing refused was kept.
	if _, m := list(t, srv, tok.AccessToken, ""); len(m["signature_requests"].([]any)) != 0 {
		t.Errorf("refused requests were stored: %v", m)
	}
}

func TestSignatureRequestsAreTheAccountsOwn(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	alice, bob := srv.IssueToken(), srv.IssueToken()
	for i := range 3 {
		status, m := sendJSON(t, srv, alice.AccessToken, map[string]any{
			"title":     fmt.Sprint("alice ", i),
			"file_urls": []string{"https://example.com/a.pdf"},
			"signers":   []map[string]any{{"email_address": "s@example.com", "name": "S"}},
		})
		if status != 200 {
			t.Fatalf("send: %d %v", status, m)
		}
	}
	status, m := list(t, srv, bob.AccessToken, "")
	info := m["list_info"].(map[string]any)
	if status != 200 || len(m["signature_requests"].([]any)) != 0 || info["num_results"] != 0.0 || info["num_pages"] != 0.0 {
		t.Errorf("another account's list: %d %v", status, m)
	}
	// Asking for alice's account by id does not help.
	_, aliceAccount := apiCall(t, srv, "GET", dropboxsigntest.AccountPath, alice.AccessToken, "", nil)
	id := aliceAccount["account"].(map[string]any)["account_id"].(string)
	status, m = list(t, srv, bob.AccessToken, "?account_id="+url.QueryEscape(id))
	if name, _ := errorOf(t, m); status != 403 || name != "forbidden" {
		t.Errorf("bob listing alice's account: %d %v", status, m)
	}
	// A refreshed token of the same grant sees the same requests.
	status, refreshed := post(t, srv, "?refresh", refreshBody(srv, alice.RefreshToken))
	if status != 200 {
		t.Fatalf("refresh: %d %v", status, refreshed)
	}
	if _, m := list(t, srv, refreshed["access_token"].(string), ""); m["list_info"].(map[string]any)["num_results"] != 3.0 {
		t.Errorf("alice's list with a refreshed token: %v", m)
	}
}

func TestSignatureRequestRoutesNeedALiveToken(t *testing.T) {
	srv := dropboxsigntest.NewServer()
	defer srv.Close()
	tok := srv.IssueToken()
	body := []byte(`{"file_urls":["https://example.com/a.pdf"],"signers":[{"email_address":"a@example.com","name":"A"}]}`)
	for _, token := range []string{"", "at_unknown"} {
		status, m := apiCall(t, srv, "POST", dropboxsigntest.SignatureRequestSendPath, token, "application/json", body)
		if name, _ := errorOf(t, m); status != 401 || name != "unauthorized" {
			t.Errorf("send with token %q: %d %v", token, status, m)
		}
		status, m = list(t, srv, token, "")
		if name, _ := errorOf(t, m); status != 401 || name != "unauthorized" {
			t.Errorf("list with token %q: %d %v", token, status, m)
		}
	}
	if st := srv.Stats(); st.APIRejected != 4 {
		t.Errorf("APIRejected = %d, want 4", st.APIRejected)
	}
	srv.RevokeAccessTokens()
	if status, m := list(t, srv, tok.AccessToken, ""); status != 401 {
		t.Errorf("list with a revoked token: %d %v", status, m)
	}
	// Injected API faults answer these routes too.
	srv.InjectAPIFault(dropboxsigntest.Fault{Status: 503, Body: `{"error":{"error_msg":"down","error_name":"service_unavailable"}}`, Count: 1})
	tok = srv.IssueToken()
	if status, _ := list(t, srv, tok.AccessToken, ""); status != 503 {
		t.Errorf("list under a fault: %d", status)
	}
	if st := srv.Stats(); st.APIFaults != 1 {
		t.Errorf("APIFaults = %d", st.APIFaults)
	}
}
