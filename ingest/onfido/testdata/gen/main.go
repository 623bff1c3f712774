// Command gen writes ingest/onfido's test vectors from Onfido's documented algorithm, with
// crypto/hmac directly and nothing of the adapter:
//
//	go run ./ingest/onfido/testdata/gen > ingest/onfido/testdata/vectors.json
//
// A webhook carries X-SHA2-Signature, the hex HMAC-SHA256 of the raw body under the
// webhook's token (https://documentation.onfido.com/api/latest/#webhooks). Bodies follow
// the webhook event schema of Onfido's API specification
// (github.com/onfido/onfido-openapi-spec, schemas/webhooks/webhook_event.yaml), with values
// of our own, except two: the signed examples Onfido publishes with its Node.js library
// (github.com/onfido/onfido-node, test/studio-webhook-event-verifier.test.ts and
// test/classic-webhook-event-verifier.test.ts), whose signatures this program recomputes
// and checks before it writes them. The expected content id is SHA-256 over
// length-prefixed "onfido", the app's name and the body (Onfido's webhooks carry no event
// id). Output is deterministic.
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"

	"github.com/kycstate/kycstate/internal/vectorfile"
)

const (
	appName    = "on"
	current    = "Qm9uZGluZ1Rva2VuQ3VycmVudDAwMDE="
	previous   = "Qm9uZGluZ1Rva2VuUHJldmlvdXMwMDI="
	otherToken = "c29tZWJvZHkgZWxzZSdzIHRva2VuISE="
	receivedAt = "2026-03-01T10:00:00Z"
	run        = "2f152409-d6c4-4711-8750-48517f99a8d6"
	run2       = "bc77c6e5-753a-4580-96a6-aaed3e5a8d19"
	applicant  = "36a56899-d617-4988-85bf-b76640861bf5"
)

// Onfido's published examples (github.com/onfido/onfido-node tests): token, raw body and
// the X-SHA2-Signature Onfido's library accepts for them.
const (
	studioToken     = "YKOC6mkBxi6yK2zlUIrLMvsJMFEZObP5"
	studioBody      = `{"payload":{"resource_type":"workflow_task","action":"workflow_task.started","object":{"id":"profile_1eb92","task_spec_id":"profile_1eb92","task_def_id":"profile_data","workflow_run_id":"bc77c6e5-753a-4580-96a6-aaed3e5a8d19","status":"started","started_at_iso8601":"2024-07-10T12:49:09Z","href":"https://api.eu.onfido.com/v3.6/workflow_runs/bc77c6e5-753a-4580-96a6-aaed3e5a8d19/tasks/profile_1eb92"},"resource":{"created_at":"2024-07-10T12:49:09Z","id":"profile_1eb92","workflow_run_id":"bc77c6e5-753a-4580-96a6-aaed3e5a8d19","updated_at":"2024-07-10T12:49:09Z","input":{},"task_def_version":null,"task_def_id":"profile_data","output":null}}}`
	studioSignature = "c95a5b785484f6fa1bc25f381b5595d66bf85cb442eefb06aa007802ee6a4dfa"

	classicToken     = "_ABC123abc123ABC123abc123ABC123_"
	classicBody      = `{"payload":{"resource_type":"check","action":"check.completed","object":{"id":"check-123","status":"complete","completed_at_iso8601":"2020-01-01T00:00:00Z","href":"https://api.onfido.com/v3/checks/check-123"}}}`
	classicSignature = "a0082d7481f9f0a2907583dbe1f344d6d4c0d9989df2fd804f98479f60cd760e"
)

type (
	Case = vectorfile.Case
	Want = vectorfile.Want
)

func sign(secret, msg string) string { return vectorfile.HMACHex(sha256.New, secret, msg) }

func contentID(body string) string { return vectorfile.ContentID("onfido", appName, body) }

func headers(secret, body string) map[string]string {
	return map[string]string{"X-SHA2-Signature": sign(secret, body)}
}

