package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// The reasons Object refuses its input. Each completes a sentence that starts with what
// was being read ("body ", "data.attributes "), and none quotes the input.
var (
	ErrNotUTF8   = errors.New("is not valid UTF-8")
	ErrNotObject = errors.New("is not a JSON object")
	ErrTrailing  = errors.New("has data after the JSON object")
	ErrTooDeep   = errors.New("nests too deep")
)

// Object splits b, which must be exactly one JSON object in valid UTF-8 with nothing but
// white space around it, into its members. Arrays and objects may nest at most maxDepth
// levels (the object itself is the first); the depth is checked before anything else,
// so a bomb costs one linear scan. A member named in known may appear only once: two
// `id`s could mean two applicants to two readers, so a body that repeats one is refused
// rather than read one way here and another way by an auditor's tool. Other names may
// repeat and the last wins, as in encoding/json. The values alias b.
//
// Provider adapters read a webhook body with it: one call per level they look into, each
// naming the members that level is known to hold. Errors are ErrNotUTF8, ErrTooDeep,
// ErrNotObject, ErrTrailing, or one that names a known member given twice.
func Object(b []byte, maxDepth int, known ...string) (map[string]json.RawMessage, error) {
	if !utf8.Valid(b) {
		return nil, ErrNotUTF8
	}
	if !DepthAtMost(b, maxDepth) {
		return nil, ErrTooDeep
	}
	if !json.Valid(b) {
		// Only to word the refusal: one whole object and then more is "trailing".
		var v json.RawMessage
		if err := json.NewDecoder(bytes.NewReader(b)).Decode(&v); err == nil && len(v) > 0 && v[0] == '{' {
			return nil, ErrTrailing
		}
		return nil, ErrNotObject
	}
	// b is valid JSON from here on, so the scanner below needs no error paths.
	i := skipSpace(b, 0)
	if b[i] != '{' {
		return nil, ErrNotObject
	}
	members := make(map[string]json.RawMessage, 8)
	i = skipSpace(b, i+1)
	if b[i] == '}' {
		return members, nil
	}
	for {
		end := stringEnd(b, i)
		name, _ := String(b[i:end])
		i = skipSpace(b, end) // at ':'
		i = skipSpace(b, i+1) // at the value
		end = valueEnd(b, i)
		if _, dup := members[name]; dup && slices.Contains(known, name) {
			return nil, fmt.Errorf("has the member %q twice", name)
		}
		members[name] = json.RawMessage(b[i:end:end])
		i = skipSpace(b, end)
		if b[i] == '}' {
			return members, nil
		}
		i = skipSpace(b, i+1) // past ','
	}
}

// String decodes raw, a JSON string value, and reports whether it was one. A string
// without escapes (the usual case) is copied straight out.
func String(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		s := raw[1 : len(raw)-1]
		if !utf8.Valid(s) || bytes.IndexByte(s, '"') >= 0 || hasControl(s) {
			return "", false
		}
		return string(s), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// IsNull reports whether raw is the JSON literal null.
func IsNull(raw []byte) bool { return string(raw) == "null" }

// DepthAtMost reports whether the arrays and objects in b nest at most max levels deep,
// counting brackets outside strings. It reads b once and allocates nothing; it does not
// validate b.
func DepthAtMost(b []byte, max int) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = closingQuote(b, i+1)
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

func hasControl(s []byte) bool {
	for _, c := range s {
		if c < 0x20 {
			return true
		}
	}
	return false
}

// skipSpace returns the index of the first byte at or after i that is not JSON white
// space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i] == '"'.
func stringEnd(b []byte, i int) int {
	if j := closingQuote(b, i+1); j < len(b) {
		return j + 1
	}
	return len(b)
}

// valueEnd returns the index just past the JSON value starting at b[i]; b is valid.
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

// closingQuote returns the index of the quote that ends the string whose first byte is
// at i (a backslash escapes the byte after it), or len(b) when none does. Eight bytes
// with neither a quote nor a backslash are passed over at once.
func closingQuote(b []byte, i int) int {
	for i < len(b) {
		if i+8 <= len(b) && Quiet(Word(b, i)) {
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
