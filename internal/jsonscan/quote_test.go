package jsonscan

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// marshalString is encoding/json's quoting of s, with or without its HTML escapes.
func marshalString(t testing.TB, s string, html bool) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(html)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func checkString(t testing.TB, s string) {
	t.Helper()
	for _, html := range []bool{false, true} {
		if got, want := AppendString([]byte("x"), s, html), append([]byte("x"), marshalString(t, s, html)...); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q, html %v) = %s, encoding/json %s", s, html, got, want)
		}
	}
}

// TestAppendStringMatchesEncodingJSON holds AppendString to encoding/json: every byte
// value at every place of a word and beside it (so both the word test and the byte loop
// meet it), runes that need care, and random strings.
func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for c := range 256 {
		for _, n := range []int{0, 3, 7, 8, 9, 16} {
			for at := 0; at <= n; at++ {
				s := strings.Repeat("a", at) + string([]byte{byte(c)}) + strings.Repeat("b", n-at)
				checkString(t, s)
			}
		}
	}
	for _, s := range []string{"", "\u2028", "\u2029", "x\u2028y\u2029z", "\xe2\x80", "\xf0\x9f\x98", "é€😀",
		"<script>&amp;</script>", strings.Repeat("0123456789abcdef", 9) + "<", "\x7f\x80\xff"} {
		checkString(t, s)
	}
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "Z", "0", "\"", "\\", "<", ">", "&", "\n", "\x00", "\x1f", "\x7f", "é", "\u2028", "\xff", "😀", "\xe2\x80"}
	for range 100_000 {
		var sb strings.Builder
		for range r.IntN(40) {
			if r.IntN(3) == 0 {
				sb.WriteString(alphabet[r.IntN(len(alphabet))])
			} else {
				sb.WriteString("plainword"[:1+r.IntN(8)])
			}
		}
		checkString(t, sb.String())
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "<&>", "\u2028\xff\x00", strings.Repeat("abcdefgh", 4) + "\"\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkString(t, s) })
}
