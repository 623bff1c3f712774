// Command gen writes the Persona webhook vectors of ingest/persona from the algorithm
// Persona documents, with crypto/hmac and crypto/sha256 alone (it does not import the
// adapter, so the adapter is tested against an independent reading of the docs):
//
//	go run ./ingest/persona/testdata/gen > ingest/persona/testdata/vectors.json
//
// Persona-Signature is t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" under the
// webhook secret>; while a secret rotates the header holds two such sets, separated by a
// space, either valid. The bodies follow the documented event shape with values made up
// here. Persona publishes no example signature, so every signature here is computed.
//
// The content id of a case is hex SHA-256 over "persona", the app's name and the event
// id data.id (the whole body when there is none), each preceded by its length as 8
// big-endian bytes.
package main

import (
	"crypto/sha256"
	"os"
	"strings"

	"github.com/kycstate/kycstate/internal/vectorfile"
)

const (
	appName    = "pa"
	current    = "pe-current-webhook-secret"
	previous   = "pe-previous-webhook-secret"
	retired    = "pe-retired-webhook-secret"
	receivedAt = "2026-03-01T10:00:05Z"
	t          = "1772359200" // 2026-03-01T10:00:00Z
	inquiry    = "inq_2CVZ4HyVg7qaboXz2PUHknAn"
	event      = "evt_XGuYWp7WuDzNxie5z16s7sGJ"
)

type Want = vectorfile.Want

func v1(secret, ts, body string) string { return vectorfile.HMACHex(sha256.New, secret, ts+"."+body) }

func set(secret, ts, body string) string { return "t=" + ts + ",v1=" + v1(secret, ts, body) }

func header(sets ...string) map[string]string {
	return map[string]string{"Persona-Signature": strings.Join(sets, " ")}
}

func contentID(eventID, body string) string {
	if eventID == "" {
		return vectorfile.ContentID("persona", appName, body)
	}
	return vectorfile.ContentID("persona", appName, eventID)
}

// inquiryEvent renders an event whose payload is the inquiry, with the given key
// spellings for created-at and reference-id.
func inquiryEvent(eventID, name, createdAt, status, reference, createdKey, refKey string) string {
	id := ""
	if eventID != "" {
		id = `"id":"` + eventID + `",`
	}
	return `{"data":{"type":"event",` + id + `"attributes":{"name":"` + name + `","payload":{"data":{"type":"inquiry","id":"` + inquiry +
		`","attributes":{"status":"` + status + `","` + refKey + `":` + reference + `,"` + createdKey + `":"2026-03-01T09:58:00.000Z",` +
		`"tags":[],"fields":{"name-first":{"type":"string","value":null}}},"relationships":{"template":{"data":{"type":"template","id":"tmpl_JAZjHuAT738Q63BdgCuEJQre"}},` +
		`"verifications":{"data":[{"type":"verification/selfie","id":"ver_2aguhcwq66zcmqipmrqjxw68"}]}}},"included":[]},"` +
		createdKey + `":"` + createdAt + `"}}}`
}

