package projection

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// The projection stores states, history records and changes in a compact binary form
// rather than JSON: a rebuild encodes every record once and a live batch re-encodes every
// state it touches, and JSON with its time formatting costs several times the fold itself
// and triples the bytes written. The encoding is deterministic (the same value always
// yields the same bytes), which is what lets a bulk rebuild and the live path produce
// byte-identical files. Every value starts with a format byte; a change to any layout
// here must bump SchemaVersion, which covers them all, and
// testdata/projection/codec_schema<SchemaVersion>.golden holds their encodings, so one
// that changes by accident fails a test.
//
// Layouts (uvarint lengths and counts; times as zigzag varint Unix seconds + uvarint
// nanoseconds, read back in UTC):
//
//	state:  0x05 digest[32] lastSeq events anomalies applicantId appKey externalUserId
//	        sealedExt extIndex status statusAt lastEventAt reconciledAt erased(0|1)
//	        stepsPassed flags warnings seen(count, 8 bytes each, ascending)
//	        seqs(count, first, deltas > 0) seenContent(count, 8 bytes each, ascending)
//	        provider providerStatus
//	record: 0x05 seq applicantId appKey externalUserId sealedExt extIndex type origin
//	        eventAt eventAtSource receivedAt outcome from to stepName warnings digest[32]
//	        cid timeFlag provider providerStatus
//	change: 0x03 seq applicantId appKey externalUserId sealedExt from to at provider
//
// A record's cid is one byte of kind and then the id: 0 none; 1 the 32 bytes of a
// canonical id (64 lower-case hex digits), half the size of its text, since every
// webhook's record carries one; 2 any other text, length-prefixed.
//
// Files of schema version 1 may also hold older formats, which are still read. Format 1
// of states and records (before origins, reconciliation and erasure) lacks reconciledAt,
// erased and origin; it is read as "never reconciled, not erased, a webhook", so a
// projection written by an older build keeps serving until rebuilt.
// Format 2 of states and records, and 1 of changes, lack the sealed externalUserId and
// its blind index (stored version 2 events, DESIGN.md section 11); they are read as
// holding the id in clear, as the events they were folded from did.
// Format 3 of states and records lacks content ids and the time flag (DESIGN.md section
// 15); they are read as having none, as the events they were folded from had.
// Format 4 of states and records, and 2 of changes, lack the provider and its status
// (DESIGN.md section 13): every applicant then was Allpass's, and Allpass states none.
//
// Decoders check every length against the bytes left, so a scribbled value gives an
// error, never a panic or a huge allocation.
const (
	stateFormat  = 5
	recordFormat = 5
	changeFormat = 3

	stateFormatV1  = 1
	recordFormatV1 = 1
	changeFormatV1 = 1
)

// errCorruptValue marks a value that does not decode: the file was damaged or written by
// something else.
var errCorruptValue = errors.New("value does not decode")

// stateRec is what the states bucket holds per applicant: its folded state and the stream
// sequences of its history, so history is found through the state rather than through a
// second index kept by random inserts.
type stateRec struct {
	domain.State
	Seqs []uint64
}

// digestOffset is where the digest sits in an encoded state, so Digests can read it
// without decoding the rest.
const digestOffset = 1

func appendState(b []byte, r *stateRec) []byte {
	b = append(b, stateFormat)
	b = append(b, r.Digest[:]...)
	b = binary.AppendUvarint(b, r.LastSeq)
	b = binary.AppendUvarint(b, uint64(r.Events))
	b = binary.AppendUvarint(b, uint64(r.Anomalies))
	b = appendString(b, string(r.ApplicantID))
	b = appendString(b, string(r.AppKey))
	b = appendString(b, string(r.ExternalUserID))
	b = appendString(b, string(r.SealedExternalUserID))
	b = appendString(b, string(r.ExternalUserIndex))
	b = appendString(b, string(r.Status))
	b = appendTime(b, r.StatusAt)
	b = appendTime(b, r.LastEventAt)
	b = appendTime(b, r.ReconciledAt)
	b = appendBool(b, r.Erased)
	b = appendStrings(b, r.StepsPassed)
	b = appendStrings(b, r.Flags)
	b = appendStrings(b, r.Warnings)
	b = binary.AppendUvarint(b, uint64(len(r.Seen)))
	for _, fp := range r.Seen {
		b = binary.BigEndian.AppendUint64(b, fp)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Seqs)))
	var prev uint64
	for _, s := range r.Seqs {
		b = binary.AppendUvarint(b, s-prev)
		prev = s
	}
	b = binary.AppendUvarint(b, uint64(len(r.SeenContent)))
	for _, fp := range r.SeenContent {
		b = binary.BigEndian.AppendUint64(b, fp)
	}
	b = appendString(b, string(domain.ProviderOf(string(r.Provider))))
	return appendString(b, r.ProviderStatus)
}

