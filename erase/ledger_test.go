package erase

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"
)

func masterKeys(t *testing.T) *eventlog.MasterKeys {
	t.Helper()
	m, err := eventlog.ParseMasterKey(master)
	if err != nil {
		t.Fatal(err)
	}
	return &eventlog.MasterKeys{Current: m}
}

// The ledger lists each erasure in the log with its sequence and time, and nothing that
// names a person: no externalUserId, no reason, no who.
func TestLedgerHoldsErasuresAndNothingPersonal(t *testing.T) {
	ctx := context.Background()
	events := keyedLog(t)
	for n := range 3 {
		webhook(t, events, applicant(n), domain.EventCreated, n, base)
	}
	er, err := New(Config{Events: events, Keys: events.Keys(), Rejects: events, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	seq, _, err := er.Erase(ctx, app, applicant(1), "officer-jane", "ticket 4711 from Jane Secret")
	if err != nil {
		t.Fatal(err)
	}
	// An erasure begun and not yet appended is no erasure of the log yet.
	if _, err := events.Keys().BeginErasure(ctx, app, applicant(2), "x", "y"); err != nil {
		t.Fatal(err)
	}
	ledger, err := Ledger(ctx, events.Keys(), events)
	if err != nil {
		t.Fatal(err)
	}
	if len(ledger) != 1 || ledger[0].ApplicantID != applicant(1) || ledger[0].App != app || ledger[0].Seq != seq ||
		ledger[0].Provider != "allpass" || ledger[0].At.IsZero() {
		t.Fatalf("ledger = %+v, want applicant 1's erasure at seq %d", ledger, seq)
	}
	var buf bytes.Buffer
	if err := WriteLedger(&buf, ledger); err != nil {
		t.Fatal(err)
	}
	for _, personal := range []string{"secret-user", "Jane", "4711", "officer", "reason", "by"} {
		if strings.Contains(buf.String(), personal) {
			t.Errorf("ledger holds %q: %s", personal, buf.String())
		}
	}
	back, err := ReadLedger(&buf)
	if err != nil || len(back) != 1 || back[0] != ledger[0] {
		t.Fatalf("ReadLedger = %+v, %v; want %+v", back, err, ledger)
	}
}

func TestReadLedgerRefusesDamage(t *testing.T) {
	good := `{"provider":"allpass","app":"` + string(app) + `","applicantId":"` + string(applicant(1)) + `","at":"2020-01-01T00:00:00Z","seq":4}`
	for name, in := range map[string]string{
		"not json":      good + "\n{",
		"unknown field": strings.Replace(good, `"seq"`, `"reason":"x","seq"`, 1),
		"bad id":        strings.Replace(good, string(applicant(1)), "Jane", 1),
		"two on a line": good + good,
	} {
		if _, err := ReadLedger(strings.NewReader(in)); domain.KindOf(err) != domain.KindInvalid || !strings.Contains(err.Error(), "line") {
			t.Errorf("%s: ReadLedger = %v, want KindInvalid naming the line", name, err)
		}
	}
	if got, err := ReadLedger(strings.NewReader("\n" + good + "\n\n")); err != nil || len(got) != 1 {
		t.Fatalf("blank lines: %v, %v", got, err)
	}
}

func FuzzReadLedger(f *testing.F) {
	f.Add(`{"provider":"allpass","app":"` + string(app) + `","applicantId":"` + string(applicant(1)) + `","at":"2020-01-01T00:00:00Z","seq":4}`)
	f.Add("{}\n{}")
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := ReadLedger(strings.NewReader(in))
		if err != nil {
			if domain.KindOf(err) != domain.KindInvalid {
				t.Fatalf("error of kind %v: %v", domain.KindOf(err), err)
			}
			return
		}
		var buf bytes.Buffer
		if err := WriteLedger(&buf, entries); err != nil {
			t.Fatal(err)
		}
		again, err := ReadLedger(&buf)
		if err != nil || len(again) != len(entries) {
			t.Fatalf("a ledger read back does not read again: %v", err)
		}
	})
}

