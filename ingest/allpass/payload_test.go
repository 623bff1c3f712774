package allpass

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

const (
	testAppKey = "71f2c0c6-c720-423b-8df0-7763102ad57e"
	testID     = "ea0562d3-00f9-4fce-88c3-6bbae056eed6"
)

// payloadWith is a valid payload with some members replaced: a value of "" removes the
// member; any other value is the member's raw JSON.
func payloadWith(members map[string]string) string {
	base := []struct{ k, v string }{
		{"type", `"applicantApproved"`},
		{"id", `"` + testID + `"`},
		{"externalUserId", `"user-55d317"`},
		{"appKey", `"` + testAppKey + `"`},
		{"warnings", `[]`},
	}
	var b strings.Builder
	b.WriteString("{")
	sep := ""
	for _, m := range base {
		v, ok := members[m.k]
		if !ok {
			v = m.v
		}
		if v == "" {
			continue
		}
		b.WriteString(sep + `"` + m.k + `":` + v)
		sep = ","
	}
	for k, v := range members {
		if k == "type" || k == "id" || k == "externalUserId" || k == "appKey" || k == "warnings" || v == "" {
			continue
		}
		b.WriteString(sep + `"` + k + `":` + v)
		sep = ","
	}
	b.WriteString("}")
	return b.String()
}

