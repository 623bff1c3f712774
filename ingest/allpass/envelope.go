package allpass

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jsonscan"
)

// envelopeMaxDepth bounds the nesting of a body. Allpass's envelope is one flat object;
// the slack lets Allpass add a small structured field without a bomb ever reaching the
// decoder.
const envelopeMaxDepth = 8

// parseEnvelope is ParseEnvelope (see there for the rules).
func parseEnvelope(body []byte) (Envelope, error) {
	const op = "allpass.ParseEnvelope"
	bad := func(msg string) error { return domain.Public(op, domain.KindInvalid, CodeMalformedEnvelope, msg) }

	fields, err := decodeObject(body, envelopeMaxDepth, []string{"status", "statusCode", "data", "time"})
	if err != nil {
		return Envelope{}, bad("body " + err.Error())
	}
	var env Envelope
	var ok bool
	if raw, present := fields["data"]; !present || isNull(raw) {
		return Envelope{}, bad("data is missing")
	} else if env.Data, ok = jsonString(raw); !ok {
		return Envelope{}, bad("data must be a string")
	}
	if env.Data == "" {
		return Envelope{}, bad("data is empty")
	}
	if raw, present := fields["time"]; present && !isNull(raw) {
		if env.Time, ok = jsonString(raw); !ok {
			return Envelope{}, bad("time must be a string")
		}
	}
	if raw, present := fields["status"]; present && !isNull(raw) {
		switch string(raw) {
		case "true":
			env.Status = true
		case "false":
		default:
			return Envelope{}, bad("status must be a boolean")
		}
	}
	if raw, present := fields["statusCode"]; present && !isNull(raw) {
		if env.StatusCode, err = strconv.Atoi(string(raw)); err != nil {
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
// before anything else, so a bomb costs one linear scan. A member named in known may
// appear only once (two `id`s could mean two applicants to two readers); other names
// may repeat and the last wins, as in encoding/json. The values alias b.
//
// b is checked whole (UTF-8, depth, json.Valid) before it is split, so the splitting
// scanner walks input known to be well-formed; it is three linear passes with no
// decoder state, several times cheaper than json.Decoder's token API. Errors describe
// the input's shape without quoting it.
func decodeObject(b []byte, maxDepth int, known []string) (map[string]json.RawMessage, error) {
	if !utf8.Valid(b) {
		return nil, errNotUTF8
	}
	if !depthAtMost(b, maxDepth) {
		return nil, errNestedDepth
	}
	if !json.Valid(b) {
		// Only to word the refusal: one valid value and then more is "trailing".
		var v json.RawMessage
		if err := json.NewDecoder(bytes.NewReader(b)).Decode(&v); err == nil && len(v) > 0 && v[0] == '{' {
			return nil, errTrailing
		}
		return nil, errNotObject
	}
	i := skipSpace(b, 0)
	if b[i] != '{' {
		return nil, errNotObject
	}
	fields := make(map[string]json.RawMessage, 8)
	i = skipSpace(b, i+1)
	if b[i] == '}' {
		return fields, nil
	}
	for {
		end := stringEnd(b, i)
		name, _ := jsonString(b[i:end])
		i = skipSpace(b, end) // at ':'
		i = skipSpace(b, i+1) // at the value
		end = valueEnd(b, i)
		if _, dup := fields[name]; dup && slices.Contains(known, name) {
			return nil, fmt.Errorf("has the field %q twice", name)
		}
		fields[name] = json.RawMessage(b[i:end:end])
		i = skipSpace(b, end)
		if b[i] == '}' {
			return fields, nil
		}
		i = skipSpace(b, i+1) // past ','
	}
}

// skipSpace returns the index of the first byte at or after i that is not JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i] == '"'.
// b must be valid JSON.
func stringEnd(b []byte, i int) int {
	if j := stringEnd8(b, i+1); j < len(b) {
		return j + 1
	}
	return len(b)
}

// valueEnd returns the index just past the JSON value starting at b[i]. b must be valid.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// jsonString decodes a JSON string value. A string without escapes (the usual case) is
// copied straight out; valid JSON holds no raw control characters in strings.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// depthAtMost reports whether the arrays and objects in b nest at most max levels deep,
// counting brackets outside strings. It reads b once and allocates nothing; it does not
// validate b (the decoder does that afterwards).
func depthAtMost(b []byte, max int) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd8(b, i+1)
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

// stringEnd8 returns the index of the quote that ends the string whose first byte is at
// i (a backslash escapes the byte after it), or len(b) when none does. Eight bytes with
// neither a quote nor a backslash are passed over at once: the envelope is mostly one
// long hex string.
func stringEnd8(b []byte, i int) int {
	for i < len(b) {
		if i+8 <= len(b) && jsonscan.Quiet(jsonscan.Word(b, i)) {
			i += 8
			continue
		}
		switch b[i] {
		case '"':
			return i
		case '\\':
			i += 2
		default:
			i++
		}
	}
	return len(b)
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }
