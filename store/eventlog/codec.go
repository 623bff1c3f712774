package eventlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jsonscan"
)

// errPayloadNotJSON refuses an event whose payload is not one JSON value: splicing it into
// the stored message would make the whole message unreadable.
var errPayloadNotJSON = errors.New("payload is not valid JSON")

// appendStoredEvent writes ev as the stored message (DESIGN.md section 3). It is written by
// hand rather than by encoding/json because the contract keeps the decrypted plaintext
// verbatim, and encoding/json compacts and HTML-escapes a json.RawMessage on the way out:
// the stored payload would no longer be the bytes Allpass sent. Field names and order
// match domain.Event's JSON tags, so encoding/json and DecodeEvent read it back.
//
// A sealed event (versions 2 and 3, by a Keyring) has its personal fields in sealedExt
// and sealed, written last (after a version 2 event's extIndex), and a payload only when
// it holds none in clear (a version 2 operator's). The content id and the time flag
// (DESIGN.md section 15) come before them, when set. A version 3 event's MAC is not
// written here: the log appends it to these bytes (logKey.appendMAC).
func appendStoredEvent(b []byte, ev *domain.Event) ([]byte, error) {
	withPayload := ev.V == domain.StoredVersionClear || ev.V == 0 || len(ev.Payload) > 0
	if withPayload && !json.Valid(ev.Payload) {
		return nil, errPayloadNotJSON
	}
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(ev.V), 10)
	b = appendField(b, "provider", ev.Provider)
	if ev.Origin != "" {
		b = appendField(b, "origin", string(ev.Origin))
	}
	b = appendField(b, "appKey", string(ev.AppKey))
	b = appendField(b, "applicantId", string(ev.ApplicantID))
	if ev.ExternalUserID != "" {
		b = appendField(b, "externalUserId", string(ev.ExternalUserID))
	}
	b = appendField(b, "type", string(ev.Type))
	if ev.ProviderStatus != "" {
		b = appendField(b, "providerStatus", ev.ProviderStatus)
	}
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
	if withPayload {
		b = append(b, `,"payload":`...)
		b = append(b, ev.Payload...)
	}
	if ev.Raw != nil {
		b = append(b, `,"raw":{"body":`...)
		b = appendJSONString(b, ev.Raw.Body)
		if ev.Raw.Signature != "" {
			b = appendField(b, "signature", ev.Raw.Signature)
		}
		b = append(b, '}')
	}
	if ev.ContentID != "" {
		b = appendField(b, "cid", string(ev.ContentID))
	}
	if ev.TimeFlag != "" {
		b = appendField(b, "timeFlag", string(ev.TimeFlag))
	}
	if ev.ExternalUserIndex != "" {
		b = appendField(b, "extIndex", string(ev.ExternalUserIndex))
	}
	if ev.SealedExternalUserID != "" {
		b = appendField(b, "sealedExt", string(ev.SealedExternalUserID))
	}
	if ev.Sealed != "" {
		b = appendField(b, "sealed", ev.Sealed)
	}
	return append(b, '}'), nil
}

