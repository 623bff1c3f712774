package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/domain"
)

// Every provider's applicant has a subject of its own, kyc.events.<provider>.<app>.<id>
// (DESIGN.md section 13), built only from tokens that cannot add a level or a wildcard.
func TestProviderSubject(t *testing.T) {
	got, err := ProviderSubject(domain.ProviderSumsub, "ss", "5cb56e8e0a975a35f333cb83")
	if err != nil || got != "kyc.events.sumsub.ss.5cb56e8e0a975a35f333cb83" {
		t.Fatalf("ProviderSubject = %q, %v", got, err)
	}
	if got, err := ProviderSubject(domain.ProviderPersona, "pa", "inq_Ab-9"); err != nil || got != "kyc.events.persona.pa.inq_Ab-9" {
		t.Fatalf("ProviderSubject = %q, %v", got, err)
	}
	// Allpass keeps its UUID rules.
	if _, err := ProviderSubject(domain.ProviderAllpass, "ss", "abc"); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("Allpass with non-UUID ids: %v", err)
	}
	for _, c := range []struct{ p, app, id string }{
		{"nobody", "a", "b"}, {"", "a", "b"}, {"sumsub", "", "b"}, {"sumsub", "a", ""},
		{"sumsub", "a.b", "c"}, {"sumsub", "a", "b.c"}, {"sumsub", "*", "c"}, {"sumsub", "a", ">"},
		{"sumsub", "a b", "c"}, {"sumsub", "a", strings.Repeat("x", 65)}, {"veriff", "a", "é"},
		{"onfido", "a\n", "b"}, {"sumsub.x", "a", "b"},
	} {
		if s, err := ProviderSubject(domain.Provider(c.p), domain.AppKey(c.app), domain.ApplicantID(c.id)); domain.KindOf(err) != domain.KindInvalid {
			t.Errorf("ProviderSubject(%q, %q, %q) = %q, %v; want KindInvalid", c.p, c.app, c.id, s, err)
		}
	}
}

func FuzzProviderSubject(f *testing.F) {
	f.Add("sumsub", "ss", "abc")
	f.Add("allpass", "71f2c0c6-c720-423b-8df0-7763102ad57e", "0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a65")
	f.Add("veriff", "a.b", "*")
	f.Fuzz(func(t *testing.T, p, app, id string) {
		s, err := ProviderSubject(domain.Provider(p), domain.AppKey(app), domain.ApplicantID(id))
		if err != nil {
			return
		}
		tokens := strings.Split(s, ".")
		if len(tokens) != 5 || tokens[2] != p || tokens[3] != app || tokens[4] != id {
			t.Fatalf("ProviderSubject(%q, %q, %q) = %q", p, app, id, s)
		}
		if strings.ContainsAny(s, "*> \x00\t\r\n") {
			t.Fatalf("ProviderSubject(%q, %q, %q) = %q holds a forbidden character", p, app, id, s)
		}
	})
}

// providerEvent is a Sumsub event of applicant id, as ingest/sumsub opens one.
func providerEvent(p domain.Provider, app, id string, n int) *domain.Event {
	ev := logEvent(logApp(0), logApplicant(0), "applicantReviewed", n)
	ev.Provider, ev.AppKey, ev.ApplicantID, ev.ProviderStatus = string(p), domain.AppKey(app), domain.ApplicantID(id), "RED+RETRY"
	ev.ContentID = domain.NewContentID(string(p), app, []byte(fmt.Sprint(n)))
	return ev
}

