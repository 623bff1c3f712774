package projection

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

var updateCodecGolden = flag.Bool("update-codec", false, "write testdata/projection/codec_schema<SchemaVersion>.golden if it does not exist yet")

func TestCodecRoundTrip(t *testing.T) {
	events := genLog(20, 50, 1500)
	exp := foldLog(events)
	for _, r := range exp.records {
		got, err := decodeRecord(appendRecord(nil, &r))
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("record %d: round trip gave %+v, %v", r.Seq, got, err)
		}
		if r.StatusChanged() {
			c := domain.Change{Seq: r.Seq, ApplicantID: r.ApplicantID, AppKey: r.AppKey, Provider: r.Provider, ExternalUserID: r.ExternalUserID,
				From: r.From, To: r.To, At: r.EventAt}
			got, err := decodeChange(appendChange(nil, &c))
			if err != nil || !reflect.DeepEqual(got, c) {
				t.Fatalf("change %d: round trip gave %+v, %v", c.Seq, got, err)
			}
		}
	}
	for id, st := range exp.states {
		rec := stateRec{State: st}
		for _, r := range exp.history[id] {
			rec.Seqs = append(rec.Seqs, r.Seq)
		}
		b := appendState(nil, &rec)
		got, err := decodeState(b)
		if err != nil || !reflect.DeepEqual(got, rec) {
			t.Fatalf("state %s: round trip gave %+v, %v", id, got, err)
		}
		if d, err := stateDigest(b); err != nil || d != st.Digest {
			t.Fatalf("stateDigest(%s) = %v, %v", id, d, err)
		}
	}
}

// Times keep their instant; the zone they were written in is not kept (reads are UTC).
func TestCodecTimesAreInstants(t *testing.T) {
	zone := time.FixedZone("", 2*3600)
	at := time.Date(2025, 6, 1, 12, 0, 0, 123456789, zone)
	r := domain.Record{Seq: 1, ApplicantID: "a", Outcome: domain.OutcomeUnknown, EventAt: at, Warnings: []string{}}
	got, err := decodeRecord(appendRecord(nil, &r))
	if err != nil {
		t.Fatal(err)
	}
	if !got.EventAt.Equal(at) || got.EventAt.Location() != time.UTC {
		t.Fatalf("EventAt = %v, want %v in UTC", got.EventAt, at)
	}
	if got := mustDecodeRecord(t, appendRecord(nil, &domain.Record{Outcome: domain.OutcomeUnknown})); !got.EventAt.IsZero() || got.EventAt != (time.Time{}) {
		t.Fatalf("zero time came back as %v", got.EventAt)
	}
}

