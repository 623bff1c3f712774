package onfido

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// vectors is testdata/vectors.json, written by testdata/gen from Onfido's documented
// algorithm (and Onfido's published examples) and never by this package.
type vectors struct {
	App struct {
		Name    string   `json:"name"`
		Secrets []string `json:"secrets"`
	} `json:"app"`
	ReceivedAt time.Time `json:"receivedAt"`
	Cases      []struct {
		Name    string            `json:"name"`
		Source  string            `json:"source"`
		Secrets []string          `json:"secrets"`
		Body    string            `json:"body"`
		BodyHex string            `json:"bodyHex"`
		Headers map[string]string `json:"headers"`
		Error   string            `json:"error"`
		Want    *struct {
			ApplicantID    string    `json:"applicantId"`
			Type           string    `json:"type"`
			ProviderStatus string    `json:"providerStatus"`
			ExternalUserID string    `json:"externalUserId"`
			EventAt        time.Time `json:"eventAt"`
			EventAtSource  string    `json:"eventAtSource"`
			ContentID      string    `json:"contentId"`
			Class          string    `json:"class"`
			Status         string    `json:"status"`
		} `json:"want"`
	} `json:"cases"`
}

func loadVectors(tb testing.TB) vectors {
	tb.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		tb.Fatalf("vectors: %v (regenerate: go run ./ingest/onfido/testdata/gen > ingest/onfido/testdata/vectors.json)", err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatalf("vectors: %v", err)
	}
	if len(v.Cases) < 30 {
		tb.Fatalf("vectors: %d cases: the file is cut short", len(v.Cases))
	}
	return v
}

// app is the vectors' app, with secrets in place of its own when given (Onfido's
// published examples are signed with tokens of their own).
func (v vectors) app(secrets ...string) *App {
	if len(secrets) == 0 {
		secrets = v.App.Secrets
	}
	a := &App{Name: v.App.Name}
	for _, s := range secrets {
		a.Secrets = append(a.Secrets, []byte(s))
	}
	return a
}

func httpHeader(m map[string]string) http.Header {
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

func caseBody(tb testing.TB, body, bodyHex string) []byte {
	if bodyHex == "" {
		return []byte(body)
	}
	b, err := hex.DecodeString(bodyHex)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// codeKinds is the kind each code must come with (PROVIDERS.md).
var codeKinds = map[string]domain.ErrorKind{
	"bad_signature":     domain.KindUnauthorized,
	"malformed_payload": domain.KindInvalid,
	"invalid_payload":   domain.KindUnprocessable,
}

var classNames = map[domain.Class]string{domain.ClassStatus: "status", domain.ClassAnnotation: "annotation", domain.ClassUnknown: "unknown"}

// TestVectors opens every vector: accepted ones become exactly the event the generator
// expects, refused ones fail with the expected code and kind, and no message repeats the
// body, a secret or a signature.
func TestVectors(t *testing.T) {
	v := loadVectors(t)
	published := 0
	for _, c := range v.Cases {
		if c.Source != "" {
			published++
		}
		t.Run(c.Name, func(t *testing.T) {
			a := v.app(c.Secrets...)
			body := caseBody(t, c.Body, c.BodyHex)
			ev, id, err := a.Open(body, httpHeader(c.Headers), v.ReceivedAt, Options{KeepRaw: true})
			if c.Error != "" {
				if err == nil {
					t.Fatalf("accepted, want %s", c.Error)
				}
				if domain.CodeOf(err) != c.Error || domain.KindOf(err) != codeKinds[c.Error] {
					t.Fatalf("code %q kind %v, want %q %v: %v", domain.CodeOf(err), domain.KindOf(err), c.Error, codeKinds[c.Error], err)
				}
				for _, secret := range append(append(v.App.Secrets, c.Secrets...), c.Headers["X-SHA2-Signature"], "user-4711", "check-123", "2f152409") {
					if secret != "" && strings.Contains(err.Error(), secret) {
						t.Fatalf("message %q holds %q", err, secret)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			w := c.Want
			if ev.ApplicantID != domain.ApplicantID(w.ApplicantID) || ev.Type != domain.EventType(w.Type) ||
				ev.ProviderStatus != w.ProviderStatus || ev.ExternalUserID != domain.ExternalUserID(w.ExternalUserID) {
				t.Fatalf("event %s %s %q %q, want %s %s %q %q", ev.ApplicantID, ev.Type, ev.ProviderStatus, ev.ExternalUserID,
					w.ApplicantID, w.Type, w.ProviderStatus, w.ExternalUserID)
			}
			if !ev.EventAt.Equal(w.EventAt) || ev.EventAtSource != w.EventAtSource || ev.EventAt.Location() != time.UTC {
				t.Fatalf("eventAt %s (%s), want %s (%s)", ev.EventAt, ev.EventAtSource, w.EventAt, w.EventAtSource)
			}
			if id != w.ContentID || string(ev.ContentID) != id {
				t.Fatalf("content id %s, want %s", id, w.ContentID)
			}
			if ev.V != domain.StoredVersion || ev.Provider != "onfido" || ev.Origin != domain.OriginWebhook ||
				ev.AppKey != domain.AppKey(v.App.Name) || !ev.ReceivedAt.Equal(v.ReceivedAt) || string(ev.Payload) != string(body) {
				t.Fatalf("event frame %+v", ev)
			}
			if ev.Raw == nil || ev.Raw.Body != string(body) || ev.Raw.Signature != c.Headers["X-SHA2-Signature"] {
				t.Fatalf("raw %+v", ev.Raw)
			}
			class, status := domain.ProviderOnfido.Classify(ev.Type, ev.ProviderStatus)
			if classNames[class] != w.Class || string(status) != w.Status {
				t.Fatalf("classified %s %q, want %s %q", classNames[class], status, w.Class, w.Status)
			}
		})
	}
	if published < 2 {
		t.Fatalf("%d of Onfido's published examples in the vectors, want 2", published)
	}
}

// TestSignMatchesVectors holds Sign, which the simulator and the handler's tests use, to
// the signatures the generator made with crypto/hmac.
func TestSignMatchesVectors(t *testing.T) {
	v := loadVectors(t)
	signed := 0
	for _, c := range v.Cases {
		if c.Error != "" || c.Headers["X-SHA2-Signature"] != strings.ToLower(c.Headers["X-SHA2-Signature"]) {
			continue
		}
		body := caseBody(t, c.Body, c.BodyHex)
		match := false
		for _, s := range append(v.App.Secrets, c.Secrets...) {
			match = match || Sign([]byte(s), body)[HeaderSignature] == c.Headers["X-SHA2-Signature"]
		}
		if !match {
			t.Errorf("%s: Sign gives none of the vector's signature", c.Name)
		}
		signed++
	}
	if signed < 10 {
		t.Fatalf("only %d signed vectors", signed)
	}
}
