package httperr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/domain"
)

// kinds restates the table, independent of the package: each kind's status and default
// code. Every kind is in it (TestTable walks ErrorKind until String gives up).
var kinds = map[domain.ErrorKind]struct {
	status int
	code   string
}{
	domain.KindOther:         {500, "internal"},
	domain.KindInvalid:       {400, "invalid"},
	domain.KindUnauthorized:  {401, "unauthorized"},
	domain.KindForbidden:     {403, "forbidden"},
	domain.KindNotFound:      {404, "not_found"},
	domain.KindTooLarge:      {413, "too_large"},
	domain.KindUnprocessable: {422, "unprocessable"},
	domain.KindConflict:      {409, "conflict"},
	domain.KindUnavailable:   {503, "unavailable"},
	domain.KindInternal:      {500, "internal"},
}

// TestTable: every kind has a status and a default code, and they agree: a kind's code
// is its own name (KindOther, no classification, is internal), two kinds share a code
// only if they share a status, and a kind of no row is a 500.
func TestTable(t *testing.T) {
	n := 0
	for k := domain.ErrorKind(0); !strings.HasPrefix(k.String(), "kind("); k++ {
		n++
		want, ok := kinds[k]
		if !ok {
			t.Errorf("kind %v: not in this test's table", k)
			continue
		}
		if got := Status(k); got != want.status {
			t.Errorf("Status(%v) = %d, want %d", k, got, want.status)
		}
		if got := Code(k); got != want.code {
			t.Errorf("Code(%v) = %q, want %q", k, got, want.code)
		}
		if k != domain.KindOther && Code(k) != k.String() {
			t.Errorf("kind %v answers the code %q of another kind", k, Code(k))
		}
		for j := domain.ErrorKind(0); j < k; j++ {
			if Code(j) == Code(k) && Status(j) != Status(k) {
				t.Errorf("kinds %v and %v share the code %q but not the status (%d, %d)", j, k, Code(k), Status(j), Status(k))
			}
		}
		if status, code, _ := Answer(domain.E("op", k, "x")); status != want.status || code != want.code {
			t.Errorf("Answer(kind %v) = %d %q, want %d %q", k, status, code, want.status, want.code)
		}
	}
	if n != len(kinds) {
		t.Errorf("%d kinds, this test's table has %d", n, len(kinds))
	}
	if Status(domain.ErrorKind(99)) != 500 || Code(domain.ErrorKind(99)) != CodeInternal {
		t.Errorf("a kind of no row: %d %q, want 500 internal", Status(domain.ErrorKind(99)), Code(domain.ErrorKind(99)))
	}
}

