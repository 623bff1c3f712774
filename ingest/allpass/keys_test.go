package allpass

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/domain"
)

func TestParseKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xfb, 0xef, 0x3e}, 11)[:32] // encodes with '+', '/', '-' and '_'
	hexKey := hex.EncodeToString(key)
	good := []struct{ name, in string }{
		{"hex lower", hexKey},
		{"hex upper", strings.ToUpper(hexKey)},
		{"base64 std", base64.StdEncoding.EncodeToString(key)},
		{"base64 raw", base64.RawStdEncoding.EncodeToString(key)},
		{"base64 url", base64.URLEncoding.EncodeToString(key)},
		{"base64 raw url", base64.RawURLEncoding.EncodeToString(key)},
		{"trailing newline from a secrets file", hexKey + "\n"},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKey("main", "secret_key", tt.in)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if !bytes.Equal(got[:], key) {
				t.Fatalf("ParseKey = %x, want %x", got, key)
			}
			mac, err := ParseHMACKey("main", "hmac_key", tt.in)
			if err != nil || !bytes.Equal(mac, key) {
				t.Fatalf("ParseHMACKey = %x, %v", mac, err)
			}
		})
	}

	bad := []struct{ name, in string }{
		{"empty", ""},
		{"blank", "   \n"},
		{"hex 63", hexKey[:63]},
		{"hex 62 (31 bytes)", hexKey[:62]},
		{"hex 66 (33 bytes)", hexKey + "ab"},
		{"hex with a non-hex digit", "g" + hexKey[1:]},
		{"base64 of 31 bytes", base64.StdEncoding.EncodeToString(key[:31])},
		{"base64 of 33 bytes", base64.StdEncoding.EncodeToString(append(key, 1))},
		{"base64 of 48 bytes (64 chars)", base64.StdEncoding.EncodeToString(bytes.Repeat(key, 2)[:48])},
		{"garbage", "correct horse battery staple!!"},
		{"env reference left unresolved", "env:ALLPASS_SECRET_KEY"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			for _, parse := range []func(app, field, s string) error{
				func(app, field, s string) error { _, err := ParseKey(app, field, s); return err },
				func(app, field, s string) error { _, err := ParseHMACKey(app, field, s); return err },
			} {
				err := parse("main", "secret_key", tt.in)
				if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != CodeInvalidConfig {
					t.Fatalf("err = %v (code %s), want KindInvalid invalid_config", err, domain.CodeOf(err))
				}
				msg := err.Error()
				if !strings.Contains(msg, `"main"`) || !strings.Contains(msg, "secret_key") {
					t.Errorf("%q does not name the app and field", msg)
				}
				if v := strings.TrimSpace(tt.in); len(v) >= 4 && strings.Contains(msg, v) {
					t.Errorf("%q echoes the value", msg)
				}
			}
		})
	}
}

// TestParseAppKey: an app's key is parsed by domain.ParseAppKey, the one UUID parser;
// App.Validate refuses a key it does not take as configuration (invalid_config).
func TestParseAppKey(t *testing.T) {
	got, err := domain.ParseAppKey("71F2C0C6-C720-423B-8DF0-7763102AD57E")
	if err != nil || got != "71f2c0c6-c720-423b-8df0-7763102ad57e" {
		t.Fatalf("ParseAppKey = %q, %v; want the lower-case form", got, err)
	}
	for _, s := range []string{"", "main", "71f2c0c6c720423b8df07763102ad57e", "71f2c0c6-c720-423b-8df0-7763102ad57",
		"71f2c0c6-c720-423b-8df0-7763102ad57e0", "{71f2c0c6-c720-423b-8df0-7763102ad57}", "71f2c0c6-c720-423b-8df0-7763102ad5.e"} {
		if _, err := domain.ParseAppKey(s); domain.KindOf(err) != domain.KindInvalid {
			t.Errorf("ParseAppKey(%q) = %v, want KindInvalid", s, err)
		}
		a := newTestApp(t, MethodCBC)
		a.AppKey = domain.AppKey(s)
		if err := a.Validate(); domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != CodeInvalidConfig {
			t.Errorf("Validate with app key %q = %v, want KindInvalid, %s", s, err, CodeInvalidConfig)
		}
	}
}