// TestOpenPayload: plaintexts that decrypt but are not acceptable payloads are refused
// with KindInvalid (not JSON) or KindUnprocessable (a field), naming the field, never
// echoing a value, and never letting an id that is not a UUID through.
func TestOpenPayload(t *testing.T) {
	app := newTestApp(t, MethodCBC)
	invalid := []struct{ name, plaintext string }{
		{"empty", ``},
		{"not JSON", `plaintext not json`},
		{"invalid UTF-8", "{\"type\":\"applicantApproved\xff\",\"id\":\"" + testID + "\"}"},
		{"UTF-8 BOM", "\ufeff" + payloadWith(nil)},
		{"array", `[` + payloadWith(nil) + `]`},
		{"string", `"applicantApproved"`},
		{"null", `null`},
		{"truncated", payloadWith(nil)[:40]},
		{"trailing garbage", payloadWith(nil) + `x`},
		{"two objects", payloadWith(nil) + payloadWith(nil)},
		{"duplicate id", strings.Replace(payloadWith(nil), `{`, `{"id":"00000000-0000-0000-0000-000000000000",`, 1)},
		{"duplicate type", strings.Replace(payloadWith(nil), `{`, `{"type":"applicantRejected",`, 1)},
		{"nesting bomb", payloadWith(map[string]string{"x": strings.Repeat(`[`, 100000) + strings.Repeat(`]`, 100000)})},
		{"object bomb", payloadWith(map[string]string{"x": strings.Repeat(`{"a":`, 100000) + `1` + strings.Repeat(`}`, 100000)})},
		{"just over the depth limit", payloadWith(map[string]string{"x": strings.Repeat(`[`, payloadMaxDepth) + strings.Repeat(`]`, payloadMaxDepth)})},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			body, sig := mustSeal(t, app, tt.plaintext, "")
			_, _, err := app.Open(body, sig, time.Now(), Options{})
			if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != CodeMalformedPlaintext {
				t.Fatalf("err = %v (code %q), want KindInvalid malformed_plaintext", err, domain.CodeOf(err))
			}
			assertSafeMessage(t, err, testID, "applicantApproved", "user-55d317")
		})
	}

	badIDs := map[string]string{
		"dot":             `"ea0562d3.00f9-4fce-88c3-6bbae056eed6"`,
		"star":            `"ea0562d3-00f9-4fce-88c3-6bbae056eed*"`,
		"gt":              `"ea0562d3-00f9-4fce-88c3-6bbae056eed>"`,
		"wildcard only":   `">"`,
		"subject tokens":  `"a.b.*"`,
		"space":           `"ea0562d3-00f9-4fce-88c3-6bbae056eed "`,
		"leading space":   `" ea0562d3-00f9-4fce-88c3-6bbae056eed6"`,
		"NUL":             `"ea0562d3-00f9-4fce-88c3-6bbae056eed\u0000"`,
		"newline":         `"ea0562d3-00f9-4fce-88c3-6bbae056eed6\n"`,
		"not hex":         `"ga0562d3-00f9-4fce-88c3-6bbae056eed6"`,
		"no hyphens":      `"ea0562d300f94fce88c36bbae056eed6"`,
		"braces":          `"{ea0562d3-00f9-4fce-88c3-6bbae056eed6}"`,
		"too long":        `"ea0562d3-00f9-4fce-88c3-6bbae056eed66"`,
		"fullwidth digit": `"ea0562d3-00f9-4fce-88c3-6bbae056eed６"`,
		"number":          `12345`,
		"object":          `{"id":"` + testID + `"}`,
		"empty":           `""`,
		"missing":         ``,
		"null":            `null`,
	}
	type fieldCase struct{ name, field, value string }
	var unprocessable []fieldCase
	for name, v := range badIDs {
		unprocessable = append(unprocessable, fieldCase{"id " + name, "id", v}, fieldCase{"appKey " + name, "appKey", v})
	}
	unprocessable = append(unprocessable,
		fieldCase{"appKey of another app", "appKey", `"81f2c0c6-c720-423b-8df0-7763102ad57e"`},
		fieldCase{"type missing", "type", ``},
		fieldCase{"type null", "type", `null`},
		fieldCase{"type empty", "type", `""`},
		fieldCase{"type number", "type", `3`},
		fieldCase{"type with CRLF", "type", `"applicantApproved\r\nX-Injected: 1"`},
		fieldCase{"type with NUL", "type", `"applicant\u0000Approved"`},
		fieldCase{"type too long", "type", `"` + strings.Repeat("a", maxTypeLen+1) + `"`},
		fieldCase{"externalUserId number", "externalUserId", `42`},
		fieldCase{"externalUserId newline", "externalUserId", `"user\n55"`},
		fieldCase{"externalUserId NUL", "externalUserId", `"user\u000055"`},
		fieldCase{"externalUserId DEL", "externalUserId", `"user\u007f55"`},
		fieldCase{"externalUserId too long", "externalUserId", `"` + strings.Repeat("u", maxTextLen+1) + `"`},
		fieldCase{"externalUserId 2 MiB", "externalUserId", `"` + strings.Repeat("u", 2<<20) + `"`},
		fieldCase{"stepName object", "stepName", `{}`},
		fieldCase{"stepName tab", "stepName", `"DOCUMENT\tCAPTURE"`},
		fieldCase{"warnings string", "warnings", `"LOW_IMAGE_QUALITY"`},
		fieldCase{"warnings numbers", "warnings", `[1,2]`},
		fieldCase{"warnings with null", "warnings", `["a",null]`},
		fieldCase{"warnings object", "warnings", `{"a":"b"}`},
	)
	for _, tt := range unprocessable {
		t.Run(tt.name, func(t *testing.T) {
			body, sig := mustSeal(t, app, payloadWith(map[string]string{tt.field: tt.value}), "")
			_, _, err := app.Open(body, sig, time.Now(), Options{})
			if domain.KindOf(err) != domain.KindUnprocessable || domain.CodeOf(err) != CodeInvalidPayload {
				t.Fatalf("err = %v (code %q), want KindUnprocessable invalid_payload", err, domain.CodeOf(err))
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("message %q does not name %s", err, tt.field)
			}
			assertSafeMessage(t, err, testID, "user-55d317", "user", "DOCUMENT", "X-Injected", "81f2c0c6")
		})
	}
}