func decodeState(b []byte) (stateRec, error) {
	var r stateRec
	d := decoder{b: b}
	v := d.byte()
	if v < stateFormatV1 || v > stateFormat {
		return r, d.failf("state format %d", v)
	}
	copy(r.Digest[:], d.bytes(len(r.Digest)))
	r.LastSeq = d.uvarint()
	r.Events = d.count()
	r.Anomalies = d.count()
	r.ApplicantID = domain.ApplicantID(d.string())
	r.AppKey = domain.AppKey(d.string())
	r.ExternalUserID = domain.ExternalUserID(d.string())
	if v >= 3 {
		r.SealedExternalUserID = domain.SealedExternalUserID(d.string())
		r.ExternalUserIndex = domain.ExternalUserIndex(d.string())
	}
	r.Status = domain.Status(d.string())
	r.StatusAt = d.time()
	r.LastEventAt = d.time()
	if v >= 2 {
		r.ReconciledAt = d.time()
		r.Erased = d.bool()
	}
	r.StepsPassed = d.strings()
	r.Flags = d.strings()
	r.Warnings = d.strings()
	r.Seen = d.fingerprints()
	if n := d.countOf(1); n > 0 {
		r.Seqs = make([]uint64, n)
		var prev uint64
		for i := range r.Seqs {
			delta := d.uvarint()
			if delta == 0 || prev+delta < prev {
				return r, d.failf("seq list not ascending")
			}
			prev += delta
			r.Seqs[i] = prev
		}
	}
	if v >= 4 {
		r.SeenContent = d.fingerprints()
	}
	r.Provider = domain.ProviderAllpass
	if v >= 5 {
		r.Provider = domain.Provider(d.string())
		r.ProviderStatus = d.string()
	}
	if err := d.end(); err != nil {
		return r, err
	}
	switch {
	case !r.Provider.Valid():
		return r, d.failf("provider %q", r.Provider)
	case r.Status != domain.StatusNone && !r.Status.Valid():
		return r, d.failf("status %q", r.Status)
	case len(r.Seqs) != r.Events:
		return r, d.failf("%d seqs for %d events", len(r.Seqs), r.Events)
	case r.Events > 0 && r.Seqs[len(r.Seqs)-1] != r.LastSeq:
		return r, d.failf("last seq %d, seq list ends at %d", r.LastSeq, r.Seqs[len(r.Seqs)-1])
	case !slices.IsSorted(r.Seen), !slices.IsSorted(r.SeenContent):
		return r, d.failf("fingerprints not sorted")
	}
	return r, nil
}

// stateDigest reads the digest of an encoded state without decoding the rest.
func stateDigest(b []byte) (domain.Digest, error) {
	var dg domain.Digest
	if len(b) < digestOffset+len(dg) || b[0] < stateFormatV1 || b[0] > stateFormat {
		return dg, fmt.Errorf("%w: state too short or format %d", errCorruptValue, firstByte(b))
	}
	copy(dg[:], b[digestOffset:])
	return dg, nil
}

func appendRecord(b []byte, r *domain.Record) []byte {
	b = append(b, recordFormat)
	b = binary.AppendUvarint(b, r.Seq)
	b = appendString(b, string(r.ApplicantID))
	b = appendString(b, string(r.AppKey))
	b = appendString(b, string(r.ExternalUserID))
	b = appendString(b, string(r.SealedExternalUserID))
	b = appendString(b, string(r.ExternalUserIndex))
	b = appendString(b, string(r.Type))
	b = appendString(b, string(r.Origin))
	b = appendTime(b, r.EventAt)
	b = appendString(b, r.EventAtSource)
	b = appendTime(b, r.ReceivedAt)
	b = appendString(b, string(r.Outcome))
	b = appendString(b, string(r.From))
	b = appendString(b, string(r.To))
	b = appendString(b, r.StepName)
	b = appendStrings(b, r.Warnings)
	b = append(b, r.Digest[:]...)
	b = appendContentID(b, r.ContentID)
	b = appendString(b, string(r.TimeFlag))
	b = appendString(b, string(domain.ProviderOf(string(r.Provider))))
	return appendString(b, r.ProviderStatus)
}