func mustDecodeRecord(t *testing.T, b []byte) domain.Record {
	t.Helper()
	r, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// goldenValues are fixed values whose encodings testdata/projection/codec_schema<N>.golden
// holds for schema version N. A change to the layout changes them: that must come with a
// new SchemaVersion.
func goldenValues() (stateRec, domain.Record, domain.Change) {
	at := time.Date(2025, 3, 1, 8, 0, 0, 500, time.UTC)
	var dg domain.Digest
	for i := range dg {
		dg[i] = byte(i)
	}
	st := stateRec{State: domain.State{ApplicantID: "0d4c1c8e-6f7e-4e43-9a42-3f2a1f9f0c11",
		AppKey: "71f2c0c6-c720-423b-8df0-7763102ad57e", SealedExternalUserID: "c2VhbGVk", ExternalUserIndex: "00ff", Status: domain.StatusApproved,
		StatusAt: at, LastEventAt: at.Add(time.Minute), LastSeq: 300, Events: 3,
		StepsPassed: []string{"IDENTITY"}, Flags: []string{"expiredDocument"}, Warnings: []string{"GLARE"},
		Anomalies: 1, Digest: dg, Seen: []uint64{7, 1 << 40}, ReconciledAt: at, Erased: true,
		SeenContent: []uint64{3, 1 << 63}, Provider: domain.ProviderVeriff, ProviderStatus: "approved"}, Seqs: []uint64{1, 200, 300}}
	rec := domain.Record{Seq: 300, ApplicantID: st.ApplicantID, AppKey: st.AppKey, SealedExternalUserID: "c2VhbGVk", ExternalUserIndex: "00ff",
		Type: domain.EventApproved, Origin: domain.OriginWebhook, EventAt: at, EventAtSource: domain.SourcePayloadUpdatedAt,
		ReceivedAt: at.Add(time.Second), Outcome: domain.OutcomeIrregular, From: domain.StatusInit,
		To: domain.StatusApproved, StepName: "", Warnings: []string{"GLARE"}, Digest: dg,
		ContentID: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", TimeFlag: domain.TimeFlagClockSkew,
		Provider: domain.ProviderVeriff, ProviderStatus: "approved"}
	ch := domain.Change{Seq: 300, ApplicantID: st.ApplicantID, AppKey: st.AppKey, Provider: domain.ProviderVeriff, SealedExternalUserID: "c2VhbGVk",
		From: domain.StatusInit, To: domain.StatusApproved, At: at}
	return st, rec, ch
}

// The encodings are those of the golden file named for SchemaVersion. -update-codec writes
// that file only when it does not exist: a version's golden is what every file of that
// version holds, so other bytes need another version.
func TestCodecGolden(t *testing.T) {
	st, rec, ch := goldenValues()
	got := "state  " + hex.EncodeToString(appendState(nil, &st)) + "\n" +
		"record " + hex.EncodeToString(appendRecord(nil, &rec)) + "\n" +
		"change " + hex.EncodeToString(appendChange(nil, &ch)) + "\n"
	path := filepath.Join("testdata", "projection", fmt.Sprintf("codec_schema%d.golden", SchemaVersion))
	if _, err := os.Stat(path); *updateCodecGolden && errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-codec to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("encodings changed at schema version %d:\n got %s\nwant %s\nA layout change needs a new format byte for the value (and a decoder that still reads the old one) and a new SchemaVersion, whose golden -update-codec then writes.",
			SchemaVersion, got, want)
	}
}

// Values written in format 1, before origins, reconciliation and erasure, still decode:
// as a webhook's record and a state never reconciled and not erased.
func TestCodecReadsFormat1(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "projection", "codec_v1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	enc := map[string][]byte{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		name, h, _ := strings.Cut(line, " ")
		v, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil {
			t.Fatal(err)
		}
		enc[name] = v
	}
	st, rec, _ := goldenValues()
	st.ReconciledAt, st.Erased = time.Time{}, false
	clearExt(&st.State, &rec, nil)
	gotSt, err := decodeState(enc["state"])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotSt, st) {
		t.Errorf("format 1 state:\n got %+v\nwant %+v", gotSt, st)
	}
	gotRec, err := decodeRecord(enc["record"])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotRec, rec) {
		t.Errorf("format 1 record:\n got %+v\nwant %+v", gotRec, rec)
	}
	if dg, err := stateDigest(enc["state"]); err != nil || dg != st.Digest {
		t.Errorf("stateDigest(format 1) = %v, %v", dg, err)
	}
}

// clearExt turns golden values into what formats before 3 held: the id in clear, and no
// content ids (noContentIDs).
func clearExt(st *domain.State, rec *domain.Record, ch *domain.Change) {
	noContentIDs(st, rec)
	noProvider(st, rec, ch)
	st.ExternalUserID, st.SealedExternalUserID, st.ExternalUserIndex = "user-42", "", ""
	rec.ExternalUserID, rec.SealedExternalUserID, rec.ExternalUserIndex = "user-42", "", ""
	if ch != nil {
		ch.ExternalUserID, ch.SealedExternalUserID = "user-42", ""
	}
}

// noContentIDs turns golden values into what formats before 4 held: no content ids and
// no time flag.
func noContentIDs(st *domain.State, rec *domain.Record) {
	st.SeenContent = nil
	rec.ContentID, rec.TimeFlag = "", ""
}

// noProvider turns golden values into what formats before 5 (states, records) and 3
// (changes) held: no provider, read as Allpass, and no provider status.
func noProvider(st *domain.State, rec *domain.Record, ch *domain.Change) {
	st.Provider, st.ProviderStatus = domain.ProviderAllpass, ""
	rec.Provider, rec.ProviderStatus = domain.ProviderAllpass, ""
	if ch != nil {
		ch.Provider = domain.ProviderAllpass
	}
}