// providerStatus is stored after the type, and both decoders read it back; an Allpass
// event has none and is stored byte for byte as before.
func TestStoredEventProviderStatus(t *testing.T) {
	ev := encTestEvent(`{}`)
	before, err := appendStoredEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(before, []byte("providerStatus")) {
		t.Fatalf("an event without a provider status stores one: %s", before)
	}
	ev.Provider, ev.ProviderStatus = "sumsub", "RED+FINAL"
	data, err := appendStoredEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"type":"applicantStepPassed","providerStatus":"RED+FINAL","stepName"`; !bytes.Contains(data, []byte(want)) {
		t.Fatalf("stored %s\nwant it to hold %s", data, want)
	}
	var fast, slow domain.Event
	if !fastDecodeEvent(data, &fast, false) {
		t.Fatalf("fast path refused %s", data)
	}
	if err := json.Unmarshal(data, &slow); err != nil {
		t.Fatal(err)
	}
	for _, got := range []domain.Event{fast, slow} {
		if got.ProviderStatus != "RED+FINAL" || got.Provider != "sumsub" {
			t.Fatalf("decoded provider %q providerStatus %q", got.Provider, got.ProviderStatus)
		}
	}
	// Twice is not the canonical form: the fast path leaves it to encoding/json.
	twice := bytes.Replace(data, []byte(`,"stepName"`), []byte(`,"providerStatus":"x","stepName"`), 1)
	if fastDecodeEvent(twice, new(domain.Event), false) {
		t.Fatal("fast path read a repeated providerStatus")
	}
}

// Events of two providers that share an applicant id are stored on their own subjects,
// sealed under their own data keys, and read back per applicant.
func TestAppendProviders(t *testing.T) {
	l := keyedLog(t, natsStart(t, NATSConfig{}), testMasterA)
	ctx := context.Background()
	const id = "0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a65" // Veriff's session ids are UUIDs too
	veriff := providerEvent(domain.ProviderVeriff, "ve", id, 1)
	sumsub := providerEvent(domain.ProviderSumsub, "ss", id, 2)
	allpass := logEvent(logApp(0), id, domain.EventCreated, 3)
	for _, ev := range []*domain.Event{veriff, sumsub, allpass} {
		logAppend(t, l, ev)
	}
	for _, c := range []struct {
		p    domain.Provider
		app  domain.AppKey
		want *domain.Event
	}{{domain.ProviderVeriff, "ve", veriff}, {domain.ProviderSumsub, "ss", sumsub}, {domain.ProviderAllpass, logApp(0), allpass}} {
		evs, err := l.ProviderApplicant(ctx, c.p, c.app, id)
		if err != nil || len(evs) != 1 || evs[0].Seq != c.want.Seq || evs[0].ProviderStatus != c.want.ProviderStatus {
			t.Fatalf("%s: %d events, %v", c.p, len(evs), err)
		}
		m, err := l.events.GetMsg(ctx, c.want.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := ProviderSubject(c.p, c.app, id); m.Subject != want {
			t.Errorf("%s stored on %q, want %q", c.p, m.Subject, want)
		}
		full := evs[0]
		if err := l.Keys().Open(ctx, &full); err != nil || full.ExternalUserID != c.want.ExternalUserID {
			t.Fatalf("%s: opened %q, %v", c.p, full.ExternalUserID, err)
		}
		ext, err := l.Keys().OpenProviderExternalUserID(ctx, c.p, c.app, id, evs[0].SealedExternalUserID)
		if err != nil || ext != c.want.ExternalUserID {
			t.Fatalf("%s: OpenProviderExternalUserID = %q, %v", c.p, ext, err)
		}
	}
	// Each applicant has a key of its own: one's sealed id does not open as another's.
	evs, _ := l.ProviderApplicant(ctx, domain.ProviderVeriff, "ve", id)
	if _, err := l.Keys().OpenProviderExternalUserID(ctx, domain.ProviderSumsub, "ss", id, evs[0].SealedExternalUserID); err == nil {
		t.Fatal("Veriff's sealed id opens under Sumsub's applicant's key")
	}
	// An event of a provider kycstate does not know is refused before anything is made.
	bad := providerEvent("nobody", "x", "y", 4)
	if _, _, err := l.Append(ctx, bad, "m4"); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("unknown provider: %v", err)
	}
}
