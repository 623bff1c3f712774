package allpass

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// TestSeal: Seal makes webhooks in Allpass's published layout, and Open opens them.
func TestSeal(t *testing.T) {
	for _, tt := range []struct {
		method Method
		ivLen  int
		sigLen int
	}{{MethodCBC, 16, 32}, {MethodGCM, 12, 16}} {
		for _, envTime := range []string{"2026-03-01T10:00:00.000Z", ""} {
			t.Run(string(tt.method)+"/time="+envTime, func(t *testing.T) {
				app := newTestApp(t, tt.method)
				body, sig, err := Seal(tt.method, app.Keys[0], []byte(testPayload), envTime, nil)
				if err != nil {
					t.Fatal(err)
				}
				// The body is exactly the four Allpass fields (time only when given).
				var env map[string]any
				if err := json.Unmarshal(body, &env); err != nil {
					t.Fatal(err)
				}
				wantFields := 4
				if envTime == "" {
					wantFields = 3
				}
				if env["status"] != true || env["statusCode"] != float64(200) || len(env) != wantFields ||
					(envTime != "" && env["time"] != envTime) {
					t.Errorf("envelope %s", body)
				}
				data, err := hex.DecodeString(env["data"].(string))
				if err != nil {
					t.Fatalf("data is not hex: %v", err)
				}
				rawSig, err := hex.DecodeString(sig)
				if err != nil || len(rawSig) != tt.sigLen {
					t.Errorf("signature %q is not %d bytes of hex", sig, tt.sigLen)
				}
				switch tt.method {
				case MethodCBC:
					if (len(data)-tt.ivLen)%16 != 0 || len(data) < tt.ivLen+16 {
						t.Errorf("CBC data of %d bytes", len(data))
					}
					if !bytes.Equal(rawSig, hmacOf(app.Keys[0].HMAC, []byte(env["data"].(string)))) {
						t.Errorf("signature is not HMAC(data string)")
					}
				case MethodGCM:
					if len(data) != tt.ivLen+len(testPayload) {
						t.Errorf("GCM data of %d bytes, want IV + plaintext length", len(data))
					}
				}

				ev, msgID, err := app.Open(body, sig, time.Now(), Options{KeepRaw: true})
				if err != nil {
					t.Fatalf("Open(Seal(...)): %v", err)
				}
				auth := []byte(env["data"].(string))
				if tt.method == MethodGCM {
					auth = data
				}
				if string(ev.Payload) != testPayload || msgID != wantContentID(t, testAppKey, auth) {
					t.Errorf("round trip changed the webhook: %s", ev.Payload)
				}
			})
		}
	}
}

func TestSealIVs(t *testing.T) {
	app := newTestApp(t, MethodCBC)
	// A fixed reader gives the same webhook; fresh randomness a different one.
	fixed := func() io.Reader { return bytes.NewReader(bytes.Repeat([]byte{7}, 64)) }
	b1, s1, err1 := Seal(MethodCBC, app.Keys[0], []byte(testPayload), "", fixed())
	b2, s2, err2 := Seal(MethodCBC, app.Keys[0], []byte(testPayload), "", fixed())
	b3, _, err3 := Seal(MethodCBC, app.Keys[0], []byte(testPayload), "", nil)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) || s1 != s2 {
		t.Errorf("same IV, different webhooks")
	}
	if bytes.Equal(b1, b3) {
		t.Errorf("crypto/rand IV equals the fixed one")
	}
}

func TestSealErrors(t *testing.T) {
	k := randomKeys(t)
	short := bytes.NewReader([]byte{1, 2, 3})
	tests := []struct {
		name   string
		method Method
		keys   Keys
		rnd    io.Reader
	}{
		{"unknown method", "aes-128-ecb", k, nil},
		{"CBC without HMAC key", MethodCBC, Keys{Secret: k.Secret}, nil},
		{"CBC short randomness", MethodCBC, k, short},
		{"GCM short randomness", MethodGCM, k, bytes.NewReader(nil)},
	}
	for _, tt := range tests {
		if _, _, err := Seal(tt.method, tt.keys, []byte(testPayload), "", tt.rnd); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	// An app refuses what Seal makes for another method.
	body, sig, err := Seal(MethodGCM, k, []byte(testPayload), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	app := &App{Name: "x", AppKey: testAppKey, Method: MethodCBC, Keys: []Keys{k}}
	if _, _, err := app.Open(body, sig, time.Now(), Options{}); domain.KindOf(err) != domain.KindUnauthorized {
		t.Errorf("CBC app opened a GCM webhook: %v", err)
	}
}