func decodeRecord(b []byte) (domain.Record, error) {
	var r domain.Record
	d := decoder{b: b}
	v := d.byte()
	if v < recordFormatV1 || v > recordFormat {
		return r, d.failf("record format %d", v)
	}
	r.Seq = d.uvarint()
	r.ApplicantID = domain.ApplicantID(d.string())
	r.AppKey = domain.AppKey(d.string())
	r.ExternalUserID = domain.ExternalUserID(d.string())
	if v >= 3 {
		r.SealedExternalUserID = domain.SealedExternalUserID(d.string())
		r.ExternalUserIndex = domain.ExternalUserIndex(d.string())
	}
	r.Type = domain.EventType(d.string())
	r.Origin = domain.OriginWebhook
	if v >= 2 {
		r.Origin = domain.Origin(d.string())
	}
	r.EventAt = d.time()
	r.EventAtSource = d.string()
	r.ReceivedAt = d.time()
	r.Outcome = domain.Outcome(d.string())
	r.From = domain.Status(d.string())
	r.To = domain.Status(d.string())
	r.StepName = d.string()
	r.Warnings = d.strings()
	copy(r.Digest[:], d.bytes(len(r.Digest)))
	if v >= 4 {
		r.ContentID = d.contentID()
		r.TimeFlag = domain.TimeFlag(d.string())
	}
	r.Provider = domain.ProviderAllpass
	if v >= 5 {
		r.Provider = domain.Provider(d.string())
		r.ProviderStatus = d.string()
	}
	if err := d.end(); err != nil {
		return r, err
	}
	switch {
	case !r.Provider.Valid():
		return r, d.failf("provider %q", r.Provider)
	case !r.Outcome.Valid():
		return r, d.failf("outcome %q", r.Outcome)
	case r.From != domain.StatusNone && !r.From.Valid(), r.To != domain.StatusNone && !r.To.Valid():
		return r, d.failf("status %q -> %q", r.From, r.To)
	}
	return r, nil
}

func appendChange(b []byte, c *domain.Change) []byte {
	b = append(b, changeFormat)
	b = binary.AppendUvarint(b, c.Seq)
	b = appendString(b, string(c.ApplicantID))
	b = appendString(b, string(c.AppKey))
	b = appendString(b, string(c.ExternalUserID))
	b = appendString(b, string(c.SealedExternalUserID))
	b = appendString(b, string(c.From))
	b = appendString(b, string(c.To))
	b = appendTime(b, c.At)
	return appendString(b, string(domain.ProviderOf(string(c.Provider))))
}

func decodeChange(b []byte) (domain.Change, error) {
	var c domain.Change
	d := decoder{b: b}
	v := d.byte()
	if v < changeFormatV1 || v > changeFormat {
		return c, d.failf("change format %d", v)
	}
	c.Seq = d.uvarint()
	c.ApplicantID = domain.ApplicantID(d.string())
	c.AppKey = domain.AppKey(d.string())
	c.ExternalUserID = domain.ExternalUserID(d.string())
	if v >= 2 {
		c.SealedExternalUserID = domain.SealedExternalUserID(d.string())
	}
	c.From = domain.Status(d.string())
	c.To = domain.Status(d.string())
	c.At = d.time()
	c.Provider = domain.ProviderAllpass
	if v >= 3 {
		c.Provider = domain.Provider(d.string())
	}
	if err := d.end(); err != nil {
		return c, err
	}
	if !c.Provider.Valid() {
		return c, d.failf("provider %q", c.Provider)
	}
	if (c.From != domain.StatusNone && !c.From.Valid()) || !c.To.Valid() {
		return c, d.failf("status %q -> %q", c.From, c.To)
	}
	return c, nil
}

// Kinds of an encoded content id (see the layouts above).
const (
	cidNone      = 0
	cidCanonical = 1
	cidText      = 2
)

