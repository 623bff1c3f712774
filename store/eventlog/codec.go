package eventlog

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/kycstate/kycstate/domain"
)

// errPayloadNotJSON refuses an event whose payload is not one JSON value: splicing it into
// the stored message would make the whole message unreadable.
var errPayloadNotJSON = errors.New("payload is not valid JSON")

// appendStoredEvent writes ev as the stored message (DESIGN.md section 3). It is written by
// hand rather than by encoding/json because the contract keeps the decrypted plaintext
// verbatim, and encoding/json compacts and HTML-escapes a json.RawMessage on the way out:
// the stored payload would no longer be the bytes Allpass sent. Field names and order
// match domain.Event's JSON tags, so encoding/json and DecodeEvent read it back.
func appendStoredEvent(b []byte, ev *domain.Event) ([]byte, error) {
	if !json.Valid(ev.Payload) {
		return nil, errPayloadNotJSON
	}
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(ev.V), 10)
	b = appendField(b, "provider", ev.Provider)
	b = appendField(b, "appKey", string(ev.AppKey))
	b = appendField(b, "applicantId", string(ev.ApplicantID))
	if ev.ExternalUserID != "" {
		b = appendField(b, "externalUserId", string(ev.ExternalUserID))
	}
	b = appendField(b, "type", string(ev.Type))
	if ev.StepName != "" {
		b = appendField(b, "stepName", ev.StepName)
	}
	if len(ev.Warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range ev.Warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, w)
		}
		b = append(b, ']')
	}
	b = appendTimeField(b, "eventAt", ev.EventAt)
	b = appendField(b, "eventAtSource", ev.EventAtSource)
	b = appendTimeField(b, "receivedAt", ev.ReceivedAt)
	b = append(b, `,"payload":`...)
	b = append(b, ev.Payload...)
	if ev.Raw != nil {
		b = append(b, `,"raw":{"body":`...)
		b = appendJSONString(b, ev.Raw.Body)
		if ev.Raw.Signature != "" {
			b = appendField(b, "signature", ev.Raw.Signature)
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

func appendField(b []byte, key, val string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSONString(b, val)
}

// appendTimeField writes t as encoding/json does (RFC 3339 with nanoseconds).
func appendTimeField(b []byte, key string, t time.Time) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, `":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as a JSON string: the escapes JSON requires, invalid UTF-8 as
// U+FFFD (as encoding/json does), U+2028/U+2029 escaped; '<', '>' and '&' left as they are.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
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
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
