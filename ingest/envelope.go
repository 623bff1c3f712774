package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/kycstate/kycstate/domain"
)

// envelopeMaxDepth bounds the nesting of a body. Allpass's envelope is one flat object;
// the slack lets Allpass add a small structured field without a bomb ever reaching the
// decoder.
const envelopeMaxDepth = 8

// parseEnvelope is ParseEnvelope (see there for the rules).
func parseEnvelope(body []byte) (Envelope, error) {
	const op = "ingest.ParseEnvelope"
	bad := func(msg string) error { return fail(op, domain.KindInvalid, CodeMalformedEnvelope, msg) }

	fields, err := decodeObject(body, envelopeMaxDepth, []string{"status", "statusCode", "data", "time"})
	if err != nil {
		return Envelope{}, bad("body " + err.Error())
	}
	var env Envelope
	if raw, ok := fields["data"]; !ok || isNull(raw) {
		return Envelope{}, bad("data is missing")
	} else if err := json.Unmarshal(raw, &env.Data); err != nil {
		return Envelope{}, bad("data must be a string")
	}
	if env.Data == "" {
		return Envelope{}, bad("data is empty")
	}
	if raw, ok := fields["time"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &env.Time); err != nil {
			return Envelope{}, bad("time must be a string")
		}
	}
	if raw, ok := fields["status"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &env.Status); err != nil {
			return Envelope{}, bad("status must be a boolean")
		}
	}
	if raw, ok := fields["statusCode"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &env.StatusCode); err != nil {
			return Envelope{}, bad("statusCode must be an integer")
		}
	}
	return env, nil
}

// errNotObject and its siblings are the reasons decodeObject gives; the callers prefix
// them with what was being decoded ("body", "plaintext"). None quotes the input.
var (
	errNotUTF8     = errors.New("is not valid UTF-8")
	errNotObject   = errors.New("is not a JSON object")
	errTrailing    = errors.New("has data after the JSON object")
	errNestedDepth = errors.New("nests too deep")
)

// decodeObject splits b, which must be exactly one JSON object in valid UTF-8 with
// nothing but white space after it, into its members. The nesting depth is checked
// before any decoding, so a bomb costs one linear scan. A member named in known may
// appear only once (two `id`s could mean two applicants to two readers); other names
// may repeat and the last wins, as in encoding/json.
//
// Errors describe the input's shape without quoting it.
func decodeObject(b []byte, maxDepth int, known []string) (map[string]json.RawMessage, error) {
	if !utf8.Valid(b) {
		return nil, errNotUTF8
	}
	if !depthAtMost(b, maxDepth) {
		return nil, errNestedDepth
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errNotObject
	}
	fields := make(map[string]json.RawMessage, 8)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errNotObject
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errNotObject
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errNotObject
		}
		if _, dup := fields[name]; dup && slices.Contains(known, name) {
			return nil, fmt.Errorf("has the field %q twice", name)
		}
		fields[name] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errNotObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailing
	}
	return fields, nil
}

// depthAtMost reports whether the arrays and objects in b nest at most max levels deep,
// counting brackets outside strings. It reads b once and allocates nothing; it does not
// validate b (the decoder does that afterwards).
func depthAtMost(b []byte, max int) bool {
	depth := 0
	inString, escaped := false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				return false
			}
		case '}', ']':
			depth--
		}
	}
	return true
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }
