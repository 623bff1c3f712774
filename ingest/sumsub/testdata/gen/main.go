// Command gen writes the Sumsub webhook vectors of ingest/sumsub from the algorithm
// Sumsub documents, with crypto/hmac and crypto/sha256 alone (it does not import the
// adapter, so the adapter is tested against an independent reading of the docs):
//
//	go run ./ingest/sumsub/testdata/gen > ingest/sumsub/testdata/vectors.json
//
// X-Payload-Digest is the hex HMAC of the raw body under the webhook's secret key;
// X-Payload-Digest-Alg names the hash: HMAC_SHA1_HEX, HMAC_SHA256_HEX, HMAC_SHA512_HEX.
// The bodies follow the documented payload shape with values made up here. Sumsub
// publishes no example digest, so every digest here is computed.
//
// The content id of a case is hex SHA-256 over "sumsub", the app's name and the
// correlationId (the whole body when there is none), each preceded by its length as 8
// big-endian bytes.
package main

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"os"
	"strings"

	"github.com/kycstate/kycstate/internal/vectorfile"
)

const (
	appName    = "ss"
	current    = "ss-current-webhook-secret"
	previous   = "ss-previous-webhook-secret"
	wrong      = "not-this-apps-secret"
	receivedAt = "2026-03-01T10:00:05Z"
)

type Want = vectorfile.Want

func digest(alg, secret, body string) string {
	var h func() hash.Hash
	switch alg {
	case "HMAC_SHA1_HEX":
		h = sha1.New
	case "HMAC_SHA512_HEX":
		h = sha512.New
	default:
		h = sha256.New
	}
	return vectorfile.HMACHex(h, secret, body)
}

func signed(alg, secret, body string) map[string]string {
	return map[string]string{"X-Payload-Digest": digest(alg, secret, body), "X-Payload-Digest-Alg": alg}
}

func contentID(eventID, body string) string {
	if eventID == "" {
		return vectorfile.ContentID("sumsub", appName, body)
	}
	return vectorfile.ContentID("sumsub", appName, eventID)
}

// body renders a payload in the documented shape, members in the given order.
func body(members ...string) string { return "{" + strings.Join(members, ",") + "}" }

func str(k, v string) string { return `"` + k + `":"` + v + `"` }

const (
	applicant = "65f1c2a9e4b0a1b2c3d4e5f6"
	inspect   = "65f1c2a9e4b0a1b2c3d4e5f7"
)

