package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/reconcile"
)

// POST /v1/applicants/{id}/reconcile answers the check's report in the documented form,
// for each action, and refuses what it must.
func TestReconcileRoute(t *testing.T) {
	doc := loadSpec(t)
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	reports := map[domain.ApplicantID]reconcile.Report{
		idA: {ApplicantID: idA, AppKey: app1, Action: reconcile.ActionAppended, ProjectionStatus: domain.StatusInReview,
			ProjectionStatusAt: at, OpenAPIStatus: domain.StatusApproved, OpenAPIUpdatedAt: at.Add(time.Hour), Seq: 42},
		idB: {ApplicantID: idB, AppKey: app1, Action: reconcile.ActionInSync, ProjectionStatus: domain.StatusApproved,
			ProjectionStatusAt: at, OpenAPIStatus: domain.StatusApproved, OpenAPIUpdatedAt: at},
		idC: {ApplicantID: idC, AppKey: app1, Action: reconcile.ActionNotFound},
		idD: {ApplicantID: idD, AppKey: app1, Action: reconcile.ActionError, ProjectionStatus: domain.StatusInit,
			ProjectionStatusAt: at, Error: "the Open API refused the private key (401)", Reason: reconcile.ReasonUnauthorized},
	}
	var dry []bool
	f := newFixture(t, func(c *Config) {
		c.Reconcile = func(_ context.Context, id domain.ApplicantID, dryRun bool) (reconcile.Report, error) {
			dry = append(dry, dryRun)
			rep, ok := reports[id]
			if !ok {
				return reconcile.Report{}, domain.E("test", domain.KindNotFound, "never seen")
			}
			rep.DryRun = dryRun
			return rep, nil
		}
	})
	path := func(id domain.ApplicantID) string { return "/v1/applicants/" + string(id) + "/reconcile" }
	for id, want := range reports {
		rec := f.do(context.Background(), http.MethodPost, path(id), auditorToken)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", want.Action, rec.Code, rec.Body)
		}
		doc.checkOp(t, http.MethodPost, path(id), rec)
		got := decode(t, rec.Body.Bytes()).(map[string]any)
		if got["action"] != string(want.Action) || len(got) != 7 {
			t.Errorf("%s: %s", want.Action, rec.Body)
		}
	}
	rec := f.do(context.Background(), http.MethodPost, path(idA)+"?dryRun=true", auditorToken)
	doc.checkOp(t, http.MethodPost, path(idA)+"?dryRun=true", rec)
	if got := decode(t, rec.Body.Bytes()).(map[string]any); got["dryRun"] != true || !dry[len(dry)-1] {
		t.Errorf("dry run: %s", rec.Body)
	}
	for _, c := range []struct {
		target, token string
		status        int
		code          string
	}{
		{path(idNone), auditorToken, http.StatusNotFound, client.CodeNotFound},
		{path(idA), readerToken, http.StatusForbidden, client.CodeForbidden},
		{path(idA), "", http.StatusUnauthorized, client.CodeUnauthorized},
		// No provider's id: not a UUID, and a character no provider's ids have.
		{"/v1/applicants/not%2Ban%2Bid/reconcile", auditorToken, http.StatusBadRequest, client.CodeInvalid},
		// An Allpass id must be a UUID.
		{"/v1/applicants/not-a-uuid/reconcile?provider=allpass", auditorToken, http.StatusBadRequest, client.CodeInvalid},
		{"/v1/applicants/not-a-uuid/reconcile", auditorToken, http.StatusNotFound, client.CodeNotFound},
		{"/v1/applicants/not.a.uuid/reconcile", auditorToken, http.StatusBadRequest, client.CodeInvalid},
		{path(idA) + "?provider=nosuch", auditorToken, http.StatusBadRequest, client.CodeInvalid},
		{path(idA) + "?dryRun=perhaps", auditorToken, http.StatusBadRequest, client.CodeInvalid},
	} {
		rec := f.do(context.Background(), http.MethodPost, c.target, c.token)
		body, _ := decode(t, rec.Body.Bytes()).(map[string]any)
		code, _ := body["error"].(map[string]any)["code"].(string)
		if rec.Code != c.status || code != c.code {
			t.Errorf("POST %s: %d %s, want %d %s", c.target, rec.Code, rec.Body, c.status, c.code)
		}
		doc.checkOp(t, http.MethodPost, c.target, rec)
	}

	off := newFixture(t, nil)
	rec = off.do(context.Background(), http.MethodPost, path(idA), auditorToken)
	if body := decode(t, rec.Body.Bytes()).(map[string]any); rec.Code != http.StatusNotFound ||
		body["error"].(map[string]any)["code"] != client.CodeReconcileDisabled {
		t.Errorf("a node without open_api: %d %s", rec.Code, rec.Body)
	}
	doc.checkOp(t, http.MethodPost, path(idA), rec)
}