// EncodeEvent writes ev in the stored message's form, as Append would store it (without
// sealing it): what export --open writes for an event it has opened.
func EncodeEvent(ev *domain.Event) ([]byte, error) {
	b, err := appendStoredEvent(nil, ev)
	if err != nil {
		return nil, domain.E("eventlog.EncodeEvent", domain.KindInvalid, err)
	}
	return b, nil
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

// appendJSONString quotes s as a JSON string, as encoding/json does but with '<', '>'
// and '&' left as they are.
func appendJSONString(b []byte, s string) []byte { return jsonscan.AppendString(b, s, false) }

// DecodeEvent parses a stored message. seq and data are kept in the event.
//
// data is copied, so the caller may reuse its buffer (a bbolt value, say). Errors:
// KindInternal when data is not a stored event, KindConflict when it was written in a
// format version this build does not read. Versions 1 to 3 are read: a version 2 or 3
// event comes back sealed (Keyring.Open opens it), a version 1 event in clear. The MAC
// of a version 3 event is not checked here: the log's readers check it (ev.Auth).
func DecodeEvent(seq uint64, data []byte) (domain.Event, error) {
	return decodeEvent(seq, slices.Clone(data))
}

// decodeEvent is DecodeEvent for a buffer the event may keep (a message read from NATS
// is never reused by the client). ev.Payload may share data's memory.
//
// Decoding is the bulk of a replay's cost (a rebuild decodes every event of the log), so
// the canonical form Append writes goes through fastDecodeEvent; anything else, and
// every error, goes through encoding/json, which stays the definition of the format.
func decodeEvent(seq uint64, data []byte) (domain.Event, error) {
	return decodeStored(seq, data, false)
}

// decodeFoldInputs is decodeEvent without ev.Raw and ev.Sealed: Read and Follow feed the fold, the
// projection and exports, which read the fold's inputs and ev.Stored but never the original
// body, and unescaping that body (JSON inside a JSON string) was the largest single cost
// of a rebuild's decode. DecodeEvent(ev.Seq, ev.Stored) gives it back when wanted.
func decodeFoldInputs(seq uint64, data []byte) (domain.Event, error) {
	return decodeStored(seq, data, true)
}

func decodeStored(seq uint64, data []byte, skipRaw bool) (domain.Event, error) {
	const op = "eventlog.DecodeEvent"
	var ev domain.Event // on the stack: the fallback decodes into one of its own
	if !fastDecodeEvent(data, &ev, skipRaw) {
		slow := new(domain.Event)
		if err := json.Unmarshal(data, slow); err != nil {
			return domain.Event{}, domain.E(op, domain.KindInternal, fmt.Errorf("seq %d is not a stored event: %w", seq, err))
		}
		if skipRaw {
			slow.Raw, slow.Sealed = nil, ""
		}
		ev = *slow
	}
	if ev.V < domain.StoredVersionClear || ev.V > domain.StoredVersion {
		return domain.Event{}, domain.E(op, domain.KindConflict,
			fmt.Sprintf("seq %d has stored format version %d; this build reads versions %d to %d", seq, ev.V, domain.StoredVersionClear, domain.StoredVersion))
	}
	ev.Seq, ev.Stored = seq, data
	return ev, nil
}

// fastDecodeEvent decodes data if it is in the canonical form json.Marshal writes for a
// domain.Event: no whitespace outside the payload, only the known keys, each at most
// once, no nulls. It reports false for anything outside that form, and the caller falls
// back to json.Unmarshal. When it reports true, ev is what json.Unmarshal would have
// produced (FuzzFastDecodeEventMatchesJSON checks this), except that ev.Payload shares
// data's memory instead of holding a copy.
func fastDecodeEvent(data []byte, ev *domain.Event, skipRaw bool) bool {
	d := fastDec{data: data}
	if !d.eat('{') {
		return false
	}
	if d.eat('}') {
		return d.i == len(d.data)
	}
	var seen uint32
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		var bit uint32
		var s string
		switch string(key) {
		case "v":
			bit = 1 << 0
			ev.V, ok = d.smallInt()
		case "provider":
			bit = 1 << 1
			ev.Provider, ok = d.str()
		case "origin":
			bit = 1 << 13
			s, ok = d.str()
			ev.Origin = domain.Origin(s)
		case "appKey":
			bit = 1 << 2
			s, ok = d.str()
			ev.AppKey = domain.AppKey(s)
		case "applicantId":
			bit = 1 << 3
			s, ok = d.str()
			ev.ApplicantID = domain.ApplicantID(s)
		case "externalUserId":
			bit = 1 << 4
			s, ok = d.str()
			ev.ExternalUserID = domain.ExternalUserID(s)
		case "type":
			bit = 1 << 5
			s, ok = d.str()
			ev.Type = domain.EventType(s)
		case "providerStatus":
			bit = 1 << 19
			ev.ProviderStatus, ok = d.str()
		case "stepName":
			bit = 1 << 6
			ev.StepName, ok = d.str()
		case "warnings":
			bit = 1 << 7
			ev.Warnings, ok = d.strs()
		case "eventAt":
			bit = 1 << 8
			ok = d.time(&ev.EventAt)
		case "eventAtSource":
			bit = 1 << 9
			ev.EventAtSource, ok = d.str()
		case "receivedAt":
			bit = 1 << 10
			ok = d.time(&ev.ReceivedAt)
		case "payload":
			bit = 1 << 11
			ev.Payload, ok = d.rawValue()
		case "cid":
			bit = 1 << 17
			s, ok = d.str()
			ev.ContentID = domain.ContentID(s)
		case "timeFlag":
			bit = 1 << 18
			s, ok = d.str()
			ev.TimeFlag = domain.TimeFlag(s)
		case "extIndex":
			bit = 1 << 14
			s, ok = d.str()
			ev.ExternalUserIndex = domain.ExternalUserIndex(s)
		case "sealedExt":
			bit = 1 << 15
			s, ok = d.str()
			ev.SealedExternalUserID = domain.SealedExternalUserID(s)
		case "sealed":
			bit = 1 << 16
			if skipRaw {
				ok = d.skipValue(0) // a rebuild never opens it; copying it was most of the decode
			} else {
				ev.Sealed, ok = d.str()
			}
		case "mac":
			// Checked by the reader over the stored bytes (logKey.verdict), not kept.
			bit = 1 << 19
			ok = d.skipString()
		case "raw":
			bit = 1 << 12
			if skipRaw {
				ok = d.skipValue(0)
			} else {
				ev.Raw, ok = d.rawObject()
			}
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if d.eat('}') {
			return d.i == len(d.data)
		}
		if !d.eat(',') {
			return false
		}
	}
}

// fastDec is a cursor over JSON in canonical form. Its methods report false where the
// input leaves that form; they never decide that input is invalid JSON.
type fastDec struct {
	data []byte
	i    int
}

func (d *fastDec) eat(c byte) bool {
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// key reads "name": where name holds no escape.
func (d *fastDec) key() ([]byte, bool) {
	if !d.eat('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.data) {
		c := d.data[d.i]
		if c == '"' {
			k := d.data[start:d.i]
			d.i++
			return k, d.eat(':')
		}
		if c == '\\' || c < 0x20 {
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// smallInt reads a non-negative integer of at most 9 digits.
func (d *fastDec) smallInt() (int, bool) {
	start, n := d.i, 0
	for d.i < len(d.data) && '0' <= d.data[d.i] && d.data[d.i] <= '9' {
		n = n*10 + int(d.data[d.i]-'0')
		d.i++
	}
	digits := d.i - start
	if digits == 0 || digits > 9 || (digits > 1 && d.data[start] == '0') {
		return 0, false
	}
	return n, true
}

func (d *fastDec) str() (string, bool) {
	b, ok := d.strBytes()
	if !ok {
		return "", false
	}
	return internString(b), true
}

// strBytes reads a JSON string and returns its contents unescaped: a slice of data when
// there is nothing to unescape, a new buffer otherwise. It reports false for escapes
// json would treat specially (surrogates) and for bytes json would replace (invalid
// UTF-8), as well as for anything invalid.
func (d *fastDec) strBytes() ([]byte, bool) {
	if !d.eat('"') {
		return nil, false
	}
	start, i := d.i, d.i
	for i < len(d.data) {
		c := d.data[i]
		if c == '"' {
			d.i = i + 1
			return d.data[start:i], true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		i++
	}
	buf := make([]byte, i-start, len(d.data)-start)
	copy(buf, d.data[start:i])
	for i < len(d.data) {
		c := d.data[i]
		switch {
		case c == '"':
			d.i = i + 1
			return buf, true
		case c < 0x20:
			return nil, false
		case c == '\\':
			if i+1 >= len(d.data) {
				return nil, false
			}
			switch e := d.data[i+1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				if i+6 > len(d.data) {
					return nil, false
				}
				r, ok := hex4(d.data[i+2 : i+6])
				if !ok || utf16.IsSurrogate(r) {
					return nil, false
				}
				buf = utf8.AppendRune(buf, r)
				i += 4
			default:
				return nil, false
			}
			i += 2
		case c < utf8.RuneSelf:
			j := i + 1
			for j < len(d.data) && d.data[j] >= 0x20 && d.data[j] < utf8.RuneSelf && d.data[j] != '"' && d.data[j] != '\\' {
				j++
			}
			buf = append(buf, d.data[i:j]...)
			i = j
		default:
			r, size := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false
			}
			buf = append(buf, d.data[i:i+size]...)
			i += size
		}
	}
	return nil, false
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func (d *fastDec) strs() ([]string, bool) {
	if !d.eat('[') {
		return nil, false
	}
	out := []string{}
	if d.eat(']') {
		return out, true
	}
	for {
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if d.eat(']') {
			return out, true
		}
		if !d.eat(',') {
			return nil, false
		}
	}
}

// time hands the string token to time.Time.UnmarshalJSON, as encoding/json does.
func (d *fastDec) time(t *time.Time) bool {
	start := d.i
	if _, ok := d.strBytes(); !ok {
		return false
	}
	return t.UnmarshalJSON(d.data[start:d.i]) == nil
}

func (d *fastDec) rawObject() (*domain.Raw, bool) {
	if !d.eat('{') {
		return nil, false
	}
	r := &domain.Raw{}
	if d.eat('}') {
		return r, true
	}
	var seenBody, seenSig bool
	for {
		key, ok := d.key()
		if !ok {
			return nil, false
		}
		switch string(key) {
		case "body":
			if seenBody {
				return nil, false
			}
			seenBody = true
			r.Body, ok = d.str()
		case "signature":
			if seenSig {
				return nil, false
			}
			seenSig = true
			r.Signature, ok = d.str()
		default:
			return nil, false
		}
		if !ok {
			return nil, false
		}
		if d.eat('}') {
			return r, true
		}
		if !d.eat(',') {
			return nil, false
		}
	}
}

// rawValue returns the bytes of one JSON value (the payload), checked the way
// encoding/json checks a json.RawMessage: JSON syntax, any bytes inside strings.
func (d *fastDec) rawValue() (json.RawMessage, bool) {
	start := d.i
	if d.i < len(d.data) && d.data[d.i] == 'n' {
		return nil, false // null: leave it to encoding/json
	}
	if !d.skipValue(0) {
		return nil, false
	}
	return json.RawMessage(d.data[start:d.i:d.i]), true
}

const fastMaxDepth = 128

func (d *fastDec) ws() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *fastDec) skipValue(depth int) bool {
	if depth > fastMaxDepth || d.i >= len(d.data) {
		return false
	}
	switch c := d.data[d.i]; {
	case c == '{':
		d.i++
		d.ws()
		if d.eat('}') {
			return true
		}
		for {
			d.ws()
			if !d.skipString() {
				return false
			}
			d.ws()
			if !d.eat(':') {
				return false
			}
			d.ws()
			if !d.skipValue(depth + 1) {
				return false
			}
			d.ws()
			if d.eat('}') {
				return true
			}
			if !d.eat(',') {
				return false
			}
		}
	case c == '[':
		d.i++
		d.ws()
		if d.eat(']') {
			return true
		}
		for {
			d.ws()
			if !d.skipValue(depth + 1) {
				return false
			}
			d.ws()
			if d.eat(']') {
				return true
			}
			if !d.eat(',') {
				return false
			}
		}
	case c == '"':
		return d.skipString()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return d.skipNumber()
	}
	return false
}

func (d *fastDec) literal(lit string) bool {
	if len(d.data)-d.i >= len(lit) && string(d.data[d.i:d.i+len(lit)]) == lit {
		d.i += len(lit)
		return true
	}
	return false
}

// skipString checks a JSON string: valid escapes, no control characters; other bytes are
// kept as they are (a json.RawMessage is not unescaped). The bytes that stand for
// themselves are passed over eight at a time (jsonscan.Plain): a rebuild skips a sealed body
// of a kilobyte or more in every event.
func (d *fastDec) skipString() bool {
	if !d.eat('"') {
		return false
	}
	b, i := d.data, d.i
	for {
		for i+8 <= len(b) && jsonscan.Plain(jsonscan.Word(b, i)) {
			i += 8
		}
		for i < len(b) && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '"':
			d.i = i + 1
			return true
		case '\\':
		default:
			return false // a control character
		}
		if i+1 >= len(b) {
			return false
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if i+6 > len(b) {
				return false
			}
			if _, ok := hex4(b[i+2 : i+6]); !ok {
				return false
			}
			i += 6
		default:
			return false
		}
	}
}

// skipNumber checks -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *fastDec) skipNumber() bool {
	d.eat('-')
	switch {
	case d.eat('0'):
	case d.i < len(d.data) && '1' <= d.data[d.i] && d.data[d.i] <= '9':
		d.digits()
	default:
		return false
	}
	if d.eat('.') && !d.digits() {
		return false
	}
	if d.eat('e') || d.eat('E') {
		if !d.eat('+') {
			d.eat('-')
		}
		if !d.digits() {
			return false
		}
	}
	return true
}

func (d *fastDec) digits() bool {
	start := d.i
	for d.i < len(d.data) && '0' <= d.data[d.i] && d.data[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}

// internString returns the constant for the strings most events repeat (provider, event
// types, time sources), so decoding them allocates nothing.
func internString(b []byte) string {
	switch string(b) {
	case "allpass":
		return "allpass"
	case string(domain.OriginWebhook):
		return string(domain.OriginWebhook)
	case string(domain.EventCreated):
		return string(domain.EventCreated)
	case string(domain.EventIncomplete):
		return string(domain.EventIncomplete)
	case string(domain.EventInProgress):
		return string(domain.EventInProgress)
	case string(domain.EventInReview):
		return string(domain.EventInReview)
	case string(domain.EventOnHold):
		return string(domain.EventOnHold)
	case string(domain.EventCompleted):
		return string(domain.EventCompleted)
	case string(domain.EventApproved):
		return string(domain.EventApproved)
	case string(domain.EventRejected):
		return string(domain.EventRejected)
	case string(domain.EventStepPassed):
		return string(domain.EventStepPassed)
	case domain.SourcePayloadUpdatedAt:
		return domain.SourcePayloadUpdatedAt
	case domain.SourcePayloadCreatedAt:
		return domain.SourcePayloadCreatedAt
	case domain.SourcePayloadTime:
		return domain.SourcePayloadTime
	case domain.SourcePayloadTimestamp:
		return domain.SourcePayloadTimestamp
	case domain.SourceEnvelopeTime:
		return domain.SourceEnvelopeTime
	case domain.SourceReceived:
		return domain.SourceReceived
	case string(domain.TimeFlagClockSkew):
		return string(domain.TimeFlagClockSkew)
	}
	return string(b)
}