// runCompleted is a workflow_run.completed body in the documented shape; "-" leaves a
// member out.
func runCompleted(id, status, startedAt, completedAt, customerUserID string) string {
	obj := map[string]any{"id": id, "status": status, "href": "https://api.eu.onfido.com/v3.6/workflow_runs/" + id}
	if startedAt != "-" {
		obj["started_at_iso8601"] = startedAt
	}
	if completedAt != "-" {
		obj["completed_at_iso8601"] = completedAt
	}
	res := map[string]any{
		"id": id, "applicant_id": applicant, "workflow_id": "221f9d24-cf72-4762-ac4a-01bf3ccc09dd",
		"workflow_version_id": 3, "status": status, "reasons": []any{}, "tags": []any{"web"},
		"created_at": "2026-03-01T09:30:00Z", "updated_at": "2026-03-01T09:58:31Z",
		"dashboard_url": "https://dashboard.onfido.com/results/" + id,
	}
	if customerUserID != "-" {
		res["customer_user_id"] = customerUserID
	}
	return vectorfile.MustJSON(map[string]any{"payload": map[string]any{
		"resource_type": "workflow_run", "action": "workflow_run.completed", "object": obj, "resource": res,
	}})
}

// task is a workflow task event about run.
func task(action, status, runID string) string {
	return vectorfile.MustJSON(map[string]any{"payload": map[string]any{
		"resource_type": "workflow_task", "action": action,
		"object": map[string]any{"id": "document_photo_a1b2", "task_def_id": "upload_document_photo",
			"workflow_run_id": runID, "status": status, "started_at_iso8601": "2026-03-01T09:41:00Z",
			"completed_at_iso8601": "2026-03-01T09:44:05Z",
			"href":                 "https://api.eu.onfido.com/v3.6/workflow_runs/" + runID + "/tasks/document_photo_a1b2"},
		"resource": map[string]any{"id": "document_photo_a1b2", "workflow_run_id": runID, "output": nil},
	}})
}

func accepted(name, body, secret string, w Want) Case {
	return vectorfile.Accepted(name, headers(secret, body), body, contentID(body), w)
}

func refused(name, body string, h map[string]string, code string) Case {
	return vectorfile.Refused(name, h, body, code)
}

// published is one of Onfido's signed examples, its signature checked here first: refused
// with code, or accepted as w when code is "".
func published(name, source, token, body, signature, code string, w Want) Case {
	if got := sign(token, body); got != signature {
		panic(fmt.Sprintf("%s: HMAC-SHA256 gives %s, Onfido publishes %s", name, got, signature))
	}
	c := Case{Name: name, Source: source, Secrets: []string{token}, Body: body, Error: code}
	c.Headers = map[string]string{"X-SHA2-Signature": signature}
	if code == "" {
		w.ContentID = contentID(body)
		c.Want = &w
	}
	return c
}