func main() {
	f := vectorfile.File{
		Comment: "Persona webhook vectors made by ingest/persona/testdata/gen from the documented algorithm: " +
			"Persona-Signature = t=<unix>,v1=hex HMAC-SHA256(secret, t + \".\" + raw body); sets space-separated while rotating. " +
			"Secrets are the app's, current first. contentId = hex SHA-256 of length-prefixed persona, app name, data.id (else the body).",
		App:        vectorfile.App{Name: appName, Secrets: []string{current, previous}},
		ReceivedAt: receivedAt,
	}
	ok := func(name string, h map[string]string, b, eventID string, w Want) {
		f.Cases = append(f.Cases, vectorfile.Accepted(name, h, b, contentID(eventID, b), w))
	}
	refuse := func(name string, h map[string]string, b, code string) {
		f.Cases = append(f.Cases, vectorfile.Refused(name, h, b, code))
	}
	const (
		badSignature = "bad_signature"
		malformed    = "malformed_payload"
		invalidPay   = "invalid_payload"
	)

	approved := inquiryEvent(event, "inquiry.approved", "2026-03-01T10:00:01.100Z", "approved", `"user-17"`, "created-at", "reference-id")
	approvedWant := Want{ApplicantID: inquiry, ExternalUserID: "user-17", Type: "inquiry.approved", ProviderStatus: "approved",
		EventAt: "2026-03-01T10:00:01.1Z", EventAtSource: "payload.data.attributes.created-at", Class: "status", Status: "APPROVED"}
	ok("approved_kebab", header(set(current, t, approved)), approved, event, approvedWant)
	ok("previous_secret", header(set(previous, t, approved)), approved, event, approvedWant)
	ok("rotation_retired_then_current", header(set(retired, t, approved), set(current, t, approved)), approved, event, approvedWant)
	ok("rotation_current_then_garbage", header(set(current, t, approved), "t="+t+",v1="+strings.Repeat("0", 64)), approved, event, approvedWant)
	ok("rotation_previous_then_current_other_t", header(set(previous, "1772359190", approved), set(current, t, approved)), approved, event, approvedWant)
	ok("two_v1_in_one_set", header("t="+t+",v1="+v1(retired, t, approved)+",v1="+v1(current, t, approved)), approved, event, approvedWant)
	ok("unknown_keys_and_spaces", header("  t="+t+",v0=abc,v1="+v1(current, t, approved)+"  "), approved, event, approvedWant)

	created := inquiryEvent("evt_created0000000000000001", "inquiry.created", "2026-03-01T09:58:00.000Z", "created", "null", "created-at", "reference-id")
	ok("created_reference_null", header(set(current, t, created)), created, "evt_created0000000000000001",
		Want{ApplicantID: inquiry, Type: "inquiry.created", ProviderStatus: "created", EventAt: "2026-03-01T09:58:00Z",
			EventAtSource: "payload.data.attributes.created-at", Class: "status", Status: "INIT"})

	review := inquiryEvent("evt_review00000000000000001", "inquiry.marked-for-review", "2026-03-01T10:00:02.000Z", "needs_review", `"user-17"`, "createdAt", "referenceId")
	ok("marked_for_review_camel", header(set(current, t, review)), review, "evt_review00000000000000001",
		Want{ApplicantID: inquiry, ExternalUserID: "user-17", Type: "inquiry.marked-for-review", ProviderStatus: "needs_review",
			EventAt: "2026-03-01T10:00:02Z", EventAtSource: "payload.data.attributes.created-at", Class: "status", Status: "IN_REVIEW"})

	failed := inquiryEvent("evt_failed00000000000000001", "inquiry.failed", "2026-03-01T10:00:03+00:00", "failed", `"user-17"`, "created_at", "reference_id")
	ok("failed_snake", header(set(current, t, failed)), failed, "evt_failed00000000000000001",
		Want{ApplicantID: inquiry, ExternalUserID: "user-17", Type: "inquiry.failed", ProviderStatus: "failed",
			EventAt: "2026-03-01T10:00:03Z", EventAtSource: "payload.data.attributes.created-at", Class: "status", Status: "REJECTED"})

	verification := `{"data":{"type":"event","id":"evt_verif000000000000000001","attributes":{"name":"verification.passed","payload":{"data":{"type":"verification/government-id","id":"ver_KnqQRXmxmtquRE65CHTzymhR","attributes":{"status":"passed"},"relationships":{"inquiry":{"data":{"type":"inquiry","id":"` + inquiry + `"}}}}},"created-at":"2026-03-01T09:59:30.000Z"}}}`
	ok("verification_names_its_inquiry", header(set(current, t, verification)), verification, "evt_verif000000000000000001",
		Want{ApplicantID: inquiry, Type: "verification.passed", EventAt: "2026-03-01T09:59:30Z", EventAtSource: "payload.data.attributes.created-at", Class: "unknown", Status: ""})

	noID := inquiryEvent("", "inquiry.completed", "2026-03-01T10:00:00.500Z", "completed", `"user-17"`, "created-at", "reference-id")
	ok("no_event_id", header(set(current, t, noID)), noID, "",
		Want{ApplicantID: inquiry, ExternalUserID: "user-17", Type: "inquiry.completed", ProviderStatus: "completed",
			EventAt: "2026-03-01T10:00:00.5Z", EventAtSource: "payload.data.attributes.created-at", Class: "status", Status: "COMPLETED"})

	badTime := inquiryEvent("evt_future00000000000000001", "inquiry.some-future-event", "yesterday", "approved", `"user-17"`, "created-at", "reference-id")
	ok("unknown_name_kept_bad_time", header(set(current, t, badTime)), badTime, "evt_future00000000000000001",
		Want{ApplicantID: inquiry, ExternalUserID: "user-17", Type: "inquiry.some-future-event", ProviderStatus: "approved",
			EventAt: receivedAt, EventAtSource: "received", Class: "unknown", Status: ""})

	refuse("wrong_secret", header(set(retired, t, approved)), approved, badSignature)
	refuse("forged_body", header(set(current, t, approved)), strings.Replace(approved, `"approved"`, `"declined"`, 1), badSignature)
	refuse("truncated_body", header(set(current, t, approved)), approved[:len(approved)/2], badSignature)
	refuse("moved_timestamp", header("t=1772359201,v1="+v1(current, t, approved)), approved, badSignature)
	refuse("missing_header", map[string]string{}, approved, badSignature)
	refuse("no_timestamp", header("v1="+v1(current, t, approved)), approved, badSignature)
	refuse("timestamp_not_digits", header("t=1772359200.0,v1="+v1(current, "1772359200.0", approved)), approved, badSignature)
	refuse("signature_not_hex", header("t="+t+",v1="+strings.Repeat("zz", 32)), approved, badSignature)
	refuse("signature_of_body_alone", header("t="+t+",v1="+vectorfile.HMACHex(sha256.New, current, approved)), approved, badSignature)
	refuse("too_many_sets", header(set(retired, t, approved), set(retired, t, approved), set(retired, t, approved),
		set(retired, t, approved), set(current, t, approved)), approved, badSignature)
	refuse("malformed_body_bad_signature", header("t="+t+",v1="+strings.Repeat("00", 32)), `{"data":`, badSignature)

	twoNames := `{"data":{"id":"evt_1","attributes":{"name":"inquiry.approved","name":"inquiry.declined","payload":{"data":{"type":"inquiry","id":"` + inquiry + `"}}}}}`
	twoRefs := `{"data":{"id":"evt_1","attributes":{"name":"inquiry.approved","payload":{"data":{"type":"inquiry","id":"` + inquiry + `","attributes":{"reference-id":"a","referenceId":"b"}}}}}}`
	named := func(name, payloadData string) string {
		return `{"data":{"type":"event","id":"evt_x","attributes":{"name":"` + name + `","payload":{"data":` + payloadData + `}}}}`
	}
	for _, c := range []struct{ name, body, code string }{
		{"signed_truncated_body", approved[:len(approved)/2], malformed},
		{"signed_not_an_object", `[{"data":{}}]`, malformed},
		{"signed_trailing_data", approved + "\n{}", malformed},
		{"duplicate_name", twoNames, malformed},
		{"reference_id_in_two_inflections", twoRefs, malformed},
		{"data_missing", `{"meta":{}}`, invalidPay},
		{"data_not_object", `{"data":[]}`, invalidPay},
		{"attributes_missing", `{"data":{"type":"event","id":"evt_x"}}`, invalidPay},
		{"name_missing", `{"data":{"id":"evt_x","attributes":{"payload":{"data":{"type":"inquiry","id":"` + inquiry + `"}}}}}`, invalidPay},
		{"name_not_ascii", named("inquiry.approuvé", `{"type":"inquiry","id":"`+inquiry+`"}`), invalidPay},
		{"name_control_character", named(`inquiry.approved\r`, `{"type":"inquiry","id":"`+inquiry+`"}`), invalidPay},
		{"name_129_chars", named(strings.Repeat("n", 129), `{"type":"inquiry","id":"`+inquiry+`"}`), invalidPay},
		{"inquiry_id_missing", named("inquiry.approved", `{"type":"inquiry","attributes":{"status":"approved"}}`), invalidPay},
		{"inquiry_id_not_inquiry", named("inquiry.approved", `{"type":"inquiry","id":"act_ABC"}`), invalidPay},
		{"inquiry_id_not_subject_safe", named("inquiry.approved", `{"type":"inquiry","id":"inq_a.b"}`), invalidPay},
		{"inquiry_id_wildcard", named("inquiry.approved", `{"type":"inquiry","id":"inq_>"}`), invalidPay},
		{"inquiry_id_65_chars", named("inquiry.approved", `{"type":"inquiry","id":"inq_`+strings.Repeat("a", 61)+`"}`), invalidPay},
		{"account_event_names_no_inquiry", named("account.created", `{"type":"account","id":"act_ABC","attributes":{"reference-id":"user-17"}}`), invalidPay},
		{"payload_missing", `{"data":{"id":"evt_x","attributes":{"name":"inquiry.approved"}}}`, invalidPay},
		{"status_not_string", named("inquiry.approved", `{"type":"inquiry","id":"`+inquiry+`","attributes":{"status":1}}`), invalidPay},
		{"reference_id_control", named("inquiry.approved", `{"type":"inquiry","id":"`+inquiry+`","attributes":{"reference-id":"a\u0007b"}}`), invalidPay},
		{"event_id_not_string", `{"data":{"id":7,"attributes":{"name":"inquiry.approved","payload":{"data":{"type":"inquiry","id":"` + inquiry + `"}}}}}`, invalidPay},
	} {
		refuse(c.name, header(set(current, t, c.body)), c.body, c.code)
	}

	if err := vectorfile.Write(os.Stdout, f); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
