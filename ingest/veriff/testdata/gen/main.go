// Command gen writes ingest/veriff's test vectors from Veriff's documented algorithm, with
// crypto/hmac directly and nothing of the adapter:
//
//	go run ./ingest/veriff/testdata/gen > ingest/veriff/testdata/vectors.json
//
// A webhook carries X-AUTH-CLIENT (the integration's API key) and X-HMAC-SIGNATURE, the hex
// HMAC-SHA256 of the raw body under the shared secret key
// (https://devdocs.veriff.com/docs/hmac-authentication-and-endpoint-security); a GET of the
// API signs the session id instead (https://devdocs.veriff.com/docs/general-faq). Bodies
// follow the documented shapes of the decision webhook
// (https://devdocs.veriff.com/docs/decision-webhook) and the event webhook
// (https://devdocs.veriff.com/docs/event-webhook), with values of our own. Veriff's pages
// publish no example signature to include. The expected content id is SHA-256 over
// length-prefixed "veriff", the app's name and the body (DESIGN.md section 13: Veriff's
// webhooks carry no event id). Output is deterministic.
package main

import (
	"crypto/sha256"
	"os"
	"strings"

	"github.com/kycstate/kycstate/internal/vectorfile"
)

const (
	appName    = "ve"
	apiKey     = "6a3b1f0e-2c4d-4e5f-8a9b-0c1d2e3f4a5b"
	current    = "2f8e6d4c-0b1a-4938-8776-655443322110"
	previous   = "0d1c2b3a-4958-4766-8574-635241302f1e"
	otherKey   = "11111111-2222-4333-8444-555555555555"
	receivedAt = "2026-03-01T10:00:00Z"
	session    = "f04bdb47-d3be-4b28-b028-a652feb060b5"
	session2   = "a1c68aea-7f4d-478d-80ab-ca9356074f69"
)

// file is the vectors file with what Veriff's status API adds: the signatures of its GETs.
type file struct {
	vectorfile.File
	GetSigns []GetSig `json:"getSignatures"`
}

type (
	Case = vectorfile.Case
	Want = vectorfile.Want
)

// GetSig is the X-HMAC-SIGNATURE of GET /v1/sessions/{sessionId}/decision.
type GetSig struct {
	Secret    string `json:"secret"`
	SessionID string `json:"sessionId"`
	Signature string `json:"signature"`
}

func sign(secret, msg string) string { return vectorfile.HMACHex(sha256.New, secret, msg) }

func contentID(body string) string { return vectorfile.ContentID("veriff", appName, body) }

// headers signs body with secret, as Veriff does.
func headers(secret, body string) map[string]string {
	return map[string]string{"X-AUTH-CLIENT": apiKey, "X-HMAC-SIGNATURE": sign(secret, body)}
}

// decision is a decision webhook's body in the documented shape.
func decision(id, status string, code int, vendorData, decisionTime string) string {
	v := map[string]any{
		"id": id, "attemptId": "e30122d1-740b-4764-853f-470374a7abf4", "code": code,
		"status": status, "reason": nil, "reasonCode": nil, "comments": []any{},
		"person":         map[string]any{"firstName": "JANE", "lastName": "ROE", "dateOfBirth": "1990-02-03"},
		"document":       map[string]any{"type": "PASSPORT", "country": "EE", "validUntil": "2031-01-01"},
		"acceptanceTime": "2026-03-01T09:40:12.000Z", "additionalVerifiedData": map[string]any{},
	}
	if vendorData != "-" {
		v["vendorData"] = vendorData
	}
	if decisionTime != "-" {
		v["decisionTime"] = decisionTime
	}
	return vectorfile.MustJSON(map[string]any{"status": "success", "verification": v, "technicalData": map[string]any{"ip": "192.0.2.10"}})
}

// event is an event webhook's body in the documented shape.
func event(id, action string, code int, vendorData string) string {
	return vectorfile.MustJSON(map[string]any{
		"id": id, "attemptId": "e30122d1-740b-4764-853f-470374a7abf4", "feature": "selfid",
		"code": code, "action": action, "vendorData": vendorData, "endUserId": nil,
	})
}

