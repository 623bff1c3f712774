package client

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNewBase(t *testing.T) {
	for _, c := range []struct{ in, want, bad string }{
		{in: "http://127.0.0.1:8081", want: "http://127.0.0.1:8081/v1/verify"},
		{in: "http://127.0.0.1:8081/", want: "http://127.0.0.1:8081/v1/verify"},
		{in: "127.0.0.1:8081", want: "http://127.0.0.1:8081/v1/verify"},
		{in: "localhost:8081", want: "http://localhost:8081/v1/verify"},
		{in: "https://kyc.internal/query/", want: "https://kyc.internal/query/v1/verify"},
		{in: "ftp://127.0.0.1:8081", bad: "http or https"},
		{in: "http://", bad: "no host"},
		{in: "http://127.0.0.1:8081/?x=1", bad: "query"},
		{in: "http://audit:secret@127.0.0.1:8081", bad: "token"},
		{in: "http://[::1", bad: "not a URL"},
	} {
		c0, err := New(c.in, "t")
		var got string
		if err == nil {
			got = c0.URL("v1", "verify")
		}
		switch {
		case c.bad == "" && (err != nil || got != c.want):
			t.Errorf("New(%q): %q, %v; want %q", c.in, got, err, c.want)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("New(%q): %q, %v; want an error naming %q", c.in, got, err, c.bad)
		case c.bad != "" && strings.Contains(err.Error(), "secret"):
			t.Errorf("New(%q): the error shows the password: %v", c.in, err)
		}
	}
}

func decodeVerify(b []byte) (Verify, error) {
	var v verifyStrict
	err := json.Unmarshal(b, &v)
	return v.Verify, err
}

func TestDecodeVerify(t *testing.T) {
	good := `{"checkpoint":22,"logLast":21,"applicants":5,"events":21,"future":true,"differences":[
		{"kind":"checkpoint","applicantId":null,"log":"ends at sequence 21","projection":"checkpoint 22"},
		{"kind":"extra","applicantId":"5f81a364-b072-41d3-8465-fffffffffff6","log":"no events","projection":"digest 00, 1 events, last seq 22"}]}`
	v, err := decodeVerify([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	res := v.Result()
	want := []string{"checkpoint: log ends at sequence 21, projection checkpoint 22",
		"extra 5f81a364-b072-41d3-8465-fffffffffff6: log no events, projection digest 00, 1 events, last seq 22"}
	if res.Checkpoint != 22 || res.LogLast != 21 || res.Applicants != 5 || res.Events != 21 || len(res.Differences) != 2 {
		t.Fatalf("decoded %+v", res)
	}
	for i, d := range res.Differences {
		if d.String() != want[i] {
			t.Errorf("difference %d prints %q, want %q", i, d.String(), want[i])
		}
	}
	for _, bad := range []string{``, `{}`, `[]`, `{"checkpoint":1}`, `{"differences":[]}`, `{"checkpoint":1,"differences":null}`,
		`{"checkpoint":"1","differences":[]}`, `<html>`, `{"error":{"code":"x","message":"y"}}`} {
		if _, err := decodeVerify([]byte(bad)); err == nil {
			t.Errorf("decodeVerify(%q) accepted it", bad)
		}
	}
}

func FuzzDecodeVerify(f *testing.F) {
	f.Add([]byte(`{"checkpoint":3,"logLast":3,"applicants":1,"events":3,"differences":[]}`))
	f.Add([]byte(`{"checkpoint":3,"differences":[{"kind":"digest","applicantId":"a","log":"x","projection":"y"}]}`))
	f.Add([]byte(`{"checkpoint":3,"differences":[{"applicantId":7}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeVerify(b)
		if err != nil {
			return
		}
		for _, d := range v.Result().Differences {
			if d.String() == "" {
				t.Fatalf("difference %+v prints nothing", d)
			}
		}
	})
}

func TestDecodeError(t *testing.T) {
	e := decodeError(404, 7, []byte(`{"error":{"code":"verify_disabled","message":"verify: off"}}`))
	if e.Status != 404 || e.Code != CodeVerifyDisabled || e.Message != "verify: off" || e.Seq != 7 || Code(e) != CodeVerifyDisabled {
		t.Errorf("decoded %+v", e)
	}
	e = decodeError(502, 0, []byte(`<html>bad gateway</html>`))
	if e.Code != "" || e.Message != "Bad Gateway" {
		t.Errorf("a proxy's page decoded as %+v", e)
	}
}