func TestWrite(t *testing.T) {
	internals := domain.E("store.Projection.State", domain.KindUnavailable, errors.New("bolt: database not open at /data/projection.db"))
	for _, c := range []struct {
		name       string
		err        error
		status     int
		code, msg  string
		retryAfter string
	}{
		{"public", domain.Public("api", domain.KindInvalid, "", "limit: must be an integer"), 400, "invalid", "limit: must be an integer", ""},
		{"own code", domain.Public("api", domain.KindNotFound, "verify_disabled", "verify: off"), 404, "verify_disabled", "verify: off", ""},
		{"wrapped public", fmt.Errorf("ctx: %w", domain.Public("api", domain.KindForbidden, "", "role reader may not")), 403, "forbidden", "role reader may not", ""},
		{"internals of a 503", internals, 503, "unavailable", "temporarily unavailable; retry later", "5"},
		{"internals given a message", domain.WithPublic(internals, "", "the log did not confirm"), 503, "unavailable", "the log did not confirm", "5"},
		{"500 never shows its message", domain.Public("allpass.Open", domain.KindInternal, "invalid_config", "key is 31 bytes"), 500, "invalid_config", "internal error", ""},
		{"a 500 hides an inner public message", domain.E("store", domain.KindInternal, domain.Public("api", domain.KindInvalid, "", "id: not a UUID")), 500, "internal", "internal error", ""},
		{"kindless", errors.New("boom at 0xdeadbeef"), 500, "internal", "internal error", ""},
		{"conflict", domain.Public("api", domain.KindConflict, "", "verify: already running"), 409, "conflict", "verify: already running", ""},
		{"conflict without a message", domain.E("store.Builder", domain.KindConflict, "builder finished"), 409, "conflict", "conflicts with the current state; ask again later", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			status, code, msg := Writer{RetryAfter: "5"}.Write(rec, httptest.NewRequest(http.MethodGet, "/x", nil), c.err)
			var b Body
			dec := json.NewDecoder(rec.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&b); err != nil {
				t.Fatal(err)
			}
			if rec.Code != c.status || status != c.status || b.Error.Code != c.code || code != c.code || b.Error.Message != c.msg || msg != c.msg {
				t.Errorf("answered %d %+v (returned %d %q %q), want %d %q %q", rec.Code, b.Error, status, code, msg, c.status, c.code, c.msg)
			}
			if got := rec.Header().Get("Retry-After"); got != c.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, c.retryAfter)
			}
			if strings.Contains(rec.Body.String(), "store.") || strings.Contains(rec.Body.String(), "0xdeadbeef") {
				t.Errorf("internals reached the caller: %s", rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestHandle(t *testing.T) {
	h := Writer{}.Handle(func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Path == "/ok" {
			WriteJSON(w, http.StatusOK, map[string]int{"n": 1})
			return nil
		}
		return domain.Public("test", domain.KindNotFound, "", "no "+r.URL.Path)
	})
	for path, want := range map[string]int{"/ok": 200, "/nope": 404} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("%s: %d %s, want %d", path, rec.Code, rec.Body, want)
		}
	}
	rec := httptest.NewRecorder()
	MethodNotAllowed(rec, "POST", "GET /x: only POST")
	if rec.Code != 405 || rec.Header().Get("Allow") != "POST" || !strings.Contains(rec.Body.String(), `"method_not_allowed"`) {
		t.Errorf("MethodNotAllowed: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}

// TestWriteJSON: the body is json.Marshal's and a newline, with its length and the shared
// headers; a value that cannot be encoded is a 500 with the internal error body; a
// reused buffer carries nothing of an earlier, longer answer.
func TestWriteJSON(t *testing.T) {
	write := func(status int, v any) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		WriteJSON(rec, status, v)
		return rec
	}
	long := map[string]string{"a": strings.Repeat("<x>", 5000)}
	for _, v := range []any{long, map[string]int{"seq": 7}, []string{}, "é\u2028"} {
		rec := write(http.StatusOK, v)
		want, _ := json.Marshal(v)
		want = append(want, '\n')
		if rec.Code != http.StatusOK || rec.Body.String() != string(want) {
			t.Fatalf("%v: %d %q, want %q", v, rec.Code, rec.Body.String(), want)
		}
		if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(len(want)) {
			t.Fatalf("Content-Length %s for %d bytes", got, len(want))
		}
		if rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "no-store" ||
			rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("headers %v", rec.Header())
		}
	}
	rec := write(http.StatusCreated, appender(`{"by":"AppendJSON"}`))
	if rec.Code != http.StatusCreated || rec.Body.String() != `{"by":"AppendJSON"}`+"\n" ||
		rec.Header().Get("Content-Length") != "20" {
		t.Fatalf("appender: %d %q %v", rec.Code, rec.Body.String(), rec.Header())
	}
	rec = write(http.StatusOK, map[string]any{"f": func() {}})
	if rec.Code != http.StatusInternalServerError ||
		rec.Body.String() != `{"error":{"code":"internal","message":"internal error"}}`+"\n" {
		t.Fatalf("unencodable: %d %q", rec.Code, rec.Body.String())
	}
}

// appender encodes itself as its own text (and json.Marshal would quote it: WriteJSON
// must take the method).
type appender string

func (a appender) AppendJSON(b []byte) []byte { return append(b, a...) }