// A backup older than an erasure, restored with the ledger, is erased again: the
// applicant's applicantErased is appended (by restore, the reason naming the ledger) and
// its key destroyed; an applicant the backup already shows erased is left as it is, and
// a second pass finds nothing to do.
func TestEraseAfterRestoreErasesWhatTheBackupMissed(t *testing.T) {
	ctx := context.Background()
	origin := jstest.Start(t)
	events := origin.EventLog(t, eventlog.Config{Keys: masterKeys(t)}, zaptest.NewLogger(t))
	for n := range 4 {
		webhook(t, events, applicant(n), domain.EventCreated, n, base)
	}
	er, err := New(Config{Events: events, Keys: events.Keys(), Rejects: events, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := er.Erase(ctx, app, applicant(0), "admin", "before the backup"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, s := range []string{eventlog.EventStream, eventlog.KeyStream} {
		if _, err := eventlog.BackupStream(ctx, origin.Conn(t), s, filepath.Join(dir, s)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := er.Erase(ctx, app, applicant(2), "admin", "after the backup"); err != nil {
		t.Fatal(err)
	}
	ledger, err := Ledger(ctx, events.Keys(), events)
	if err != nil || len(ledger) != 2 {
		t.Fatalf("ledger = %+v, %v; want two erasures", ledger, err)
	}

	restored := jstest.Start(t)
	for _, s := range []string{eventlog.EventStream, eventlog.KeyStream} {
		if _, err := eventlog.RestoreStream(ctx, restored.Conn(t), s, filepath.Join(dir, s), "", nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	revents := restored.EventLog(t, eventlog.Config{Keys: masterKeys(t)}, zaptest.NewLogger(t))
	rer, err := New(Config{Events: revents, Keys: revents.Keys(), Rejects: revents, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := revents.Applicant(ctx, app, applicant(2))
	ev, _ := eventlog.DecodeEvent(evs[0].Seq, evs[0].Stored)
	if err := revents.Keys().Open(ctx, &ev); err != nil {
		t.Fatalf("the backup opens applicant 2 before the ledger is applied: %v", err)
	}
	rep, err := rer.EraseAfterRestore(ctx, revents.Keys(), revents, ledger, "ledger.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ledger != 1 || rep.Already != 1 || rep.Tombstone != 0 {
		t.Fatalf("report = %+v, want one erased again, one already erased", rep)
	}
	evs, _ = revents.Applicant(ctx, app, applicant(2))
	last := evs[len(evs)-1]
	if last.Type != domain.EventErased || last.Origin != domain.OriginOperator {
		t.Fatalf("applicant 2's last event after restore = %s/%s, want applicantErased", last.Type, last.Origin)
	}
	// The payload is sealed under the log key (DESIGN.md section 15): open it.
	opened, err := eventlog.DecodeEvent(last.Seq, last.Stored)
	if err != nil {
		t.Fatal(err)
	}
	if err := revents.Keys().Open(ctx, &opened); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(opened.Payload, []byte(`"by":"restore"`)) || !bytes.Contains(opened.Payload, []byte("ledger.jsonl")) {
		t.Fatalf("erasure payload = %s, want by restore naming the ledger", opened.Payload)
	}
	ev, _ = eventlog.DecodeEvent(evs[0].Seq, evs[0].Stored)
	if err := revents.Keys().Open(ctx, &ev); !errors.Is(err, eventlog.ErrErased) {
		t.Fatalf("applicant 2 opens after the ledger is applied: %v", err)
	}
	for _, n := range []int{1, 3} {
		evs, _ := revents.Applicant(ctx, app, applicant(n))
		ev, _ := eventlog.DecodeEvent(evs[0].Seq, evs[0].Stored)
		if err := revents.Keys().Open(ctx, &ev); err != nil {
			t.Fatalf("applicant %d no longer opens: %v", n, err)
		}
	}
	rep, err = rer.EraseAfterRestore(ctx, revents.Keys(), revents, ledger, "ledger.jsonl")
	if err != nil || rep.Ledger != 0 || rep.Already != 2 || rep.Tombstone != 0 {
		t.Fatalf("second pass = %+v, %v; want nothing left to do", rep, err)
	}
}

// An applicantErased that kycstate did not write (its MAC fails: published by anything
// else that reaches NATS) erases nothing: an erasure begun and not appended stays out of
// the ledger even when such a forgery names its applicant.
func TestLedgerIgnoresForgedErasure(t *testing.T) {
	ctx := context.Background()
	srv := jstest.Start(t)
	events := srv.EventLog(t, eventlog.Config{Keys: masterKeys(t)}, zaptest.NewLogger(t))
	id := applicant(1)
	webhook(t, events, id, domain.EventCreated, 1, base)
	if _, err := events.Keys().BeginErasure(ctx, app, id, "x", "y"); err != nil {
		t.Fatal(err)
	}
	forged, err := eventlog.EncodeEvent(&domain.Event{V: domain.StoredVersionClear, Provider: "allpass",
		Origin: domain.OriginOperator, AppKey: app, ApplicantID: id, Type: domain.EventErased, EventAt: base,
		EventAtSource: domain.SourceReceived, ReceivedAt: base, Payload: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(srv.Conn(t).NC)
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := eventlog.Subject(app, id)
	if _, err := js.Publish(ctx, subject, forged); err != nil {
		t.Fatal(err)
	}
	ledger, err := Ledger(ctx, events.Keys(), events)
	if err != nil {
		t.Fatal(err)
	}
	if len(ledger) != 0 {
		t.Fatalf("ledger = %+v: a forged applicantErased counted as an erasure", ledger)
	}
}
