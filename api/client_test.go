package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

// Every golden answer decodes into its api/client type and encodes back to the same JSON:
// the client loses no field and invents none.
func TestClientDecodesEveryGoldenAnswer(t *testing.T) {
	f := newFixture(t, nil)
	for _, c := range goldenCases() {
		rec := f.get(t, c.target, c.token)
		var v any
		path, _, _ := strings.Cut(c.target, "?")
		switch {
		case rec.Code != 200:
			v = &client.ErrorBody{}
		case path == "/healthz" || path == "/readyz":
			v = &client.Health{}
		case strings.HasSuffix(path, "/history"):
			v = &client.History{}
		case strings.HasPrefix(path, "/v1/applicants/"):
			v = &client.State{}
		case path == "/v1/applicants":
			v = &client.Applicants{}
		case path == "/v1/anomalies":
			v = &client.Anomalies{}
		case path == "/v1/changes":
			v = &client.Changes{}
		default:
			t.Fatalf("%s: no client type for %s", c.name, path)
		}
		dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var want bytes.Buffer
		if err := json.Compact(&want, rec.Body.Bytes()); err != nil {
			t.Fatal(err)
		}
		if got := mustJSON(t, v); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s: the client type loses or changes fields\n got %s\nwant %s", c.name, got, want.Bytes())
		}
	}
}

// The client against the real server: each method reads what the route answers, with the
// answer's X-Kycstate-Seq, and an error answer becomes a *client.Error with its code.
func TestClientAgainstServer(t *testing.T) {
	lf := newLogFixture(t, nil)
	srv := httptest.NewServer(lf.h)
	defer srv.Close()
	ctx := t.Context()
	auditor, err := client.New(srv.URL, auditorToken)
	if err != nil {
		t.Fatal(err)
	}
	st, seq, err := auditor.State(ctx, idA, client.StateQuery{MinSeq: 21})
	if err != nil || seq != 21 || st.ApplicantID != idA || st.LastSeq != 21 || st.Status == nil || *st.Status != "APPROVED" {
		t.Errorf("State: %+v seq %d, %v", st, seq, err)
	}
	if want := newStateView(mustState(t, lf.fixture, idA)); !reflect.DeepEqual(st, want) {
		t.Errorf("State = %+v, want %+v", st, want)
	}
	at, _, err := auditor.State(ctx, idA, client.StateQuery{Seq: 12})
	if err != nil || at.LastSeq > 12 {
		t.Errorf("State at seq 12: %+v, %v", at, err)
	}
	h, _, err := auditor.History(ctx, idA, 7, 3)
	if err != nil || len(h.Events) != 3 || h.Events[0].Seq <= 7 || h.Next == nil {
		t.Errorf("History: %+v, %v", h, err)
	}
	apps, _, err := auditor.ApplicantsByExternalUserID(ctx, "user-1", "", 0)
	if err != nil || len(apps.Applicants) != 2 {
		t.Errorf("ApplicantsByExternalUserID: %+v, %v", apps, err)
	}
	apps, _, err = auditor.ApplicantsByStatus(ctx, domain.StatusApproved, "", 1)
	if err != nil || len(apps.Applicants) != 1 || apps.Next == nil {
		t.Errorf("ApplicantsByStatus: %+v, %v", apps, err)
	}
	an, _, err := auditor.Anomalies(ctx, 0, 0)
	if err != nil || len(an.Anomalies) != 2 || an.Anomalies[0].Outcome != domain.OutcomeIrregular {
		t.Errorf("Anomalies: %+v, %v", an, err)
	}
	ch, _, err := auditor.Changes(ctx, 19, 0, 0)
	if err != nil || ch.Next != 21 {
		t.Errorf("Changes: %+v, %v", ch, err)
	}
	v, seq, err := auditor.Verify(ctx)
	if err != nil || v.Checkpoint != 21 || seq != 21 || v.Differences == nil || len(v.Differences) != 0 {
		t.Errorf("Verify: %+v seq %d, %v", v, seq, err)
	}

	// Errors: by code, with the answer's seq.
	_, _, err = auditor.State(ctx, idNone, client.StateQuery{})
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 404 || e.Code != client.CodeNotFound || e.Seq != 21 {
		t.Errorf("unknown applicant: %v", err)
	}
	reader, _ := client.New(srv.URL, readerToken)
	if _, _, err := reader.History(ctx, idA, 0, 0); client.Code(err) != client.CodeForbidden {
		t.Errorf("reader reading history: %v", err)
	}
	wrong, _ := client.New(srv.URL, wrongToken)
	if _, _, err := wrong.Verify(ctx); client.Code(err) != client.CodeUnauthorized {
		t.Errorf("wrong token: %v", err)
	}
	noLog := httptest.NewServer(newFixture(t, nil).h)
	defer noLog.Close()
	c, _ := client.New(noLog.URL, auditorToken)
	if _, _, err := c.Verify(ctx); client.Code(err) != client.CodeVerifyDisabled {
		t.Errorf("verify on a node without a log: %v", err)
	}
	// Not the read API: a 200 that is not a verify result.
	notAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, client.Health{Status: "ok"})
	}))
	defer notAPI.Close()
	c, _ = client.New(notAPI.URL, auditorToken)
	var bad *client.BadAnswerError
	if _, _, err := c.Verify(ctx); !errors.As(err, &bad) {
		t.Errorf("verify of a health answer: %v", err)
	}
}

func mustState(tb testing.TB, f *fixture, id domain.ApplicantID) domain.State {
	tb.Helper()
	st, found, err := f.proj.State(id)
	if err != nil || !found {
		tb.Fatalf("State(%s): %v %v", id, found, err)
	}
	return st
}
