package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/ingest/providertest"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
)

// TestOpenAPIWebhooks checks the webhook part of openapi.yaml against the real ingest
// handler over a real embedded JetStream: every status a sender can see, each with its
// documented body and headers.
func TestOpenAPIWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded NATS server")
	}
	doc := loadSpec(t)
	ctx := t.Context()
	js := jstest.Start(t)
	events := js.EventLog(t, eventlog.Config{}, nil)
	keys := allpass.Keys{HMAC: bytes.Repeat([]byte{7}, 32)}
	copy(keys.Secret[:], bytes.Repeat([]byte{9}, 32))
	app := &allpass.App{Name: "main", AppKey: app1, Method: allpass.MethodCBC, Keys: []allpass.Keys{keys}}
	h, err := ingest.NewHandler(ingest.HandlerConfig{Apps: []*allpass.App{app}, Events: events, MaxBody: 8 << 10, KeepRaw: true})
	if err != nil {
		t.Fatal(err)
	}

	seal := func(payload map[string]any) ([]byte, string) {
		t.Helper()
		plain, _ := json.Marshal(payload)
		body, sig, err := allpass.Seal(allpass.MethodCBC, keys, plain, "2024-05-01T09:00:00Z", nil)
		if err != nil {
			t.Fatal(err)
		}
		return body, sig
	}
	valid := map[string]any{"type": "applicantCreated", "id": string(idA), "appKey": string(app1), "externalUserId": "user-1"}
	body, sig := seal(valid)
	noID, noIDSig := seal(map[string]any{"type": "applicantCreated", "appKey": string(app1)})

	post := func(path string, body []byte, sig string) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if sig != "" {
			req.Header.Set("x-allpass-signature", sig)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, c := range []struct {
		path string
		body []byte
		sig  string
		want int
	}{
		{"/webhooks/allpass/main", body, sig, http.StatusOK},
		{"/webhooks/allpass/main", body, sig, http.StatusOK}, // the retry: duplicate
		{"/webhooks/allpass/" + string(app1), body, sig, http.StatusOK},
		{"/webhooks/allpass", body, sig, http.StatusOK},
		{"/webhooks/allpass/main", body, strings.Repeat("0", 64), http.StatusUnauthorized},
		{"/webhooks/allpass", body, "", http.StatusUnauthorized},
		{"/webhooks/allpass/main", []byte(`{"data":`), sig, http.StatusBadRequest},
		{"/webhooks/allpass/other", body, sig, http.StatusNotFound},
		{"/webhooks/allpass/main", bytes.Repeat([]byte("x"), 9<<10), sig, http.StatusRequestEntityTooLarge},
		{"/webhooks/allpass/main", noID, noIDSig, http.StatusUnprocessableEntity},
	} {
		rec := post(c.path, c.body, c.sig)
		if rec.Code != c.want {
			t.Errorf("POST %s: %d, want %d: %s", c.path, rec.Code, c.want, rec.Body)
		}
		doc.checkOp(t, http.MethodPost, c.path, rec)
	}

	// Another provider's path (DESIGN.md section 13), against the same document.
	ss, err := ingest.NewProviderApp(ingest.ProviderAppConfig{Provider: domain.ProviderSumsub, Name: "ss", Secrets: [][]byte{[]byte("ss-secret")}})
	if err != nil {
		t.Fatal(err)
	}
	ph, err := ingest.NewHandler(ingest.HandlerConfig{Providers: []*ingest.ProviderApp{ss}, Events: events, MaxBody: 8 << 10, KeepRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	ssBody := providertest.Body(domain.ProviderSumsub, providertest.Event{ID: "65f1c2a9e4b0a1b2c3d4e5f6", Type: "applicantCreated",
		Status: "init", EventID: "req-1", At: time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)})
	signed := func(b []byte) http.Header {
		return providertest.Sign(domain.ProviderSumsub, []byte("ss-secret"), "", b, time.Now())
	}
	badID := bytes.ReplaceAll(ssBody, []byte("65f1c2a9e4b0a1b2c3d4e5f6"), []byte("65f1c2a9.e4b0"))
	for _, c := range []struct {
		method, path string
		body         []byte
		h            http.Header
		want         int
	}{
		{http.MethodPost, "/webhooks/sumsub/ss", ssBody, signed(ssBody), http.StatusOK},
		{http.MethodPost, "/webhooks/sumsub/ss", ssBody, signed(ssBody), http.StatusOK}, // resent: duplicate
		{http.MethodPost, "/webhooks/sumsub/ss", ssBody, signed([]byte("{}")), http.StatusUnauthorized},
		{http.MethodPost, "/webhooks/sumsub/ss", []byte(`{"a":`), signed([]byte(`{"a":`)), http.StatusBadRequest},
		{http.MethodPost, "/webhooks/sumsub/ss", badID, signed(badID), http.StatusUnprocessableEntity},
		{http.MethodPost, "/webhooks/sumsub/other", ssBody, signed(ssBody), http.StatusNotFound},
		{http.MethodPost, "/webhooks/persona/ss", ssBody, signed(ssBody), http.StatusNotFound},
		{http.MethodPost, "/webhooks/sumsub/ss", bytes.Repeat([]byte(" "), 9<<10), signed(ssBody), http.StatusRequestEntityTooLarge},
		{http.MethodGet, "/webhooks/sumsub/ss", nil, nil, http.StatusMethodNotAllowed},
	} {
		req := httptest.NewRequestWithContext(ctx, c.method, c.path, bytes.NewReader(c.body))
		for k, v := range c.h {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		ph.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, rec.Code, c.want, rec.Body)
		}
		if c.method == http.MethodGet {
			if err := doc.validateAs(http.MethodPost, c.path, rec); err != nil {
				t.Errorf("GET %s: the 405 does not match the POST's: %v", c.path, err)
			}
			continue
		}
		doc.checkOp(t, c.method, c.path, rec)
	}

	// Another method on a webhook path: 405 with Allow: POST, in the form the POST lists;
	// an unknown path: 404 not_found in the webhook error form.
	for _, path := range []string{"/webhooks/allpass/main", "/webhooks/allpass"} {
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions} {
			req := httptest.NewRequestWithContext(ctx, m, path, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != http.MethodPost {
				t.Errorf("%s %s: %d Allow %q, want 405 Allow POST", m, path, rec.Code, rec.Header().Get("Allow"))
			}
			if err := doc.validateAs(http.MethodPost, path, rec); err != nil {
				t.Errorf("%s %s: the 405 does not match the POST's: %v", m, path, err)
			}
		}
	}
	for _, p := range []string{"/webhooks/allpass/{app}", "/webhooks/allpass"} {
		if r := doc.doc.Paths.Value(p).Post.Responses.Status(http.StatusMethodNotAllowed); r == nil || r.Ref != "#/components/responses/WebhookMethodNotAllowed" {
			t.Errorf("POST %s: does not list WebhookMethodNotAllowed as its 405", p)
		}
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/webhooks/other/main", bytes.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var e struct{ Error struct{ Code string } }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusNotFound || e.Error.Code != "not_found" {
		t.Errorf("POST to an unknown path: %d %s", rec.Code, rec.Body)
	}
	if err := doc.doc.Components.Schemas["WebhookErrorBody"].Value.VisitJSON(decode(t, rec.Body.Bytes())); err != nil {
		t.Errorf("POST to an unknown path: %v", err)
	}

	// The log gone: 503 with Retry-After, nothing claimed.
	js.Close()
	rec = post("/webhooks/allpass/main", body, sig)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("log closed: %d: %s", rec.Code, rec.Body)
	}
	doc.checkOp(t, http.MethodPost, "/webhooks/allpass/main", rec)
}
