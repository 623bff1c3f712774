package allpass

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/domain"
)

func TestParseEnvelope(t *testing.T) {
	good := []struct {
		name string
		body string
		want Envelope
	}{
		{"allpass", `{"status":true,"statusCode":200,"data":"abcd","time":"2026-03-01T10:00:00.000Z"}`,
			Envelope{Status: true, StatusCode: 200, Data: "abcd", Time: "2026-03-01T10:00:00.000Z"}},
		{"data only", `{"data":"abcd"}`, Envelope{Data: "abcd"}},
		{"nulls are absent", `{"status":null,"statusCode":null,"data":"abcd","time":null}`, Envelope{Data: "abcd"}},
		{"white space around", " \n\t{ \"data\" : \"ab\" }\r\n ", Envelope{Data: "ab"}},
		{"unknown fields kept out", `{"data":"ab","extra":{"a":[1,{"b":null}]},"extra":2}`, Envelope{Data: "ab"}},
		{"escaped data", `{"data":"a\u0062"}`, Envelope{Data: "ab"}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEnvelope([]byte(tt.body))
			if err != nil {
				t.Fatalf("ParseEnvelope: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}

	bad := []struct {
		name string
		body string
	}{
		{"empty", ``},
		{"white space", "  \n"},
		{"null", `null`},
		{"array", `[{"data":"ab"}]`},
		{"string", `"ab"`},
		{"truncated", `{"status":true,"data":`},
		{"no data", `{"status":true,"statusCode":200,"time":"2026-03-01T10:00:00.000Z"}`},
		{"empty data", `{"data":""}`},
		{"null data", `{"data":null}`},
		{"data number", `{"data":12}`},
		{"data object", `{"data":{"iv":"ab"}}`},
		{"time number", `{"data":"ab","time":1772359200}`},
		{"status string", `{"data":"ab","status":"true"}`},
		{"statusCode fraction", `{"data":"ab","statusCode":200.5}`},
		{"duplicate data", `{"data":"ab","data":"cd"}`},
		{"duplicate time", `{"data":"ab","time":"x","time":"y"}`},
		{"trailing garbage", `{"data":"ab"}x`},
		{"second object", `{"data":"ab"}{"data":"cd"}`},
		{"trailing comma", `{"data":"ab",}`},
		{"single quotes", `{'data':'ab'}`},
		{"invalid UTF-8", "{\"data\":\"ab\xff\"}"},
		{"NUL byte outside strings", "{\"data\":\"ab\"}\x00"},
		{"nesting bomb", `{"data":"ab","x":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`},
		{"nesting just over the limit", `{"data":"ab","x":` + strings.Repeat("[", envelopeMaxDepth) + strings.Repeat("]", envelopeMaxDepth) + `}`},
		{"unclosed bomb", strings.Repeat("{\"a\":", 1<<20)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEnvelope([]byte(tt.body))
			if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != CodeMalformedEnvelope {
				t.Fatalf("err = %v (code %q), want KindInvalid malformed_envelope", err, domain.CodeOf(err))
			}
			if strings.Contains(err.Error(), "ab") {
				t.Errorf("message %q echoes the body", err)
			}
		})
	}

	// At the limit is fine: brackets inside strings do not count.
	atLimit := `{"data":"[[[[{{{{","x":` + strings.Repeat("[", envelopeMaxDepth-1) + strings.Repeat("]", envelopeMaxDepth-1) + `}`
	if _, err := ParseEnvelope([]byte(atLimit)); err != nil {
		t.Errorf("envelope nested exactly %d deep: %v", envelopeMaxDepth, err)
	}
}

func TestDepthAtMost(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want bool
	}{
		{`{}`, 1, true},
		{`{"a":{}}`, 1, false},
		{`{"a":"{{{{\"{{{{"}`, 1, true},
		{`{"a":"\\"}`, 1, true},
		{`{"a":"\\",  "b":[[]]}`, 2, false},
		{`[[["]]]"]]]`, 3, true},
		{`[[[[`, 3, false},
		{``, 0, true},
	}
	for _, tt := range tests {
		if got := depthAtMost([]byte(tt.in), tt.max); got != tt.want {
			t.Errorf("depthAtMost(%s, %d) = %v, want %v", tt.in, tt.max, got, tt.want)
		}
	}
}

// TestDecodeObjectMatchesEncodingJSON: the hand-written splitter gives the same members
// as encoding/json on inputs that stress it (escapes, brackets inside strings, nesting,
// white space everywhere). FuzzEnvelope runs the same comparison on generated inputs.
func TestDecodeObjectMatchesEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{}`,
		` { } `,
		`{"a":1}`,
		"{\n\t\"a\" :\r\n 1 ,\"b\":\"x\" }\n",
		`{"a":"}]\"{[","b":[1,"]",{"c":"}"}],"d":{"e":[[]]}}`,
		`{"a\"b":"\\","c\u0041":null,"":true,"f":false}`,
		`{"n":-0.5e-3,"m":12,"s":"\u00e9\ud83d\ude00"}`,
		`{"dup":1,"dup":2}`,
	} {
		got, err := decodeObject([]byte(in), envelopeMaxDepth, nil)
		if err != nil {
			t.Errorf("decodeObject(%s): %v", in, err)
			continue
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decodeObject(%s) = %q, encoding/json %q", in, got, want)
		}
	}
}

// TestDepthAtMostMatchesByteScan holds the word-at-a-time depthAtMost to the plain
// byte-by-byte scan it replaced, on random strings of the bytes that matter to it
// (quotes, backslashes, brackets) among filler, long runs included.
func TestDepthAtMostMatchesByteScan(t *testing.T) {
	byByte := func(b []byte, max int) bool {
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
	parts := []string{`"`, `\`, `\"`, `\\`, "{", "[", "}", "]", "a", "0123456789abcdef", "é", "\x00"}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200_000 {
		var b []byte
		for range r.IntN(40) {
			b = append(b, parts[r.IntN(len(parts))]...)
		}
		for max := range 4 {
			if got, want := depthAtMost(b, max), byByte(b, max); got != want {
				t.Fatalf("depthAtMost(%q, %d) = %v, the byte scan says %v", b, max, got, want)
			}
		}
	}
}
