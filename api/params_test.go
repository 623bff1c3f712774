package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// badCase is a request that must be refused with 400 naming param.
type badCase struct {
	target string
	param  string
}

func badCases() []badCase {
	A := "/v1/applicants/" + string(idA)
	return []badCase{
		// {id} is an Allpass UUID or another provider's id (DESIGN.md section 13): 1 to 64
		// of [A-Za-z0-9_-]; with ?provider=allpass, a UUID only.
		{"/v1/applicants/not.a.uuid", "id"},
		{"/v1/applicants/not-a-uuid?provider=allpass", "id"},
		{"/v1/applicants/" + string(idA) + "0?provider=allpass", "id"},
		{"/v1/applicants/0a3c5e1f-6b2d-4c8e-9f10+aaaaaaaaaaa1", "id"},
		{"/v1/applicants/0a3c5e1f-6b2d-4c8e-9f10-aaaaaaaaaaag?provider=allpass", "id"},
		{"/v1/applicants/%20/history", "id"},
		{"/v1/applicants/" + strings.Repeat("a", 65), "id"},
		{"/v1/applicants/" + strings.Repeat("a", 65) + "?provider=sumsub", "id"},
		{"/v1/applicants/inq_%C3%A9/history?provider=persona", "id"},
		{A + "?provider=", "provider"},
		{A + "?provider=Allpass", "provider"},
		{A + "/history?provider=sumsub&provider=sumsub", "provider"},
		{A + "?minSeq=-1", "minSeq"},
		{A + "?minSeq=abc", "minSeq"},
		{A + "?minSeq=99999999999999999999999", "minSeq"},
		{A + "?minSeq=", "minSeq"},
		{A + "?at=yesterday", "at"},
		{A + "?at=2024-05-01", "at"},
		{A + "?at=2024-05-01T09:00:00", "at"}, // no zone
		{A + "?at=", "at"},
		{A + "?seq=x", "seq"},
		{A + "?seq=-3", "seq"},
		{A + "?seq=+3", "seq"},
		{A + "?at=2024-05-01T09:00:00Z&seq=1", "at"},
		{A + "/history?after=-5", "after"},
		{A + "/history?after=1.5", "after"},
		{A + "/history?limit=0", "limit"},
		{A + "/history?limit=-1", "limit"},
		{A + "/history?limit=-99999999999999999999", "limit"},
		{A + "/history?limit=abc", "limit"},
		{A + "/history?limit=1e3", "limit"},
		{A + "/history?limit=", "limit"},
		{"/v1/applicants", "externalUserId"},
		{"/v1/applicants?limit=5", "externalUserId"},
		{"/v1/applicants?externalUserId=u&status=APPROVED", "externalUserId"},
		{"/v1/applicants?externalUserId=", "externalUserId"},
		{"/v1/applicants?externalUserId=" + strings.Repeat("x", 1025), "externalUserId"},
		{"/v1/applicants?externalUserId=u&appKey=no.pe", "appKey"},
		{"/v1/applicants?externalUserId=u&appKey=" + strings.Repeat("a", 65), "appKey"},
		{"/v1/applicants?externalUserId=u&cursor=" + string(idA), "cursor"},
		{"/v1/applicants?status=DONE", "status"},
		{"/v1/applicants?status=%C4%B1nit", "status"}, // dotless i: not INIT
		{"/v1/applicants?status=", "status"},
		{"/v1/applicants?status=APPROVED&cursor=xyz", "cursor"},
		{"/v1/applicants?status=APPROVED&appKey=" + string(app1), "appKey"},
		{"/v1/applicants?status=APPROVED&limit=0", "limit"},
		{"/v1/anomalies?cursor=abc", "cursor"},
		{"/v1/anomalies?cursor=-1", "cursor"},
		{"/v1/anomalies?limit=-10", "limit"},
		{"/v1/changes?after=1.5", "after"},
		{"/v1/changes?after=-1", "after"},
		{"/v1/changes?limit=0", "limit"},
		{"/v1/changes?wait=61", "wait"},
		{"/v1/changes?wait=3600", "wait"},
		{"/v1/changes?wait=-1", "wait"},
		{"/v1/changes?wait=1s", "wait"},
		{"/v1/changes?a=%zz", "query"},
		{A + "?minSeq=1&minSeq=2", "minSeq"},
		{A + "?seq=1&seq=1", "seq"},
		{A + "/history?after=3&after=x", "after"},
		{A + "/history?limit=1&limit=1", "limit"},
		{"/v1/applicants?status=APPROVED&status=REJECTED", "status"},
		{"/v1/applicants?externalUserId=u&externalUserId=v", "externalUserId"},
		{"/v1/changes?wait=1&wait=60", "wait"},
		{"/v1/anomalies?cursor=1&cursor=2", "cursor"},
	}
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t, nil)
	for _, c := range badCases() {
		t.Run(c.target, func(t *testing.T) {
			rec := f.get(t, c.target, auditorToken)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("%d, want 400: %s", rec.Code, rec.Body)
			}
			checkErrorBody(t, rec, "invalid", c.param+":")
		})
	}
}