// Values of schema version 3 (states and records in format 4, changes in 2), before
// providers, still decode, as Allpass's.
func TestCodecReadsFormat4(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "projection", "codec_schema3.golden"))
	if err != nil {
		t.Fatal(err)
	}
	enc := map[string][]byte{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		name, h, _ := strings.Cut(line, " ")
		v, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil {
			t.Fatal(err)
		}
		enc[name] = v
	}
	st, rec, ch := goldenValues()
	noProvider(&st.State, &rec, &ch)
	if got, err := decodeState(enc["state"]); err != nil || !reflect.DeepEqual(got, st) {
		t.Errorf("format 4 state:\n got %+v (%v)\nwant %+v", got, err, st)
	}
	if got, err := decodeRecord(enc["record"]); err != nil || !reflect.DeepEqual(got, rec) {
		t.Errorf("format 4 record:\n got %+v (%v)\nwant %+v", got, err, rec)
	}
	if got, err := decodeChange(enc["change"]); err != nil || !reflect.DeepEqual(got, ch) {
		t.Errorf("format 2 change:\n got %+v (%v)\nwant %+v", got, err, ch)
	}
}

// Values of schema version 2 (states and records in format 3), before content ids, still
// decode, as holding none.
func TestCodecReadsFormat3(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "projection", "codec_schema2.golden"))
	if err != nil {
		t.Fatal(err)
	}
	enc := map[string][]byte{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		name, h, _ := strings.Cut(line, " ")
		v, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil {
			t.Fatal(err)
		}
		enc[name] = v
	}
	st, rec, ch := goldenValues()
	noContentIDs(&st.State, &rec)
	noProvider(&st.State, &rec, &ch)
	if got, err := decodeState(enc["state"]); err != nil || !reflect.DeepEqual(got, st) {
		t.Errorf("format 3 state:\n got %+v (%v)\nwant %+v", got, err, st)
	}
	if got, err := decodeRecord(enc["record"]); err != nil || !reflect.DeepEqual(got, rec) {
		t.Errorf("format 3 record:\n got %+v (%v)\nwant %+v", got, err, rec)
	}
	if got, err := decodeChange(enc["change"]); err != nil || !reflect.DeepEqual(got, ch) {
		t.Errorf("format 2 change:\n got %+v (%v)\nwant %+v", got, err, ch)
	}
}