func appendContentID(b []byte, c domain.ContentID) []byte {
	switch {
	case c == "":
		return append(b, cidNone)
	case isCanonicalID(string(c)):
		b, _ = hex.AppendDecode(append(b, cidCanonical), []byte(c)) // canonical: it decodes
		return b
	}
	return appendString(append(b, cidText), string(c))
}

// isCanonicalID reports whether s is 64 lower-case hex digits: what hex.EncodeToString
// makes of a SHA-256, and so what decoding its 32 bytes gives back.
func isCanonicalID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// appendTime keeps the instant only: the fold compares instants and the API answers in
// UTC, so the zone an event's time was written in does not need to survive.
func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// decoder reads a value front to back; the first problem sticks and every later read
// returns a zero value, so decode functions check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) failf(format string, args ...any) error {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{errCorruptValue}, args...)...)
	}
	d.b = nil
	return d.err
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) > 0 {
		d.failf("%d trailing bytes", len(d.b))
	}
	return d.err
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.failf("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// fingerprints reads a list of 8-byte fingerprints; none comes back nil, as the fold
// leaves an empty set.
func (d *decoder) fingerprints() []uint64 {
	n := d.countOf(8)
	if n == 0 {
		return nil
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = binary.BigEndian.Uint64(d.bytes(8))
	}
	return out
}

func (d *decoder) contentID() domain.ContentID {
	switch d.byte() {
	case cidNone:
		return ""
	case cidCanonical:
		return domain.ContentID(hex.EncodeToString(d.bytes(32)))
	case cidText:
		if s := d.string(); s != "" && !isCanonicalID(s) {
			return domain.ContentID(s)
		}
	}
	d.failf("content id kind")
	return ""
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.failf("bool out of range")
	return false
}

func (d *decoder) bytes(n int) []byte {
	if len(d.b) < n {
		d.failf("truncated")
		return make([]byte, n)
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.failf("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.failf("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a non-negative int that must fit an int32 (event and anomaly counters).
func (d *decoder) count() int {
	v := d.uvarint()
	if v > 1<<31-1 {
		d.failf("count %d", v)
		return 0
	}
	return int(v)
}

// countOf reads an element count and checks that many elements of at least size bytes
// each can still follow, which bounds every allocation by the value's length.
func (d *decoder) countOf(size int) int {
	v := d.uvarint()
	if v > uint64(len(d.b)/size) {
		d.failf("count %d with %d bytes left", v, len(d.b))
		return 0
	}
	return int(v)
}

func (d *decoder) string() string {
	n := d.countOf(1)
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// strings decodes a list; empty lists come back as empty, non-nil slices, as the fold
// produces them (the API shows them as []).
func (d *decoder) strings() []string {
	n := d.countOf(1)
	out := make([]string, n)
	for i := range out {
		out[i] = d.string()
	}
	return out
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	ns := d.uvarint()
	if ns >= 1e9 {
		d.failf("nanoseconds %d", ns)
		return time.Time{}
	}
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(ns)).UTC()
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// Keys.

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func appendSeqKey(b []byte, seq uint64) []byte { return binary.BigEndian.AppendUint64(b, seq) }

func keySeq(k []byte) (uint64, bool) {
	if len(k) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

// maxIndexedExt bounds the externalUserIds the index holds. bbolt refuses keys over
// 32 KiB, and one event with an absurd externalUserId must not stop the projection: such
// an id is kept in the state and history but cannot be looked up.
const maxIndexedExt = 1024

// indexKey builds "<prefix> 0x00 <applicant key>" for the externalUserId, status and id
// indexes. A key (an Allpass UUID, or provider.app.id of subject tokens) holds no 0x00,
// so the key is everything after the last 0x00 even when an externalUserId contains one.
func indexKey(prefix string, id domain.ApplicantKey) []byte {
	b := make([]byte, 0, len(prefix)+1+len(id))
	b = append(b, prefix...)
	b = append(b, 0)
	return append(b, id...)
}

// indexID returns the applicant key of an index key under prefix (which includes its
// trailing 0x00), or false when the key belongs to a longer prefix value.
func indexID(k, prefix []byte) (domain.ApplicantKey, bool) {
	if len(k) <= len(prefix) {
		return "", false
	}
	rest := k[len(prefix):]
	if slices.Contains(rest, 0) {
		return "", false
	}
	return domain.ApplicantKey(rest), true
}
