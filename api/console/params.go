package console

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kycstate/kycstate/domain"
)

// Limits of the console's inputs. Anything beyond is refused with a message saying so,
// before it reaches the backend.
const (
	pageSize       = 100      // rows per page of history, anomalies and changes
	lookupLimit    = 100      // applicants listed for one externalUserId
	maxSearchBytes = 1024     // the longest externalUserId the store keeps
	maxFormBytes   = 16 << 10 // a sign-in or verify form is a few hundred bytes
	maxTokenBytes  = 4096     // longer than any token an operator configures
	maxQueryBytes  = 8 << 10  // a console URL's query string
	maxTimeBytes   = 64       // an RFC 3339 time is some 35 bytes
	maxUintBytes   = 20       // 18446744073709551615
	datetimeLocal  = "2006-01-02T15:04"
	datetimeLocalS = "2006-01-02T15:04:05"
)

// errParam is an error the officer is shown (domain.Public), worded as the API words its
// own: the name of what is at fault, then the problem.
func errParam(name string, kind domain.ErrorKind, msg string) error {
	return domain.Public("console", kind, "", name+": "+msg)
}

// params is a request's parsed query string. Of a repeated parameter the first counts.
type params struct{ v url.Values }

func parseParams(raw string) (params, error) {
	if len(raw) > maxQueryBytes {
		return params{}, errParam("query", domain.KindInvalid, fmt.Sprintf("query string longer than %d bytes", maxQueryBytes))
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return params{}, errParam("query", domain.KindInvalid, "malformed query string")
	}
	return params{v: v}, nil
}

func (p params) has(name string) bool { return p.v.Get(name) != "" }

func (p params) get(name string) string { return strings.TrimSpace(p.v.Get(name)) }

// seq returns a sequence parameter (after, seq), 0 when absent or empty.
func (p params) seq(name string) (uint64, error) {
	s := p.get(name)
	if s == "" {
		return 0, nil
	}
	return parseSeq(name, s)
}

// afterParam is the ?after of a list page or the change feed: where the page starts.
func afterParam(rawQuery string) (uint64, error) {
	p, err := parseParams(rawQuery)
	if err != nil {
		return 0, err
	}
	return p.seq("after")
}

func parseSeq(name, s string) (uint64, error) {
	if len(s) > maxUintBytes || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errParam(name, domain.KindInvalid, fmt.Sprintf("must be a stream sequence (a non-negative integer), got %s", quote(s)))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errParam(name, domain.KindInvalid, fmt.Sprintf("must be a stream sequence (a non-negative integer), got %s", quote(s)))
	}
	return n, nil
}

// asOf reads the applicant page's point in time: ?seq=N or ?at=TIME, as the API's
// parameters of the same names; at is RFC 3339, or the browser's datetime-local form
// read as UTC. ok is false when neither is given.
func (p params) asOf() (as AsOf, ok bool, err error) {
	hasSeq, hasAt := p.has("seq"), p.has("at")
	switch {
	case hasSeq && hasAt:
		return AsOf{}, false, errParam("at", domain.KindInvalid, "give a sequence or a time, not both")
	case hasSeq:
		n, err := parseSeq("seq", p.get("seq"))
		if err != nil {
			return AsOf{}, false, err
		}
		if n == 0 {
			return AsOf{}, false, errParam("seq", domain.KindInvalid, "sequences start at 1")
		}
		return AsOf{Seq: n}, true, nil
	case hasAt:
		t, err := parseTime("at", p.get("at"))
		if err != nil {
			return AsOf{}, false, err
		}
		return AsOf{Time: t}, true, nil
	}
	return AsOf{}, false, nil
}

func parseTime(name, s string) (time.Time, error) {
	bad := errParam(name, domain.KindInvalid, fmt.Sprintf("must be a time such as 2024-05-01T12:00:00Z (UTC unless it names a zone), got %s", quote(s)))
	if len(s) > maxTimeBytes {
		return time.Time{}, bad
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	for _, layout := range []string{datetimeLocalS, datetimeLocal} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, bad
}

// parseSearch checks the search box: an applicant id or an externalUserId.
func parseSearch(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case len(s) > maxSearchBytes:
		return "", errParam("q", domain.KindInvalid, fmt.Sprintf("longer than %d bytes: no applicant id or externalUserId is", maxSearchBytes))
	case !utf8.ValidString(s):
		return "", errParam("q", domain.KindInvalid, "not valid UTF-8")
	}
	return s, nil
}

// safeNext returns where to go after signing in: a path inside the console, or the
// search page. Anything that could leave the console (another host, a scheme, a
// backslash some browsers read as a slash) is dropped.
func safeNext(s string) string {
	const home = "/console/"
	if len(s) > 2048 || !strings.HasPrefix(s, home) || strings.ContainsAny(s, "\\\r\n\t") || strings.Contains(s, "//") {
		return home
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, home) || strings.Contains(u.Path, "/../") {
		return home
	}
	if strings.HasPrefix(u.Path, "/console/signin") || strings.HasPrefix(u.Path, "/console/signout") {
		return home
	}
	return s
}

// quote shows a bad value in a message, shortened. The page escapes it; quoting makes
// spaces and control characters visible.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// parseApplicant reads the applicant a page's address names: {id}, the provider's own
// id, and ?provider=, whose it is ("" when absent: the backend then finds an Allpass
// applicant with the id, else the one other provider's; DESIGN.md section 13). Allpass
// ids are UUIDs (any case, made canonical, as a UUID without a provider is read);
// every other provider's 1 to 64 of [A-Za-z0-9_-], kept as given.
func parseApplicant(rawID string, p params) (domain.Provider, domain.ApplicantID, error) {
	var prov domain.Provider
	if p.has("provider") {
		prov = domain.Provider(p.get("provider"))
		if !prov.Valid() {
			return "", "", errParam("provider", domain.KindInvalid, fmt.Sprintf("not a provider kycstate reads: %s", quote(string(prov))))
		}
	}
	if id, err := domain.ParseApplicantID(rawID); err == nil && (prov == "" || prov == domain.ProviderAllpass) {
		return prov, id, nil
	}
	if prov == domain.ProviderAllpass {
		return "", "", errParam("id", domain.KindInvalid, "an Allpass applicant id in the address must be a UUID")
	}
	id, err := domain.ParseProviderID(rawID)
	if err != nil {
		return "", "", errParam("id", domain.KindInvalid, "the applicant id in the address is neither a UUID nor a provider's id (1 to 64 of A-Z, a-z, 0-9, '_' and '-')")
	}
	return prov, id, nil
}