// TestOpenPayloadAccepted: the tolerant side: unknown fields kept verbatim, appKey in
// upper case, nulls as absent, unicode, depth at the limit.
func TestOpenPayloadAccepted(t *testing.T) {
	app := newTestApp(t, MethodGCM)
	tests := []struct {
		name      string
		plaintext string
		check     func(t *testing.T, ev domain.Event)
	}{
		{"upper-case ids stored lower-case", payloadWith(map[string]string{
			"id": `"` + strings.ToUpper(testID) + `"`, "appKey": `"` + strings.ToUpper(testAppKey) + `"`}),
			func(t *testing.T, ev domain.Event) {
				if ev.ApplicantID != testID || ev.AppKey != testAppKey {
					t.Errorf("ids %s %s not lower-cased", ev.ApplicantID, ev.AppKey)
				}
			}},
		{"unknown fields and white space kept verbatim", " {\n  " + payloadWith(map[string]string{"future": `{"nested":[1,2,{"x":null}]}`, "level": `"basic-kyc"`})[1:] + "\n",
			func(t *testing.T, ev domain.Event) {}},
		{"nulls are absent", payloadWith(map[string]string{"externalUserId": `null`, "warnings": `null`, "stepName": `null`}),
			func(t *testing.T, ev domain.Event) {
				if ev.ExternalUserID != "" || ev.Warnings != nil || ev.StepName != "" {
					t.Errorf("nulls kept: %+v", ev)
				}
			}},
		{"optional fields absent", payloadWith(map[string]string{"externalUserId": ``, "warnings": ``}),
			func(t *testing.T, ev domain.Event) {}},
		{"unicode", payloadWith(map[string]string{"externalUserId": `"Zoë 名前"`, "warnings": `["Ünïcödé — 名前","\u00e9"]`, "stepName": `"SELFIE"`}),
			func(t *testing.T, ev domain.Event) {
				if ev.ExternalUserID != "Zoë 名前" || len(ev.Warnings) != 2 || ev.Warnings[1] != "é" || ev.StepName != "SELFIE" {
					t.Errorf("fields %+v", ev)
				}
			}},
		{"unknown event type kept", payloadWith(map[string]string{"type": `"applicantSomethingNew"`}),
			func(t *testing.T, ev domain.Event) {
				if ev.Type != "applicantSomethingNew" || ev.Type.Class() != domain.ClassUnknown {
					t.Errorf("type %q", ev.Type)
				}
			}},
		{"nested exactly at the depth limit", payloadWith(map[string]string{"x": strings.Repeat(`[`, payloadMaxDepth-1) + strings.Repeat(`]`, payloadMaxDepth-1)}),
			func(t *testing.T, ev domain.Event) {}},
		{"unknown fields may repeat", payloadWith(map[string]string{"x": `1,"x":2`}),
			func(t *testing.T, ev domain.Event) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, sig := mustSeal(t, app, tt.plaintext, "2026-03-01T10:00:00Z")
			ev, _, err := app.Open(body, sig, time.Now(), Options{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if string(ev.Payload) != tt.plaintext {
				t.Errorf("payload not verbatim:\n got %q\nwant %q", ev.Payload, tt.plaintext)
			}
			if ev.Type == "" || ev.ApplicantID == "" {
				t.Errorf("event %+v", ev)
			}
			// The stored form marshals (times in range, payload valid JSON).
			if _, err := json.Marshal(ev); err != nil {
				t.Errorf("event does not marshal: %v", err)
			}
			tt.check(t, ev)
		})
	}
}

func TestEventTime(t *testing.T) {
	received := time.Date(2026, 3, 1, 13, 0, 0, 0, time.FixedZone("CET", 3600))
	const envTime = "2026-03-01T10:00:00.000Z"
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	tests := []struct {
		name    string
		members map[string]string
		envTime string
		want    time.Time
		source  string
	}{
		{"updatedAt first", map[string]string{"updatedAt": `"2026-02-01T09:00:00.123Z"`, "createdAt": `"2026-01-01T00:00:00Z"`, "time": `"2026-01-02T00:00:00Z"`},
			envTime, at("2026-02-01T09:00:00.123Z"), domain.SourcePayloadUpdatedAt},
		{"createdAt when no updatedAt", map[string]string{"createdAt": `"2026-01-01T00:00:00Z"`, "timestamp": `1767225600`},
			envTime, at("2026-01-01T00:00:00Z"), domain.SourcePayloadCreatedAt},
		{"unparseable updatedAt skipped", map[string]string{"updatedAt": `"yesterday"`, "createdAt": `"2026-01-01T00:00:00Z"`},
			envTime, at("2026-01-01T00:00:00Z"), domain.SourcePayloadCreatedAt},
		{"null updatedAt skipped", map[string]string{"updatedAt": `null`, "time": `"2026-01-03T00:00:00+02:00"`},
			envTime, at("2026-01-02T22:00:00Z"), domain.SourcePayloadTime},
		{"timestamp in milliseconds", map[string]string{"timestamp": `1767225600123`},
			envTime, at("2026-01-01T00:00:00.123Z"), domain.SourcePayloadTimestamp},
		{"timestamp in seconds", map[string]string{"timestamp": `1767225600`},
			envTime, at("2026-01-01T00:00:00Z"), domain.SourcePayloadTimestamp},
		{"timestamp in fractional seconds", map[string]string{"timestamp": `1767225600.5`},
			envTime, at("2026-01-01T00:00:00.5Z"), domain.SourcePayloadTimestamp},
		{"timestamp as a digit string", map[string]string{"timestamp": `"1767225600123"`},
			envTime, at("2026-01-01T00:00:00.123Z"), domain.SourcePayloadTimestamp},
		{"time without zone is UTC", map[string]string{"time": `"2026-01-01T05:06:07.5"`},
			envTime, at("2026-01-01T05:06:07.5Z"), domain.SourcePayloadTime},
		{"time with space and basic offset", map[string]string{"updatedAt": `"2026-01-01T05:06:07+0130"`},
			envTime, at("2026-01-01T03:36:07Z"), domain.SourcePayloadUpdatedAt},
		{"time with a space", map[string]string{"updatedAt": `"2026-01-01 05:06:07Z"`},
			envTime, at("2026-01-01T05:06:07Z"), domain.SourcePayloadUpdatedAt},
		{"negative, zero, bool and year-0 skipped", map[string]string{"updatedAt": `-5`, "createdAt": `0`, "time": `true`, "timestamp": `"0000-01-01T00:00:00+01:00"`},
			envTime, at(envTime), domain.SourceEnvelopeTime},
		{"far future skipped", map[string]string{"updatedAt": `1e300`, "createdAt": `253402300800`, "time": `"99999999999999999999"`},
			envTime, at(envTime), domain.SourceEnvelopeTime},
		{"exponent form", map[string]string{"timestamp": `1.7672256e9`},
			envTime, at("2026-01-01T00:00:00Z"), domain.SourcePayloadTimestamp},
		{"last representable second", map[string]string{"timestamp": `253402300799`},
			envTime, at("9999-12-31T23:59:59Z"), domain.SourcePayloadTimestamp},
		{"envelope time", nil, "2026-03-01T11:00:00+01:00", at("2026-03-01T10:00:00Z"), domain.SourceEnvelopeTime},
		{"no times: received", nil, "", received.UTC(), domain.SourceReceived},
		{"bad envelope time: received", nil, "soon", received.UTC(), domain.SourceReceived},
	}
	app := newTestApp(t, MethodCBC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt := payloadWith(tt.members)
			body, sig := mustSeal(t, app, pt, tt.envTime)
			ev, msgID, err := app.Open(body, sig, received, Options{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !ev.EventAt.Equal(tt.want) || ev.EventAtSource != tt.source {
				t.Errorf("eventAt %v from %s, want %v from %s", ev.EventAt, ev.EventAtSource, tt.want, tt.source)
			}
			if ev.EventAt.Location() != time.UTC || ev.ReceivedAt.Location() != time.UTC {
				t.Errorf("times not UTC: %v %v", ev.EventAt, ev.ReceivedAt)
			}
			if msgID != string(ev.ContentID) || ev.ContentID == "" {
				t.Errorf("msgID %q is not the content id %q", msgID, ev.ContentID)
			}
		})
	}
}