// Parameters out of range that are served rather than refused: limits above 1000 are
// capped, unknown parameters ignored (even repeated).
func TestLenientParams(t *testing.T) {
	f := newFixture(t, nil)
	A := "/v1/applicants/" + string(idA)
	same := []struct{ target, like string }{
		{A + "?foo=bar&minseq=99", A},
		{A + "/history?limit=5000", A + "/history?limit=1000"},
		{A + "/history?limit=99999999999999999999999", A + "/history?limit=1000"},
		{A + "/history?limit=0002", A + "/history?limit=2"},
		{A + "/history?after=3&foo=1&foo=2", A + "/history?after=3"},
		{"/v1/changes?limit=1001&x=1", "/v1/changes?limit=1000"},
		{"/v1/changes?wait=0", "/v1/changes"},
		{"/v1/anomalies?limit=100000", "/v1/anomalies?limit=1000"},
		{"/v1/applicants?status=approved", "/v1/applicants?status=APPROVED"},
		{"/v1/applicants?status=APPROVED&cursor=", "/v1/applicants?status=APPROVED"},
		{"/v1/applicants?externalUserId=user-1&appKey=" + strings.ToUpper(string(app2)),
			"/v1/applicants?externalUserId=user-1&appKey=" + string(app2)},
	}
	for _, c := range same {
		got, want := f.get(t, c.target, auditorToken), f.get(t, c.like, auditorToken)
		if got.Code != http.StatusOK || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Errorf("%s: %d %s\nwant as %s: %s", c.target, got.Code, got.Body, c.like, want.Body)
		}
	}
}

func TestLimitCaps(t *testing.T) {
	for in, want := range map[string]int{"": 100, "1": 1, "999": 999, "1000": 1000, "1001": 1000,
		"18446744073709551616": 1000, "007": 7} {
		v := url.Values{}
		if in != "" {
			v.Set("limit", in)
		}
		got, err := query{v: v}.limit()
		if err != nil || got != want {
			t.Errorf("limit=%q: %d, %v; want %d", in, got, err, want)
		}
	}
}

// A page of more than 1000 real entries is cut at 1000.
func TestLimitCapServesAThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("applies 1200 events")
	}
	f := newFixture(t, nil)
	var specs []spec
	for i := range 1200 {
		specs = append(specs, spec{id: idA, app: app1, ext: "user-1", typ: "applicantNoted",
			at: 30*time.Minute + time.Duration(i)*time.Second, recv: 30*time.Minute + time.Duration(i)*time.Second})
	}
	f.apply(t, specs...)
	rec := f.get(t, fmt.Sprintf("/v1/applicants/%s/history?limit=5000", idA), auditorToken)
	var h struct {
		Events []json.RawMessage
		Next   *uint64
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Events) != maxLimit || h.Next == nil {
		t.Errorf("%d events, next %v; want %d and a next", len(h.Events), h.Next, maxLimit)
	}
}

func TestParseUUID(t *testing.T) {
	for in, want := range map[string]string{
		"0A3C5E1F-6B2D-4C8E-9F10-AAAAAAAAAAA1":    "0a3c5e1f-6b2d-4c8e-9f10-aaaaaaaaaaa1",
		"00000000-0000-0000-0000-000000000000":    "00000000-0000-0000-0000-000000000000",
		"0a3c5e1f6b2d4c8e9f10aaaaaaaaaaa1":        "",
		"{0a3c5e1f-6b2d-4c8e-9f10-aaaaaaaaaaa}":   "",
		"0a3c5e1f-6b2d-4c8e-9f10-aaaaaaaaaaa\x00": "",
		"": "",
	} {
		got, err := parseUUID("id", in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("parseUUID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