func accepted(name, body, secret string, w Want) Case {
	return vectorfile.Accepted(name, headers(secret, body), body, contentID(body), w)
}

func refused(name, body string, h map[string]string, code string) Case {
	return vectorfile.Refused(name, h, body, code)
}

func main() {
	const dt = "2026-03-01T09:58:31.916Z"
	approved := decision(session, "approved", 9001, "user-4711", dt)
	started := event(session, "started", 7001, "user-4711")
	deep := strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65)
	truncated := approved[:len(approved)/2]

	cases := []Case{
		accepted("decision approved", approved, current, vectorfile.Expect(session, "decision", "approved", "user-4711", dt, "payload.verification.decisionTime", "status", "APPROVED")),
		accepted("decision signed with the previous secret (rotation)", decision(session, "declined", 9102, "user-4711", dt), previous,
			vectorfile.Expect(session, "decision", "declined", "user-4711", dt, "payload.verification.decisionTime", "status", "REJECTED")),
		accepted("decision resubmission_requested", decision(session, "resubmission_requested", 9103, "user-4711", dt), current,
			vectorfile.Expect(session, "decision", "resubmission_requested", "user-4711", dt, "payload.verification.decisionTime", "status", "INCOMPLETE")),
		accepted("decision expired, no vendorData", decision(session, "expired", 9104, "-", dt), current,
			vectorfile.Expect(session, "decision", "expired", "", dt, "payload.verification.decisionTime", "status", "INCOMPLETE")),
		accepted("decision abandoned", decision(session, "abandoned", 9104, "user-4711", dt), current,
			vectorfile.Expect(session, "decision", "abandoned", "user-4711", dt, "payload.verification.decisionTime", "status", "INCOMPLETE")),
		accepted("decision review", decision(session2, "review", 9121, "user-4711", dt), current,
			vectorfile.Expect(session2, "decision", "review", "user-4711", dt, "payload.verification.decisionTime", "status", "IN_REVIEW")),
		accepted("decision without decisionTime: the receive time, not acceptanceTime", decision(session, "approved", 9001, "user-4711", "-"), current,
			vectorfile.Expect(session, "decision", "approved", "user-4711", receivedAt, "received", "status", "APPROVED")),
		accepted("decision with an unreadable decisionTime", decision(session, "approved", 9001, "user-4711", "yesterday"), current,
			vectorfile.Expect(session, "decision", "approved", "user-4711", receivedAt, "received", "status", "APPROVED")),
		accepted("decision of a status Veriff may add", decision(session, "on_hold", 9999, "user-4711", dt), current,
			vectorfile.Expect(session, "decision", "on_hold", "user-4711", dt, "payload.verification.decisionTime", "unknown", "")),
		accepted("event started", started, current, vectorfile.Expect(session, "started", "started", "user-4711", receivedAt, "received", "status", "INCOMPLETE")),
		accepted("event submitted", event(session, "submitted", 7002, "user-4711"), previous,
			vectorfile.Expect(session, "submitted", "submitted", "user-4711", receivedAt, "received", "status", "IN_PROGRESS")),
		accepted("event of an action Veriff may add", event(session, "resubmitted", 7003, "user-4711"), current,
			vectorfile.Expect(session, "resubmitted", "resubmitted", "user-4711", receivedAt, "received", "unknown", "")),
		func() Case {
			c := accepted("upper-case hex signature", approved, current, vectorfile.Expect(session, "decision", "approved", "user-4711", dt, "payload.verification.decisionTime", "status", "APPROVED"))
			c.Headers["X-HMAC-SIGNATURE"] = strings.ToUpper(c.Headers["X-HMAC-SIGNATURE"])
			return c
		}(),

		refused("forged: body changed after signing", strings.Replace(approved, "approved", "declined", 1), headers(current, approved), "bad_signature"),
		refused("signed with a secret the app does not hold", approved, headers(otherKey, approved), "bad_signature"),
		refused("no X-HMAC-SIGNATURE", approved, map[string]string{"X-AUTH-CLIENT": apiKey}, "bad_signature"),
		refused("X-HMAC-SIGNATURE not hex", approved, map[string]string{"X-AUTH-CLIENT": apiKey, "X-HMAC-SIGNATURE": "not-hex"}, "bad_signature"),
		refused("X-HMAC-SIGNATURE truncated", approved, map[string]string{"X-AUTH-CLIENT": apiKey, "X-HMAC-SIGNATURE": sign(current, approved)[:62]}, "bad_signature"),
		refused("X-AUTH-CLIENT of another integration", approved, map[string]string{"X-AUTH-CLIENT": otherKey, "X-HMAC-SIGNATURE": sign(current, approved)}, "bad_signature"),
		refused("no X-AUTH-CLIENT", approved, map[string]string{"X-HMAC-SIGNATURE": sign(current, approved)}, "bad_signature"),
		refused("truncated delivery, signature of the whole body", truncated, headers(current, approved), "bad_signature"),
		refused("truncated body, signed as it is", truncated, headers(current, truncated), "malformed_payload"),
		refused("malformed body with a bad signature: 401 before 400", truncated, headers(otherKey, truncated), "bad_signature"),
		refused("not an object", `["approved"]`, headers(current, `["approved"]`), "malformed_payload"),
		refused("not UTF-8", "{\"id\":\"\xff\"}", headers(current, "{\"id\":\"\xff\"}"), "malformed_payload"),
		refused("nested too deep", deep, headers(current, deep), "malformed_payload"),
		func() Case {
			b := `{"status":"success","verification":{"id":"` + session + `","id":"` + session2 + `","status":"approved"}}`
			return refused("verification.id twice", b, headers(current, b), "malformed_payload")
		}(),
		func() Case {
			b := `{"id":"` + session + `","action":"started","action":"submitted"}`
			return refused("action twice", b, headers(current, b), "malformed_payload")
		}(),
		func() Case {
			b := decision("f04bdb47.d3be", "approved", 9001, "u", dt)
			return refused("session id with a dot (not subject-safe)", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := event(strings.Repeat("a", 65), "started", 7001, "u")
			return refused("session id of 65 characters", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := event("kyc.events.>", "started", 7001, "u")
			return refused("session id with subject wildcards", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"status":"success","verification":{"status":"approved"}}`
			return refused("decision without verification.id", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"status":"success","verification":null}`
			return refused("decision with verification null", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"status":"success","verification":{"id":"` + session + `","status":9001}}`
			return refused("verification.status not a string", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"status":"success","verification":{"id":"` + session + `","status":"appro\nved"}}`
			return refused("verification.status with a control character", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"id":"` + session + `","action":"started","vendorData":42}`
			return refused("vendorData not a string", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"id":"` + session + `","action":""}`
			return refused("empty action", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"status":"success","verification":{"id":"` + session + `","status":"approved"},"action":"started"}`
			return refused("both a decision and an event", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"status":"success","sessionId":"` + session + `"}`
			return refused("neither a decision nor an event", b, headers(current, b), "invalid_payload")
		}(),
	}

	v := file{
		File: vectorfile.File{
			Comment: "Made by ingest/veriff/testdata/gen from Veriff's documented signing (hex HMAC-SHA256 of the raw body " +
				"under the shared secret key, X-AUTH-CLIENT the API key); not by the adapter.",
			App:        vectorfile.App{Name: appName, APIKey: apiKey, Secrets: []string{current, previous}},
			ReceivedAt: receivedAt,
			Cases:      cases,
		},
		GetSigns: []GetSig{
			{current, session, sign(current, session)},
			{previous, session2, sign(previous, session2)},
		},
	}
	if err := vectorfile.Write(os.Stdout, v); err != nil {
		panic(err)
	}
}