func main() {
	f := vectorfile.File{
		Comment: "Sumsub webhook vectors made by ingest/sumsub/testdata/gen from the documented algorithm: " +
			"X-Payload-Digest = hex HMAC(secret, raw body), hash named by X-Payload-Digest-Alg. " +
			"Secrets are the app's, current first. contentId = hex SHA-256 of length-prefixed sumsub, app name, correlationId (else the body).",
		App:        vectorfile.App{Name: appName, Secrets: []string{current, previous}},
		ReceivedAt: receivedAt,
	}
	ok := func(name string, headers map[string]string, b, eventID string, w Want) {
		f.Cases = append(f.Cases, vectorfile.Accepted(name, headers, b, contentID(eventID, b), w))
	}
	refuse := func(name string, headers map[string]string, b, code string) {
		f.Cases = append(f.Cases, vectorfile.Refused(name, headers, b, code))
	}
	const (
		badSignature = "bad_signature"
		malformed    = "malformed_payload"
		invalidPay   = "invalid_payload"
	)

	created := body(str("applicantId", applicant), str("inspectionId", inspect),
		str("correlationId", "req-0b7f6a52-8a51-4c1e-9d0e-3f4c2a1b0c9d"), str("levelName", "basic-kyc-level"),
		str("externalUserId", "user-17"), str("type", "applicantCreated"), `"sandboxMode":true`,
		str("reviewStatus", "init"), str("createdAtMs", "2026-03-01 09:58:01.004"), str("clientId", "acme"))
	ok("created_sha256", signed("HMAC_SHA256_HEX", current, created), created,
		"req-0b7f6a52-8a51-4c1e-9d0e-3f4c2a1b0c9d", Want{ApplicantID: applicant, ExternalUserID: "user-17",
			Type: "applicantCreated", ProviderStatus: "init", EventAt: "2026-03-01T09:58:01.004Z", EventAtSource: "payload.createdAtMs", Class: "status", Status: "INIT"})

	pending := body(str("applicantId", applicant), str("inspectionId", inspect),
		str("correlationId", "6f2b0c1d9e8a7b6c5d4e3f2a1b0c9d8e"), str("levelName", "basic-kyc-level"),
		str("externalUserId", "user-17"), str("type", "applicantPending"), `"reviewResult":null`,
		str("reviewStatus", "pending"), str("createdAtMs", "2026-03-01 09:59:12.250"), `"applicantMemberOf":null`)
	ok("pending_sha1", signed("HMAC_SHA1_HEX", current, pending), pending,
		"6f2b0c1d9e8a7b6c5d4e3f2a1b0c9d8e", Want{ApplicantID: applicant, ExternalUserID: "user-17",
			Type: "applicantPending", ProviderStatus: "pending", EventAt: "2026-03-01T09:59:12.25Z", EventAtSource: "payload.createdAtMs", Class: "status", Status: "IN_PROGRESS"})

	green := body(str("applicantId", applicant), str("inspectionId", inspect),
		str("correlationId", "req-9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"), str("externalUserId", "user-17"),
		str("levelName", "basic-kyc-level"), str("type", "applicantReviewed"),
		`"reviewResult":{"reviewAnswer":"GREEN"}`, str("reviewStatus", "completed"),
		str("createdAtMs", "2026-03-01 10:00:01.321"))
	ok("reviewed_green_sha512", signed("HMAC_SHA512_HEX", current, green), green,
		"req-9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f", Want{ApplicantID: applicant, ExternalUserID: "user-17",
			Type: "applicantReviewed", ProviderStatus: "GREEN", EventAt: "2026-03-01T10:00:01.321Z", EventAtSource: "payload.createdAtMs", Class: "status", Status: "APPROVED"})

	retry := body(str("applicantId", applicant), str("correlationId", "req-retry-1"), str("type", "applicantReviewed"),
		`"reviewResult":{"moderationComment":"Upload a sharper photo.","reviewAnswer":"RED","rejectLabels":["BAD_PROOF_OF_IDENTITY"],"reviewRejectType":"RETRY","buttonIds":[]}`,
		str("reviewStatus", "completed"), str("createdAt", "2026-03-01 10:00:02+0000"), str("createdAtMs", "2026-03-01 10:00:02.500"))
	ok("reviewed_red_retry", signed("HMAC_SHA256_HEX", current, retry), retry, "req-retry-1",
		Want{ApplicantID: applicant, Type: "applicantReviewed", ProviderStatus: "RED+RETRY",
			EventAt: "2026-03-01T10:00:02.5Z", EventAtSource: "payload.createdAtMs", Class: "status", Status: "INCOMPLETE"})

	final := body(str("applicantId", applicant), str("correlationId", "req-final-1"), str("type", "applicantReviewed"),
		`"reviewResult":{"reviewAnswer":"RED","rejectLabels":["FORGERY"],"reviewRejectType":"FINAL"}`,
		str("reviewStatus", "completed"), str("createdAt", "2026-03-01 10:00:03+0000"))
	ok("reviewed_red_final_createdAt", signed("HMAC_SHA256_HEX", current, final), final, "req-final-1",
		Want{ApplicantID: applicant, Type: "applicantReviewed", ProviderStatus: "RED+FINAL",
			EventAt: "2026-03-01T10:00:03Z", EventAtSource: "payload.createdAt", Class: "status", Status: "REJECTED"})

	ok("no_alg_header_sha256", map[string]string{"X-Payload-Digest": digest("HMAC_SHA256_HEX", current, created)}, created,
		"req-0b7f6a52-8a51-4c1e-9d0e-3f4c2a1b0c9d", Want{ApplicantID: applicant, ExternalUserID: "user-17",
			Type: "applicantCreated", ProviderStatus: "init", EventAt: "2026-03-01T09:58:01.004Z", EventAtSource: "payload.createdAtMs", Class: "status", Status: "INIT"})
	ok("no_alg_header_sha1", map[string]string{"X-Payload-Digest": digest("HMAC_SHA1_HEX", current, created)}, created,
		"req-0b7f6a52-8a51-4c1e-9d0e-3f4c2a1b0c9d", Want{ApplicantID: applicant, ExternalUserID: "user-17",
			Type: "applicantCreated", ProviderStatus: "init", EventAt: "2026-03-01T09:58:01.004Z", EventAtSource: "payload.createdAtMs", Class: "status", Status: "INIT"})
	upper := signed("HMAC_SHA256_HEX", current, created)
	upper["X-Payload-Digest"] = strings.ToUpper(upper["X-Payload-Digest"])
	ok("upper_case_hex", upper, created, "req-0b7f6a52-8a51-4c1e-9d0e-3f4c2a1b0c9d",
		Want{ApplicantID: applicant, ExternalUserID: "user-17", Type: "applicantCreated", ProviderStatus: "init",
			EventAt: "2026-03-01T09:58:01.004Z", EventAtSource: "payload.createdAtMs", Class: "status", Status: "INIT"})
	ok("rotated_previous_secret", signed("HMAC_SHA256_HEX", previous, green), green,
		"req-9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f", Want{ApplicantID: applicant, ExternalUserID: "user-17",
			Type: "applicantReviewed", ProviderStatus: "GREEN", EventAt: "2026-03-01T10:00:01.321Z", EventAtSource: "payload.createdAtMs", Class: "status", Status: "APPROVED"})

	noCorr := body(str("applicantId", applicant), str("type", "applicantOnHold"), str("reviewStatus", "onHold"),
		str("createdAtMs", "2026-03-01 10:00:04.000"))
	ok("no_correlation_id", signed("HMAC_SHA256_HEX", current, noCorr), noCorr, "",
		Want{ApplicantID: applicant, Type: "applicantOnHold", ProviderStatus: "onHold",
			EventAt: "2026-03-01T10:00:04Z", EventAtSource: "payload.createdAtMs", Class: "status", Status: "ON_HOLD"})

	unknown := body(str("applicantId", applicant), str("correlationId", "req-kyt-1"), str("type", "applicantKytTxnApproved"),
		`"kytTxnId":"tx-1"`, str("createdAtMs", "not a time"))
	ok("unknown_type_kept_bad_time", signed("HMAC_SHA256_HEX", current, unknown), unknown, "req-kyt-1",
		Want{ApplicantID: applicant, Type: "applicantKytTxnApproved", EventAt: receivedAt, EventAtSource: "received", Class: "unknown", Status: ""})

	nullExt := body(str("applicantId", "A-b_9"), `"externalUserId":null`, str("type", "applicantReset"),
		str("reviewStatus", "init"), `"createdAtMs":1772359205123`)
	ok("null_external_user_id_numeric_ms", signed("HMAC_SHA256_HEX", current, nullExt), nullExt, "",
		Want{ApplicantID: "A-b_9", Type: "applicantReset", ProviderStatus: "init",
			EventAt: "2026-03-01T10:00:05.123Z", EventAtSource: "payload.createdAtMs", Class: "status", Status: "INCOMPLETE"})

	refuse("wrong_secret", signed("HMAC_SHA256_HEX", wrong, created), created, badSignature)
	forged := strings.Replace(green, `"GREEN"`, `"RED"`, 1)
	refuse("forged_body", signed("HMAC_SHA256_HEX", current, green), forged, badSignature)
	refuse("truncated_body", signed("HMAC_SHA256_HEX", current, green), green[:len(green)/2], badSignature)
	refuse("missing_digest", map[string]string{"X-Payload-Digest-Alg": "HMAC_SHA256_HEX"}, created, badSignature)
	refuse("alg_does_not_match_digest", map[string]string{"X-Payload-Digest": digest("HMAC_SHA256_HEX", current, created),
		"X-Payload-Digest-Alg": "HMAC_SHA512_HEX"}, created, badSignature)
	refuse("unknown_alg", map[string]string{"X-Payload-Digest": digest("HMAC_SHA256_HEX", current, created),
		"X-Payload-Digest-Alg": "HMAC_MD5_HEX"}, created, badSignature)
	refuse("digest_not_hex", map[string]string{"X-Payload-Digest": strings.Repeat("zz", 32)}, created, badSignature)
	refuse("malformed_body_bad_signature", map[string]string{"X-Payload-Digest": strings.Repeat("00", 32)},
		`{"applicantId":`, badSignature)

	for _, c := range []struct{ name, body, code string }{
		{"signed_truncated_body", green[:len(green)/2], malformed},
		{"signed_not_an_object", `["applicantCreated"]`, malformed},
		{"signed_trailing_data", created + "{}", malformed},
		{"duplicate_applicant_id", body(str("applicantId", applicant), str("applicantId", "65f1c2a9e4b0a1b2c3d4e5f8"), str("type", "applicantCreated")), malformed},
		{"duplicate_review_answer", body(str("applicantId", applicant), str("type", "applicantReviewed"), `"reviewResult":{"reviewAnswer":"RED","reviewAnswer":"GREEN"}`), malformed},
		{"applicant_id_not_subject_safe", body(str("applicantId", "65f1c2a9.e4b0"), str("type", "applicantCreated")), invalidPay},
		{"applicant_id_wildcard", body(str("applicantId", "*"), str("type", "applicantCreated")), invalidPay},
		{"applicant_id_65_chars", body(str("applicantId", strings.Repeat("a", 65)), str("type", "applicantCreated")), invalidPay},
		{"applicant_id_missing", body(str("type", "applicantCreated")), invalidPay},
		{"applicant_id_number", body(`"applicantId":65`, str("type", "applicantCreated")), invalidPay},
		{"type_missing", body(str("applicantId", applicant)), invalidPay},
		{"type_not_ascii", body(str("applicantId", applicant), str("type", "applicantCréé")), invalidPay},
		{"type_control_character", body(str("applicantId", applicant), str("type", `applicant\nCreated`)), invalidPay},
		{"type_129_chars", body(str("applicantId", applicant), str("type", strings.Repeat("t", 129))), invalidPay},
		{"external_user_id_control", body(str("applicantId", applicant), str("type", "applicantCreated"), str("externalUserId", `a\u0000b`)), invalidPay},
		{"review_result_not_object", body(str("applicantId", applicant), str("type", "applicantReviewed"), str("reviewResult", "GREEN")), invalidPay},
		{"review_answer_not_string", body(str("applicantId", applicant), str("type", "applicantReviewed"), `"reviewResult":{"reviewAnswer":1}`), invalidPay},
		{"correlation_id_not_string", body(str("applicantId", applicant), str("type", "applicantCreated"), `"correlationId":{}`), invalidPay},
	} {
		refuse(c.name, signed("HMAC_SHA256_HEX", current, c.body), c.body, c.code)
	}

	if err := vectorfile.Write(os.Stdout, f); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
