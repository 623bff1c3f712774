package eventlog

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

func encTestEvent(payload string) domain.Event {
	return domain.Event{
		V: domain.StoredVersion, Provider: "allpass",
		AppKey:         "71f2c0c6-c720-423b-8df0-7763102ad57e",
		ApplicantID:    "ea0562d3-00f9-4fce-88c3-6bbae056eed6",
		ExternalUserID: "user <a&b> \"quoted\" \u2028 \x01",
		Type:           "applicantStepPassed", StepName: "selfie\n",
		Warnings:      []string{"w1", "<script>", "bad\xffutf8"},
		EventAt:       time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.UTC),
		EventAtSource: domain.SourcePayloadUpdatedAt,
		ReceivedAt:    time.Date(2026, 3, 1, 10, 0, 1, 0, time.UTC),
		Payload:       json.RawMessage(payload),
		Raw:           &domain.Raw{Body: `{"data":"<&>"}`, Signature: "abc"},
	}
}

// The stored payload is the plaintext byte for byte: whitespace, key order and characters
// encoding/json would escape all survive.
func TestStoredEventKeepsPayloadVerbatim(t *testing.T) {
	payload := "{ \"type\" : \"applicantStepPassed\",\n\t\"note\": \"<b>&amp;</b>\", \"n\": 1.50 }"
	ev := encTestEvent(payload)
	data, err := appendStoredEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) {
		t.Fatalf("not JSON: %s", data)
	}
	if !bytes.Contains(data, []byte(payload)) {
		t.Fatalf("payload not verbatim in %s", data)
	}
	got, err := DecodeEvent(7, data)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Payload) != payload {
		t.Fatalf("decoded payload %q", got.Payload)
	}
	// encoding/json reads the same event back, with invalid UTF-8 replaced as it does.
	var viaStd domain.Event
	if err := json.Unmarshal(data, &viaStd); err != nil {
		t.Fatal(err)
	}
	want := ev
	want.Warnings = []string{"w1", "<script>", "bad\uFFFDutf8"}
	want.Seq, want.Stored = 0, nil
	viaStd.Payload, want.Payload = nil, nil
	if !reflect.DeepEqual(viaStd, want) {
		t.Fatalf("encoding/json reads\n%+v\nwant\n%+v", viaStd, want)
	}
}

func TestStoredEventRefusesInvalidPayload(t *testing.T) {
	for _, p := range []string{"", "{", `{"a":1} {"b":2}`, "nul"} {
		ev := encTestEvent(p)
		if _, err := appendStoredEvent(nil, &ev); err == nil {
			t.Errorf("payload %q accepted", p)
		}
	}
}

// FuzzStoredEvent: any strings and any valid JSON payload encode to a message that is
// valid JSON and decodes back to the same event.
func FuzzStoredEvent(f *testing.F) {
	f.Add("user-1", "selfie", "warning", `{"type":"x"}`, "body", "sig")
	f.Add("\x00\"\\\u2029", "\xff", "<>&", ` [1, 2 ,"\u00e9"] `, "\n", "")
	f.Fuzz(func(t *testing.T, ext, step, warn, payload, body, sig string) {
		if !json.Valid([]byte(payload)) {
			return
		}
		ev := encTestEvent(payload)
		ev.ExternalUserID, ev.StepName, ev.Warnings = domain.ExternalUserID(ext), step, []string{warn}
		ev.Raw = &domain.Raw{Body: body, Signature: sig}
		data, err := appendStoredEvent(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(data) {
			t.Fatalf("not JSON: %q", data)
		}
		got, err := DecodeEvent(1, data)
		if err != nil {
			t.Fatal(err)
		}
		// A JSON value's surrounding whitespace is not part of it; the message keeps it.
		if string(got.Payload) != strings.Trim(payload, " \t\r\n") {
			t.Fatalf("payload %q, want %q", got.Payload, payload)
		}
		if !bytes.Contains(data, []byte(`"payload":`+payload)) {
			t.Fatalf("payload not verbatim in %q", data)
		}
		valid := func(s string) string { return string([]rune(s)) } // each invalid byte becomes U+FFFD
		if string(got.ExternalUserID) != valid(ext) || got.StepName != valid(step) ||
			got.Raw == nil || got.Raw.Body != valid(body) || got.Raw.Signature != valid(sig) {
			t.Fatalf("strings changed: %+v", got)
		}
	})
}
