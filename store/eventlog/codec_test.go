package eventlog

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

func encTestEvent(payload string) domain.Event {
	return domain.Event{
		V: domain.StoredVersionClear, Provider: "allpass",
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

// The content id and the time flag are stored before the sealed fields, and both
// decoders read them back.
func TestStoredEventContentIDAndTimeFlag(t *testing.T) {
	ev := encTestEvent(`{}`)
	ev.V, ev.Payload, ev.Raw, ev.ExternalUserID = domain.StoredVersion, nil, nil, ""
	ev.ContentID = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	ev.EventAtSource, ev.TimeFlag = domain.SourceReceived, domain.TimeFlagClockSkew
	ev.ExternalUserIndex, ev.SealedExternalUserID, ev.Sealed = "00ff", "AAEC", "AAEC"
	data, err := appendStoredEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `,"cid":"` + string(ev.ContentID) + `","timeFlag":"clock_skew","extIndex":"00ff",`
	if !bytes.Contains(data, []byte(want)) {
		t.Fatalf("stored %s\nwant it to hold %s", data, want)
	}
	var fast, slow domain.Event
	if !fastDecodeEvent(data, &fast, false) {
		t.Fatalf("fast path refused %s", data)
	}
	if err := json.Unmarshal(data, &slow); err != nil {
		t.Fatal(err)
	}
	for _, got := range []domain.Event{fast, slow} {
		if got.ContentID != ev.ContentID || got.TimeFlag != ev.TimeFlag {
			t.Fatalf("decoded cid %q timeFlag %q", got.ContentID, got.TimeFlag)
		}
	}
	// Without them (an event stored before content ids), neither key is written.
	ev.ContentID, ev.TimeFlag = "", ""
	if data, _ = appendStoredEvent(nil, &ev); bytes.Contains(data, []byte(`"cid"`)) || bytes.Contains(data, []byte(`"timeFlag"`)) {
		t.Fatalf("empty fields written: %s", data)
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
	f.Add("0123456789abcdef\"0123456789abcdef", "0123456\u2028789abcdef", "01234567\xff89abcdef", `{}`,
		"0123456789abcdef0123456789abcdef\\0123456789abcdef\x1f0123456789", "0123456789abcdefé")
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

func TestDecodeEvent(t *testing.T) {
	ev := logNth(3, 2)
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Clone(data)
	got, err := DecodeEvent(42, buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'x' // the caller reuses its buffer
	}
	if got.Seq != 42 || !bytes.Equal(got.Stored, data) {
		t.Fatalf("seq %d stored %q", got.Seq, got.Stored)
	}
	again, _ := json.Marshal(got)
	if !bytes.Equal(again, data) {
		t.Fatalf("decoded event re-encodes differently:\n%s\n%s", again, data)
	}

	for name, tc := range map[string]struct {
		data string
		kind domain.ErrorKind
	}{
		"empty":       {"", domain.KindInternal},
		"not json":    {"webhook", domain.KindInternal},
		"wrong shape": {`{"v":1,"eventAt":"yesterday"}`, domain.KindInternal},
		"old version": {`{"v":0,"type":"applicantCreated"}`, domain.KindConflict},
		"new version": {`{"v":4,"type":"applicantCreated"}`, domain.KindConflict},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeEvent(7, []byte(tc.data))
			if k := domain.KindOf(err); k != tc.kind {
				t.Fatalf("kind %v (%v), want %v", k, err, tc.kind)
			}
			if !strings.Contains(err.Error(), "seq 7") {
				t.Errorf("error %q does not name the sequence", err)
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	data, _ := json.Marshal(logNth(0, 1))
	f.Add(data)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"payload":null,"raw":{"body":"\u0000"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeEvent(1, data)
		if err != nil {
			if k := domain.KindOf(err); k != domain.KindInternal && k != domain.KindConflict {
				t.Fatalf("kind %v", k)
			}
			return
		}
		if (ev.V != domain.StoredVersion && ev.V != domain.StoredVersionClear) || ev.Seq != 1 || !bytes.Equal(ev.Stored, data) {
			t.Fatalf("decoded %+v", ev)
		}
	})
}

// BenchmarkDecodeEvent decodes a stored event beside json.Unmarshal of the same bytes
// into a domain.Event, interleaved in the same loop. x-json is DecodeEvent's time over
// encoding/json's (DecodeEvent also copies the input, which the Read path does not).
func BenchmarkDecodeEvent(b *testing.B) {
	data, err := json.Marshal(logNth(5, 3))
	if err != nil {
		b.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() { _, _ = DecodeEvent(1, data) })
	var ours, std time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := DecodeEvent(1, data); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		var ev domain.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			b.Fatal(err)
		}
		ours += mid.Sub(start)
		std += time.Since(mid)
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(std.Nanoseconds())/float64(b.N), "json-ns/op")
	b.ReportMetric(float64(ours)/float64(std), "x-json")
	b.ReportMetric(allocs, "allocs/decode")
}

// logTrickyString draws a string from the characters that stress a JSON codec: quotes,
// backslashes, HTML characters json escapes, control characters, line separators,
// multi-byte and astral runes, and bytes that are not UTF-8.
func logTrickyString(r *rand.Rand) string {
	parts := []string{"a", "Z", "0", " ", `"`, `\`, "/", "<", ">", "&", "\x00", "\n", "\t", "\x1f",
		"\u2028", "\u2029", "é", "日本", "😀", "\xff", "\xed\xa0\x80", "\ufffd", "{", "}", "[", ":", ","}
	var b strings.Builder
	for range r.IntN(12) {
		b.WriteString(parts[r.IntN(len(parts))])
	}
	return b.String()
}

func logRandomPayload(r *rand.Rand, depth int) any {
	switch k := r.IntN(7); {
	case k == 0 || depth > 3:
		return logTrickyString(r)
	case k == 1:
		return r.Float64() * 1e6
	case k == 2:
		return r.IntN(2) == 0
	case k == 3:
		return nil
	case k == 4:
		var a []any
		for range r.IntN(4) {
			a = append(a, logRandomPayload(r, depth+1))
		}
		return a
	default:
		m := map[string]any{}
		for range r.IntN(5) {
			m[logTrickyString(r)] = logRandomPayload(r, depth+1)
		}
		return m
	}
}

// TestFastDecodeCoversCanonicalForm checks that what Append writes always takes the fast
// path, and that the fast path agrees with encoding/json on it.
func TestFastDecodeCoversCanonicalForm(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		ev := logNth(i, 7)
		if i%2 == 1 {
			ev.Provider = logTrickyString(r)
			ev.AppKey = domain.AppKey(logTrickyString(r))
			ev.ApplicantID = domain.ApplicantID(logTrickyString(r))
			ev.ExternalUserID = domain.ExternalUserID(logTrickyString(r))
			ev.Type = domain.EventType(logTrickyString(r))
			ev.StepName = logTrickyString(r)
			ev.EventAtSource = logTrickyString(r)
			ev.Warnings = nil
			for range r.IntN(3) {
				ev.Warnings = append(ev.Warnings, logTrickyString(r))
			}
			ev.EventAt = time.Unix(r.Int64N(1<<35)-1<<34, r.Int64N(1e9)).In(time.FixedZone("", 60*(r.IntN(1500)-750)))
			ev.ReceivedAt = time.Time{}
			p, err := json.Marshal(logRandomPayload(r, 0))
			if err != nil {
				t.Fatal(err)
			}
			if string(p) == "null" {
				p = []byte("{}")
			}
			ev.Payload = p
			ev.ContentID = domain.ContentID(logTrickyString(r))
			if r.IntN(2) == 0 {
				ev.TimeFlag = domain.TimeFlag(logTrickyString(r))
			}
			switch r.IntN(3) {
			case 0:
				ev.Raw = nil
			case 1:
				ev.Raw = &domain.Raw{Body: logTrickyString(r), Signature: logTrickyString(r)}
			}
		}
		data, err := appendStoredEvent(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		var fast, slow domain.Event
		if !fastDecodeEvent(data, &fast, false) {
			t.Fatalf("canonical form not decoded by the fast path:\n%s", data)
		}
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast and json decodes differ for\n%s\nfast %#v\njson %#v", data, fast, slow)
		}
	}
}

// FuzzFastDecodeEventMatchesJSON: whenever the fast path accepts input, encoding/json
// accepts it too and decodes the same event.
func FuzzFastDecodeEventMatchesJSON(f *testing.F) {
	for i := range 4 {
		data, _ := json.Marshal(logNth(i, 2))
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"payload":{"a":[1,-2.5e+3,true,null,"\u00e9\"x"]},"warnings":[],"raw":{}}`))
	f.Add([]byte(`{"v":01}`))
	f.Add([]byte(`{"type":"a\ud800b"}`))
	f.Add([]byte(`{"payload":"\xff"}`))
	f.Add([]byte(`{"eventAt":"2025-01-01T00:00:00+01:00","receivedAt":"2025-01-01T00:00:00.5Z"}`))
	f.Add([]byte(`{"v":2,"type":"applicantCreated","extIndex":"00ff","sealedExt":"AAEC+/==","sealed":"\u0041"}`))
	f.Add([]byte(`{"v":2,"type":"applicantApproved","eventAtSource":"received","cid":"0a1b","timeFlag":"clock_skew","sealed":"AA=="}`))
	f.Add([]byte(`{"v":2,"sealed":"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0+/=QUJDREVG\"\\R0hJSktMTU5PUFFSU1RVVldYWVo0+/="}`))
	f.Add([]byte("{\"v\":2,\"sealed\":\"QUJDREVGR0hJSktM\x1fTU5PUFFSU1RVVldYWVo0+/=\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Without the raw body (a rebuild's read, which skips the sealed and raw values
		// rather than decoding them): what it accepts, encoding/json must accept too, and
		// decode to the same event less ev.Raw and ev.Sealed.
		var lean domain.Event
		leanOK := fastDecodeEvent(data, &lean, true)
		if leanOK {
			var slow domain.Event
			if err := json.Unmarshal(data, &slow); err != nil {
				t.Fatalf("fast path without raw accepted what encoding/json refuses (%v):\n%q", err, data)
			}
			slow.Raw, slow.Sealed = nil, ""
			if !reflect.DeepEqual(lean, slow) {
				t.Fatalf("decodes without raw differ for %q\nlean %#v\njson %#v", data, lean, slow)
			}
		}
		var fast domain.Event
		if !fastDecodeEvent(data, &fast, false) {
			return
		}
		var slow domain.Event
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("fast path accepted what encoding/json refuses (%v):\n%q", err, data)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decodes differ for %q\nfast %#v\njson %#v", data, fast, slow)
		}
		if !leanOK {
			t.Fatalf("fast path without raw refused what it accepts with raw: %q", data)
		}
	})
}

// BenchmarkDecodeFoldInputs decodes what a rebuild reads of a sealed (version 2) stored
// event: every clear field, the sealed body skipped. The sealed body is 1 KiB of
// base64, as a webhook kept with its raw body gives.
func BenchmarkDecodeFoldInputs(b *testing.B) {
	ev := logNth(5, 3)
	ev.V = domain.StoredVersion
	ev.Payload, ev.Raw = nil, nil
	ev.Sealed = strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0+/=", 27)
	data, err := appendStoredEvent(nil, ev)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := decodeFoldInputs(1, data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeFoldInputsVerified is BenchmarkDecodeFoldInputs with the MAC a version
// 3 event carries checked as the log's readers check it (EventLog.decoder): what a
// rebuild pays per event for DESIGN.md section 15. It also times the decode alone on
// the same bytes and reports the ratio (x-decode).
func BenchmarkDecodeFoldInputsVerified(b *testing.B) {
	ev := logNth(5, 3)
	ev.V = domain.StoredVersion
	ev.Payload, ev.Raw = nil, nil
	ev.Sealed = strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0+/=", 27)
	data, err := appendStoredEvent(nil, ev)
	if err != nil {
		b.Fatal(err)
	}
	lk, err := newLogKey(bytes.Repeat([]byte{9}, 32), 0)
	if err != nil {
		b.Fatal(err)
	}
	subject, _ := Subject(ev.AppKey, ev.ApplicantID)
	data = lk.appendMAC(subject, data)
	l := &EventLog{keys: &Keyring{logKey: lk}}
	decode := l.decoder(true)
	b.SetBytes(int64(len(data)))
	var both, alone time.Duration
	for b.Loop() {
		start := time.Now()
		got, err := decode(1, subject, data)
		if err != nil || got.Auth != domain.AuthSigned {
			b.Fatalf("%v %v", got.Auth, err)
		}
		mid := time.Now()
		if _, err := decodeFoldInputs(1, data); err != nil {
			b.Fatal(err)
		}
		both += mid.Sub(start)
		alone += time.Since(mid)
	}
	b.ReportMetric(float64(both.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(alone.Nanoseconds())/float64(b.N), "decode-ns/op")
	b.ReportMetric(float64(both)/float64(alone), "x-decode")
}

// BenchmarkEncodeStoredEvent encodes an event as Append stores it, kept with a raw body
// of 700 bytes of hex as Allpass's envelopes are (the sealed form encodes it likewise).
func BenchmarkEncodeStoredEvent(b *testing.B) {
	ev := logNth(5, 3)
	ev.Raw = &domain.Raw{Body: `{"data":"` + strings.Repeat("0123456789abcdef", 43) + `"}`, Signature: strings.Repeat("ab", 32)}
	buf := make([]byte, 0, 4096)
	for b.Loop() {
		var err error
		if buf, err = appendStoredEvent(buf[:0], ev); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}