func main() {
	const (
		started   = "2026-03-01T09:40:00Z"
		completed = "2026-03-01T09:58:31Z"
		src       = "payload.object.completed_at_iso8601"
	)
	approved := runCompleted(run, "approved", started, completed, "user-4711")
	deep := `{"payload":` + strings.Repeat(`{"a":`, 64) + "1" + strings.Repeat("}", 65)
	truncated := approved[:len(approved)/2]

	cases := []Case{
		accepted("run approved", approved, current, vectorfile.Expect(run, "workflow_run.completed", "approved", "user-4711", completed, src, "status", "APPROVED")),
		accepted("run declined, signed with the previous token (rotation)", runCompleted(run, "declined", started, completed, "user-4711"), previous,
			vectorfile.Expect(run, "workflow_run.completed", "declined", "user-4711", completed, src, "status", "REJECTED")),
		accepted("run review", runCompleted(run, "review", started, completed, "user-4711"), current,
			vectorfile.Expect(run, "workflow_run.completed", "review", "user-4711", completed, src, "status", "IN_REVIEW")),
		accepted("run abandoned, no customer_user_id", runCompleted(run, "abandoned", started, completed, "-"), current,
			vectorfile.Expect(run, "workflow_run.completed", "abandoned", "", completed, src, "status", "INCOMPLETE")),
		accepted("run awaiting_client_input", runCompleted(run, "awaiting_client_input", started, "-", "user-4711"), current,
			vectorfile.Expect(run, "workflow_run.completed", "awaiting_client_input", "user-4711", started, "payload.object.started_at_iso8601", "status", "ON_HOLD")),
		accepted("run processing, no times: the receive time", runCompleted(run, "processing", "-", "-", "user-4711"), current,
			vectorfile.Expect(run, "workflow_run.completed", "processing", "user-4711", receivedAt, "received", "status", "IN_PROGRESS")),
		accepted("run in error", runCompleted(run, "error", started, completed, "user-4711"), current,
			vectorfile.Expect(run, "workflow_run.completed", "error", "user-4711", completed, src, "annotation", "")),
		accepted("run with an unreadable completed_at", runCompleted(run, "approved", started, "soon", "user-4711"), current,
			vectorfile.Expect(run, "workflow_run.completed", "approved", "user-4711", started, "payload.object.started_at_iso8601", "status", "APPROVED")),
		accepted("run of a status Onfido may add", runCompleted(run, "paused", started, completed, "user-4711"), current,
			vectorfile.Expect(run, "workflow_run.completed", "paused", "user-4711", completed, src, "unknown", "")),
		accepted("task completed", task("workflow_task.completed", "completed", run2), current,
			vectorfile.Expect(run2, "workflow_task.completed", "completed", "", "2026-03-01T09:44:05Z", src, "annotation", "")),
		func() Case {
			b := `{"payload":{"resource_type":"workflow_timeline_file","action":"workflow_timeline_file.created","object":{"id":"b1e7a3c0-1111-4222-8333-944455556666","href":"https://api.eu.onfido.com/v3.6/workflow_runs/` + run + `/timeline_file/b1e7a3c0"},"resource":{"workflow_run_id":"` + run + `"}}}`
			return accepted("timeline file created", b, current, vectorfile.Expect(run, "workflow_timeline_file.created", "", "", receivedAt, "received", "annotation", ""))
		}(),
		func() Case {
			b := `{"payload":{"resource_type":"workflow_run","action":"workflow_run.resumed","object":{"id":"` + run + `","status":"processing"}}}`
			return accepted("an action Onfido may add", b, current, vectorfile.Expect(run, "workflow_run.resumed", "processing", "", receivedAt, "received", "unknown", ""))
		}(),
		func() Case {
			c := accepted("upper-case hex signature", approved, current, vectorfile.Expect(run, "workflow_run.completed", "approved", "user-4711", completed, src, "status", "APPROVED"))
			c.Headers["X-SHA2-Signature"] = strings.ToUpper(c.Headers["X-SHA2-Signature"])
			return c
		}(),
		published("Onfido's published workflow task example", "github.com/onfido/onfido-node test/studio-webhook-event-verifier.test.ts",
			studioToken, studioBody, studioSignature, "", vectorfile.Expect(run2, "workflow_task.started", "started", "", "2024-07-10T12:49:09Z",
				"payload.object.started_at_iso8601", "annotation", "")),
		published("Onfido's published check example: authentic, about no workflow run", "github.com/onfido/onfido-node test/classic-webhook-event-verifier.test.ts",
			classicToken, classicBody, classicSignature, "invalid_payload", Want{}),
		func() Case {
			c := published("Onfido's published example under the app's own tokens", "github.com/onfido/onfido-node test/studio-webhook-event-verifier.test.ts",
				studioToken, studioBody, studioSignature, "bad_signature", Want{})
			c.Secrets = nil
			return c
		}(),

		refused("forged: body changed after signing", strings.Replace(approved, `"approved"`, `"declined"`, 2), headers(current, approved), "bad_signature"),
		refused("signed with a token the app does not hold", approved, headers(otherToken, approved), "bad_signature"),
		refused("no X-SHA2-Signature", approved, map[string]string{}, "bad_signature"),
		refused("X-SHA2-Signature not hex", approved, map[string]string{"X-SHA2-Signature": "zz" + sign(current, approved)[2:]}, "bad_signature"),
		refused("X-SHA2-Signature of SHA-1 length", approved, map[string]string{"X-SHA2-Signature": sign(current, approved)[:40]}, "bad_signature"),
		refused("truncated delivery, signature of the whole body", truncated, headers(current, approved), "bad_signature"),
		refused("truncated body, signed as it is", truncated, headers(current, truncated), "malformed_payload"),
		refused("malformed body with a bad signature: 401 before 400", truncated, headers(otherToken, truncated), "bad_signature"),
		refused("not an object", `[]`, headers(current, `[]`), "malformed_payload"),
		refused("not UTF-8", "{\"payload\":\"\xfe\"}", headers(current, "{\"payload\":\"\xfe\"}"), "malformed_payload"),
		refused("nested too deep", deep, headers(current, deep), "malformed_payload"),
		func() Case {
			b := `{"payload":{"resource_type":"workflow_run","action":"workflow_run.completed","action":"workflow_run.completed","object":{"id":"` + run + `"}}}`
			return refused("payload.action twice", b, headers(current, b), "malformed_payload")
		}(),
		func() Case {
			b := `{"payload":{"resource_type":"workflow_run","action":"workflow_run.completed","object":{"id":"` + run + `","id":"` + run2 + `"}}}`
			return refused("payload.object.id twice", b, headers(current, b), "malformed_payload")
		}(),
		func() Case {
			b := `{"payload":null}`
			return refused("payload null", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"payload":"workflow_run.completed"}`
			return refused("payload not an object", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"payload":{"resource_type":"workflow_run","object":{"id":"` + run + `","status":"approved"}}}`
			return refused("no action", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"payload":{"action":"workflow_run.completed","object":{"id":"` + run + `","status":"approved"}}}`
			return refused("no resource_type", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"payload":{"resource_type":"workflow_run","action":"workflow_run.completed"}}`
			return refused("no object", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"payload":{"resource_type":"workflow_run","action":"workflow_run.completed","object":{"status":"approved"}}}`
			return refused("no run id", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := runCompleted("2f152409.d6c4", "approved", started, completed, "u")
			return refused("run id with a dot (not subject-safe)", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := runCompleted(strings.Repeat("r", 65), "approved", started, completed, "u")
			return refused("run id of 65 characters", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"payload":{"resource_type":"workflow_task","action":"workflow_task.started","object":{"id":"t1","workflow_run_id":"` + run + `"},"resource":{"workflow_run_id":"` + run2 + `"}}}`
			return refused("object and resource name different runs", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"payload":{"resource_type":"workflow_run","action":"workflow_run.completed","object":{"id":"` + run + `","status":["approved"]}}}`
			return refused("object.status not a string", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"payload":{"resource_type":"workflow_run","action":"workflow_run.completed","object":{"id":"` + run + `","status":"approved"},"resource":{"customer_user_id":7}}}`
			return refused("customer_user_id not a string", b, headers(current, b), "invalid_payload")
		}(),
		func() Case {
			b := `{"payload":{"resource_type":"workflow_run","action":"workflow_run.completed\u0000","object":{"id":"` + run + `"}}}`
			return refused("action with a NUL", b, headers(current, b), "invalid_payload")
		}(),
	}

	v := vectorfile.File{
		Comment: "Made by ingest/onfido/testdata/gen from Onfido's documented signing (hex HMAC-SHA256 of the raw body " +
			"under the webhook's token), with Onfido's own published examples; not by the adapter.",
		App:        vectorfile.App{Name: appName, Secrets: []string{current, previous}},
		ReceivedAt: receivedAt,
		Cases:      cases,
	}
	if err := vectorfile.Write(os.Stdout, v); err != nil {
		panic(err)
	}
}