// A record's content id takes 33 bytes when canonical and comes back as it went in,
// whatever its form; an encoding that would not come back the same is refused.
func TestCodecContentID(t *testing.T) {
	_, rec, _ := goldenValues()
	for _, c := range []domain.ContentID{"", rec.ContentID, "C0FFEE", "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", "x"} {
		rec.ContentID = c
		b := appendRecord(nil, &rec)
		if got := mustDecodeRecord(t, b); got.ContentID != c {
			t.Errorf("content id %q came back as %q", c, got.ContentID)
		}
	}
	canonical := appendContentID(nil, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	if len(canonical) != 33 || canonical[0] != cidCanonical {
		t.Errorf("a canonical content id took %d bytes, kind %d", len(canonical), canonical[0])
	}
	// A canonical id written as text would decode to a value that encodes otherwise.
	d := decoder{b: appendString([]byte{cidText}, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")}
	if d.contentID(); !errors.Is(d.err, errCorruptValue) {
		t.Errorf("a canonical id as text: %v", d.err)
	}
	for _, bad := range [][]byte{{3}, {cidText, 0}} {
		d := decoder{b: bad}
		if d.contentID(); !errors.Is(d.err, errCorruptValue) {
			t.Errorf("content id % x: %v", bad, d.err)
		}
	}
}

// Values written in format 2 (states, records) and 1 (changes), before sealed ids, still
// decode, with the id in clear.
func TestCodecReadsFormat2(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "projection", "codec_v2.golden"))
	if err != nil {
		t.Fatal(err)
	}
	enc := map[string][]byte{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		name, h, _ := strings.Cut(line, " ")
		v, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil {
			t.Fatal(err)
		}
		enc[name] = v
	}
	st, rec, ch := goldenValues()
	clearExt(&st.State, &rec, &ch)
	if got, err := decodeState(enc["state"]); err != nil || !reflect.DeepEqual(got, st) {
		t.Errorf("format 2 state:\n got %+v (%v)\nwant %+v", got, err, st)
	}
	if got, err := decodeRecord(enc["record"]); err != nil || !reflect.DeepEqual(got, rec) {
		t.Errorf("format 2 record:\n got %+v (%v)\nwant %+v", got, err, rec)
	}
	if got, err := decodeChange(enc["change"]); err != nil || !reflect.DeepEqual(got, ch) {
		t.Errorf("format 1 change:\n got %+v (%v)\nwant %+v", got, err, ch)
	}
}

// Every damaged value gives errCorruptValue, never a panic: truncated at every length,
// one byte too many, a wrong format byte, a byte flipped anywhere.
func TestDecodeRejectsDamage(t *testing.T) {
	st, rec, ch := goldenValues()
	values := map[string][]byte{
		"state":  appendState(nil, &st),
		"record": appendRecord(nil, &rec),
		"change": appendChange(nil, &ch),
	}
	decode := map[string]func([]byte) error{
		"state":  func(b []byte) error { _, err := decodeState(b); return err },
		"record": func(b []byte) error { _, err := decodeRecord(b); return err },
		"change": func(b []byte) error { _, err := decodeChange(b); return err },
	}
	for name, b := range values {
		dec := decode[name]
		if err := dec(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for n := range len(b) {
			if err := dec(b[:n]); !errors.Is(err, errCorruptValue) {
				t.Fatalf("%s truncated to %d bytes: %v", name, n, err)
			}
		}
		if err := dec(append(bytes.Clone(b), 0)); !errors.Is(err, errCorruptValue) || !strings.Contains(err.Error(), "trailing") {
			t.Fatalf("%s with a trailing byte: %v", name, err)
		}
		bad := bytes.Clone(b)
		bad[0] = 9
		if err := dec(bad); !errors.Is(err, errCorruptValue) {
			t.Fatalf("%s with format 9: %v", name, err)
		}
		for i := range b {
			flipped := bytes.Clone(b)
			flipped[i] ^= 0xa5
			_ = dec(flipped) // may decode (a flipped digest byte is undetectable); must not panic
		}
	}
	if _, err := stateDigest([]byte{stateFormat, 1, 2}); !errors.Is(err, errCorruptValue) {
		t.Fatalf("stateDigest of a short value: %v", err)
	}
	// Inconsistent but well-formed states are refused too.
	broken := st
	broken.Seqs = []uint64{1, 200}
	if _, err := decodeState(appendState(nil, &broken)); !errors.Is(err, errCorruptValue) {
		t.Fatalf("state with 2 seqs for 3 events: %v", err)
	}
	broken = st
	broken.Status = "SLEEPING"
	if _, err := decodeState(appendState(nil, &broken)); !errors.Is(err, errCorruptValue) {
		t.Fatalf("state with an unknown status: %v", err)
	}
}

func TestIndexKeys(t *testing.T) {
	id := domain.ApplicantKey("0d4c1c8e-6f7e-4e43-9a42-3f2a1f9f0c11")
	for _, ext := range []string{"user-1", "a\x00b", "\x00", "x"} {
		k := indexKey(ext, id)
		got, ok := indexID(k, indexKey(ext, ""))
		if !ok || got != id {
			t.Fatalf("indexID(indexKey(%q)) = %q, %v", ext, got, ok)
		}
	}
	// A key of a longer value sharing the prefix is not the shorter value's.
	if _, ok := indexID(indexKey("a\x00b", id), indexKey("a", "")); ok {
		t.Fatal(`key of "a\x00b" read as a key of "a"`)
	}
}

func FuzzDecodeState(f *testing.F) {
	st, _, _ := goldenValues()
	f.Add(appendState(nil, &st))
	f.Add([]byte{stateFormat})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeState(b)
		if err != nil {
			if !errors.Is(err, errCorruptValue) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		again, err := decodeState(appendState(nil, &r))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoding a decoded state: %v\n%+v\n%+v", err, again, r)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	_, rec, _ := goldenValues()
	f.Add(appendRecord(nil, &rec))
	f.Add([]byte{recordFormat, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, errCorruptValue) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		again, err := decodeRecord(appendRecord(nil, &r))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoding a decoded record: %v\n%+v\n%+v", err, again, r)
		}
	})
}

func FuzzDecodeChange(f *testing.F) {
	_, _, ch := goldenValues()
	f.Add(appendChange(nil, &ch))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeChange(b)
		if err != nil {
			if !errors.Is(err, errCorruptValue) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		again, err := decodeChange(appendChange(nil, &c))
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-encoding a decoded change: %v\n%+v\n%+v", err, again, c)
		}
	})
}
