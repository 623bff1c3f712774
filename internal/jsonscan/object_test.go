package jsonscan

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestObject(t *testing.T) {
	for _, c := range []struct {
		name, in string
		depth    int
		known    []string
		want     map[string]string // nil: refused
		err      error             // the refusal, when it is one of the sentinels
	}{
		{name: "empty", in: ` {} `, depth: 1, want: map[string]string{}},
		{name: "members", in: `{"a":1,"b":"x","c":[1,{"d":null}],"e":{"f":"}"},"g":true}`, depth: 3,
			want: map[string]string{"a": `1`, "b": `"x"`, "c": `[1,{"d":null}]`, "e": `{"f":"}"}`, "g": `true`}},
		{name: "escaped name", in: `{"\u0069d":"x"}`, depth: 1, want: map[string]string{"id": `"x"`}},
		{name: "white space", in: "\n{ \"a\" :\t-1.5e3 ,\r\"b\" : \"q\\\"\" }\n", depth: 1,
			want: map[string]string{"a": `-1.5e3`, "b": `"q\""`}},
		{name: "unknown repeats, last wins", in: `{"x":1,"x":2}`, depth: 1, known: []string{"id"},
			want: map[string]string{"x": `2`}},
		{name: "known twice", in: `{"id":"a","id":"b"}`, depth: 1, known: []string{"id"}},
		{name: "known twice, escaped", in: `{"id":"a","\u0069d":"b"}`, depth: 1, known: []string{"id"}},
		{name: "too deep", in: `{"a":{"b":[1]}}`, depth: 2, err: ErrTooDeep},
		{name: "deep enough", in: `{"a":{"b":[1]}}`, depth: 3, want: map[string]string{"a": `{"b":[1]}`}},
		{name: "brackets in strings do not count", in: `{"a":"[[[[{{{{"}`, depth: 1, want: map[string]string{"a": `"[[[[{{{{"`}},
		{name: "array", in: `[1]`, depth: 2, err: ErrNotObject},
		{name: "null", in: `null`, depth: 1, err: ErrNotObject},
		{name: "string", in: `"{}"`, depth: 1, err: ErrNotObject},
		{name: "empty input", in: ``, depth: 1, err: ErrNotObject},
		{name: "truncated", in: `{"a":1`, depth: 1, err: ErrNotObject},
		{name: "trailing", in: `{"a":1} {}`, depth: 1, err: ErrTrailing},
		{name: "trailing garbage", in: `{"a":1}x`, depth: 1, err: ErrTrailing},
		{name: "not UTF-8", in: "{\"a\":\"\xff\"}", depth: 1, err: ErrNotUTF8},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Object([]byte(c.in), c.depth, c.known...)
			if c.want == nil {
				if err == nil {
					t.Fatalf("Object(%q) = %v, want a refusal", c.in, got)
				}
				if c.err != nil && !errors.Is(err, c.err) {
					t.Fatalf("Object(%q) refused with %v, want %v", c.in, err, c.err)
				}
				if strings.Contains(err.Error(), c.in) && len(c.in) > 2 {
					t.Fatalf("refusal %q quotes the input", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Object(%q): %v", c.in, err)
			}
			gotS := map[string]string{}
			for k, v := range got {
				gotS[k] = string(v)
			}
			if !reflect.DeepEqual(gotS, c.want) {
				t.Fatalf("Object(%q) = %q, want %q", c.in, gotS, c.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	for in, want := range map[string]string{`"abc"`: "abc", `"a\"b"`: `a"b`, `"\u00e9"`: "é", `""`: ""} {
		if got, ok := String([]byte(in)); !ok || got != want {
			t.Errorf("String(%s) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{``, `"`, `abc`, `1`, `null`, `"a"b"`, "\"\x01\"", "\"\xff\"", `"\x"`} {
		if got, ok := String([]byte(in)); ok {
			t.Errorf("String(%q) = %q, true; want false", in, got)
		}
	}
}

// FuzzObject compares Object, whose splitter is hand-written, with encoding/json on
// everything both should take: valid UTF-8 within the depth limit and no name twice.
func FuzzObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":"c"}],"d":"\"}"}`, `{"a":1}{}`, ` { "x" : null } `,
		`{"a":"\\"}`, `[{"a":1}]`, `{"id":1,"id":2}`} {
		f.Add([]byte(s))
	}
	const depth = 8
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Object(b, depth, "id")
		if err != nil {
			if len(err.Error()) > 64 {
				t.Fatalf("refusal of %d bytes may quote the input: %v", len(err.Error()), err)
			}
			if !utf8.Valid(b) || !DepthAtMost(b, depth) {
				return
			}
		}
		var want map[string]json.RawMessage
		werr := json.Unmarshal(b, &want)
		if werr == nil && want == nil {
			werr = ErrNotObject // "null" decodes into a nil map
		}
		if !utf8.Valid(b) || !DepthAtMost(b, depth) {
			if err == nil {
				t.Fatalf("accepted %q past the UTF-8 or depth check", b)
			}
			return
		}
		if err != nil && werr == nil && strings.Contains(err.Error(), "twice") {
			return // a known member twice: encoding/json takes the last
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("Object err %v, encoding/json err %v on %q", err, werr, b)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("Object split\n%q\nencoding/json\n%q", got, want)
		}
	})
}
