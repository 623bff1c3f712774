package jsonscan

import "unicode/utf8"

const hexDigits = "0123456789abcdef"

// AppendString appends s quoted as a JSON string, byte for byte as encoding/json quotes
// it: the escapes JSON requires (\b, \f, \n, \r and \t by name, other control
// characters as \u00XX), invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped, and, with
// html, '<', '>' and '&' as \u003c, \u003e and \u0026 (json.Marshal's default).
// Hand-written encoders use it so that their output is the one encoding/json would give.
func AppendString(b []byte, s string, html bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) {
			if w := WordString(s, i); PlainASCII(w) && (!html || htmlFree(w)) {
				i += 8 // long values are mostly hex, base64 or plain words
				continue
			}
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && (!html || (c != '<' && c != '>' && c != '&')) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// htmlFree reports whether no byte of w is '<', '>' or '&'.
func htmlFree(w uint64) bool { return !hasByte(w, '<') && !hasByte(w, '>') && !hasByte(w, '&') }
