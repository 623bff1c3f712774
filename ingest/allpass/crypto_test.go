package allpass

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	mathrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// testPayload is a valid plaintext for newTestApp.
const testPayload = `{"type":"applicantApproved","id":"ea0562d3-00f9-4fce-88c3-6bbae056eed6","externalUserId":"user-55d317","appKey":"71f2c0c6-c720-423b-8df0-7763102ad57e","warnings":[]}`

func hmacOf(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// cbcEncryptRaw encrypts blocks (a whole number of AES blocks, padded or not, as the
// test wants) and returns IV || ciphertext.
func cbcEncryptRaw(tb testing.TB, secret [32]byte, blocks []byte) []byte {
	tb.Helper()
	block, err := aes.NewCipher(secret[:])
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]byte, aes.BlockSize+len(blocks))
	copy(out, bytes.Repeat([]byte{0x5a}, aes.BlockSize))
	cipher.NewCBCEncrypter(block, out[:aes.BlockSize]).CryptBlocks(out[aes.BlockSize:], blocks)
	return out
}

// envelopeWith is an Allpass body around data.
func envelopeWith(tb testing.TB, data string) []byte {
	tb.Helper()
	b, err := json.Marshal(Envelope{Status: true, StatusCode: 200, Data: data, Time: "2026-03-01T10:00:00.000Z"})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// signedCBC returns a body around data and hex(HMAC(key, data)): a webhook that passes
// authentication whatever data holds, so the test reaches the decryption step.
func signedCBC(tb testing.TB, k Keys, data string) ([]byte, string) {
	tb.Helper()
	return envelopeWith(tb, data), hex.EncodeToString(hmacOf(k.HMAC, []byte(data)))
}

// TestOpenCBCSignatureForms: every form DESIGN.md allows (MAC over the data string or the
// raw body, hex or base64; data hex or base64) opens to the same payload.
func TestOpenCBCSignatureForms(t *testing.T) {
	app := newTestApp(t, MethodCBC)
	k := app.Keys[0]
	raw := cbcEncryptRaw(t, k.Secret, padPKCS7([]byte(testPayload)))
	for _, data := range []struct{ name, s string }{
		{"data hex", hex.EncodeToString(raw)},
		{"data HEX", strings.ToUpper(hex.EncodeToString(raw))},
		{"data base64", base64.StdEncoding.EncodeToString(raw)},
		{"data raw base64", base64.RawStdEncoding.EncodeToString(raw)},
		{"data url base64", base64.URLEncoding.EncodeToString(raw)},
	} {
		body := envelopeWith(t, data.s)
		overData, overBody := hmacOf(k.HMAC, []byte(data.s)), hmacOf(k.HMAC, body)
		for _, sig := range []struct{ name, s string }{
			{"mac(data) hex", hex.EncodeToString(overData)},
			{"mac(data) HEX", strings.ToUpper(hex.EncodeToString(overData))},
			{"mac(data) base64", base64.StdEncoding.EncodeToString(overData)},
			{"mac(data) raw url base64", base64.RawURLEncoding.EncodeToString(overData)},
			{"mac(body) hex", hex.EncodeToString(overBody)},
			{"mac(body) base64", base64.StdEncoding.EncodeToString(overBody)},
			{"mac(data) hex with spaces", " " + hex.EncodeToString(overData) + " "},
		} {
			t.Run(data.name+"/"+sig.name, func(t *testing.T) {
				ev, _, err := app.Open(body, sig.s, time.Now(), Options{})
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if string(ev.Payload) != testPayload {
					t.Fatalf("payload %s", ev.Payload)
				}
			})
		}
	}
}

// TestOpenVerifiesMACBeforeDecrypting counts the calls that reach the CBC decryption
// step. Open is open with decryptCBC; the test passes decryptCBC wrapped in a counter.
// A webhook whose MAC fails never reaches it, whatever its ciphertext holds; one whose
// MAC passes reaches it once per key generation whose MAC matched.
func TestOpenVerifiesMACBeforeDecrypting(t *testing.T) {
	app := newTestApp(t, MethodCBC)
	k := app.Keys[0]
	other := randomKeys(t)

	goodRaw := cbcEncryptRaw(t, k.Secret, padPKCS7([]byte(testPayload)))
	badPad := padPKCS7([]byte(testPayload))
	badPad[len(badPad)-1] = 0 // padding byte 0 is never valid
	badPadRaw := cbcEncryptRaw(t, k.Secret, badPad)
	tampered := bytes.Clone(goodRaw)
	tampered[aes.BlockSize+3] ^= 0x01

	goodData, badPadData, tamperedData := hex.EncodeToString(goodRaw), hex.EncodeToString(badPadRaw), hex.EncodeToString(tampered)
	macHex := func(key []byte, data string) string { return hex.EncodeToString(hmacOf(key, []byte(data))) }

	tests := []struct {
		name      string
		data, sig string
		wantCalls int
		wantOK    bool
	}{
		{"valid", goodData, macHex(k.HMAC, goodData), 1, true},
		{"tampered ciphertext, old MAC", tamperedData, macHex(k.HMAC, goodData), 0, false},
		{"good padding, MAC by another key", goodData, macHex(other.HMAC, goodData), 0, false},
		{"bad padding, MAC by another key", badPadData, macHex(other.HMAC, badPadData), 0, false},
		{"bad padding, no signature", badPadData, "", 0, false},
		{"bad padding, valid MAC", badPadData, macHex(k.HMAC, badPadData), 1, false},
	}
	var errs []error
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			count := func(key *[32]byte, iv, ct []byte) ([]byte, error) {
				calls++
				return decryptCBC(key, iv, ct)
			}
			ev, _, err := app.open(envelopeWith(t, tt.data), tt.sig, time.Now(), Options{}, count)
			if calls != tt.wantCalls {
				t.Errorf("decrypt reached %d times, want %d", calls, tt.wantCalls)
			}
			if tt.wantOK {
				if err != nil || string(ev.Payload) != testPayload {
					t.Fatalf("Open = %v", err)
				}
				return
			}
			if domain.KindOf(err) != domain.KindUnauthorized || domain.CodeOf(err) != CodeBadSignature {
				t.Fatalf("err = %v, want KindUnauthorized bad_signature", err)
			}
			errs = append(errs, err)
		})
	}
	// MAC failures and padding failures are indistinguishable to the caller.
	for _, err := range errs[1:] {
		if err.Error() != errs[0].Error() {
			t.Errorf("refusals differ: %q vs %q", err, errs[0])
		}
	}
}

// TestOpenKeyRotation: an app lists its current keys first, then previous ones. Webhooks
// sealed with any listed generation open; one sealed with an unlisted key does not.
func TestOpenKeyRotation(t *testing.T) {
	for _, m := range []Method{MethodCBC, MethodGCM} {
		t.Run(string(m), func(t *testing.T) {
			cur, old, gone := randomKeys(t), randomKeys(t), randomKeys(t)
			app := newTestApp(t, m)
			app.Keys = []Keys{cur, old}
			for _, tt := range []struct {
				name string
				keys Keys
				ok   bool
			}{{"current", cur, true}, {"previous", old, true}, {"retired", gone, false}} {
				body, sig, err := Seal(m, tt.keys, []byte(testPayload), "2026-03-01T10:00:00Z", nil)
				if err != nil {
					t.Fatal(err)
				}
				_, _, err = app.Open(body, sig, time.Now(), Options{})
				if tt.ok != (err == nil) || (err != nil && domain.KindOf(err) != domain.KindUnauthorized) {
					t.Errorf("%s keys: err = %v", tt.name, err)
				}
			}
		})
	}
}

// TestOpenCBCRotatedSecretOnly: an app that rotated its secret but kept its HMAC key has
// two generations whose MAC matches. The current secret fails to decrypt an old webhook,
// usually on its padding and one time in about 256 by unpadding garbage; either way the
// previous generation is tried and opens it.
func TestOpenCBCRotatedSecretOnly(t *testing.T) {
	old := randomKeys(t)
	body, sig := mustSeal(t, &App{Method: MethodCBC, Keys: []Keys{old}}, testPayload, "")
	raw, err := hex.DecodeString(mustEnvelope(t, body).Data)
	if err != nil {
		t.Fatal(err)
	}
	// Find a wrong secret under which the old ciphertext unpads, to exercise that case
	// for certain rather than by chance.
	var unpads Keys
	for i := 0; ; i++ {
		if i == 1<<16 {
			t.Fatal("no secret unpads the ciphertext in 65536 tries")
		}
		unpads = randomKeys(t)
		if _, err := decryptCBC(&unpads.Secret, raw[:16], raw[16:]); err == nil {
			break
		}
	}
	for _, tt := range []struct {
		name string
		cur  Keys
	}{{"bad padding", randomKeys(t)}, {"garbage that unpads", unpads}} {
		t.Run(tt.name, func(t *testing.T) {
			cur := tt.cur
			cur.HMAC = old.HMAC
			app := newTestApp(t, MethodCBC)
			app.Keys = []Keys{cur, old}
			calls := 0
			count := func(key *[32]byte, iv, ct []byte) ([]byte, error) {
				calls++
				return decryptCBC(key, iv, ct)
			}
			ev, _, err := app.open(body, sig, time.Now(), Options{}, count)
			if err != nil || string(ev.Payload) != testPayload {
				t.Fatalf("Open = %v", err)
			}
			if calls != 2 {
				t.Errorf("decrypt called %d times, want 2", calls)
			}
		})
	}
}

func TestUnpadPKCS7(t *testing.T) {
	block := func(tail ...byte) []byte {
		b := bytes.Repeat([]byte{'x'}, 2*aes.BlockSize)
		copy(b[len(b)-len(tail):], tail)
		return b
	}
	full := bytes.Repeat([]byte{16}, 16)
	tests := []struct {
		name    string
		in      []byte
		wantLen int // -1: refused
	}{
		{"pad 1", block(1), 31},
		{"pad 2", block(2, 2), 30},
		{"pad 16, whole block", append(bytes.Repeat([]byte{'x'}, 16), full...), 16},
		{"only padding", full, 0},
		{"pad 0", block(0), -1},
		{"pad 17", block(17), -1},
		{"pad 255", block(255), -1},
		{"pad 2, one byte wrong", block(3, 2), -1},
		{"pad 16, first byte wrong", append(bytes.Repeat([]byte{'x'}, 16), append([]byte{15}, full[1:]...)...), -1},
		{"empty", nil, -1},
		{"not whole blocks", []byte{1}, -1},
	}
	for _, tt := range tests {
		got, err := unpadPKCS7(tt.in)
		switch {
		case tt.wantLen < 0 && err == nil:
			t.Errorf("%s: accepted", tt.name)
		case tt.wantLen >= 0 && (err != nil || len(got) != tt.wantLen):
			t.Errorf("%s: len %d, err %v; want len %d", tt.name, len(got), err, tt.wantLen)
		}
	}
	// Every pad value from 1 to 16 round-trips through padPKCS7.
	for n := 0; n < 40; n++ {
		in := bytes.Repeat([]byte{'y'}, n)
		got, err := unpadPKCS7(padPKCS7(in))
		if err != nil || !bytes.Equal(got, in) {
			t.Errorf("pad/unpad of %d bytes: %q, %v", n, got, err)
		}
	}
}

// TestOpenHostileCiphertexts: malformed data, IVs, ciphertexts, tags and signatures are
// all refused as unauthorized with the one bad_signature error, with no panic.
func TestOpenHostileCiphertexts(t *testing.T) {
	cbc := newTestApp(t, MethodCBC)
	k := cbc.Keys[0]
	gcm := newTestApp(t, MethodGCM)
	g := gcm.Keys[0]
	other := randomKeys(t)

	goodBody, goodSig := mustSeal(t, cbc, testPayload, "")
	goodData := mustEnvelope(t, goodBody).Data
	flipped := []byte(goodSig) // Seal signs the data string in hex
	if flipped[10] == '0' {
		flipped[10] = '1'
	} else {
		flipped[10] = '0'
	}

	bigPlain := bytes.Repeat([]byte{'z'}, 2<<20)
	bigPlain[len(bigPlain)-1] = 0 // never valid padding
	bigData := hex.EncodeToString(cbcEncryptRaw(t, k.Secret, bigPlain))

	// Sealed under another secret with the right HMAC key. Decrypted under the right
	// secret, such a ciphertext unpads by chance about one time in 256 (the plaintext is
	// then garbage, refused as malformed); the IV is drawn from a seeded stream until it
	// does not, so the case is the same on every run.
	wrongSecret := Keys{Secret: other.Secret, HMAC: k.HMAC}
	var wrongSecretBody []byte
	var wrongSecretSig string
	for seed := uint64(1); ; seed++ {
		var err error
		wrongSecretBody, wrongSecretSig, err = Seal(MethodCBC, wrongSecret, []byte(testPayload), "",
			mathrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := hex.DecodeString(mustEnvelope(t, wrongSecretBody).Data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decryptCBC(&k.Secret, raw[:aes.BlockSize], raw[aes.BlockSize:]); err != nil {
			break
		}
	}
	// Sealed with the right secret but a MAC by another HMAC key.
	wrongMACBody, wrongMACSig, err := Seal(MethodCBC, Keys{Secret: k.Secret, HMAC: other.HMAC}, []byte(testPayload), "", nil)
	if err != nil {
		t.Fatal(err)
	}

	gcmBody, gcmSig := mustSeal(t, gcm, testPayload, "")
	gcmData := mustEnvelope(t, gcmBody).Data
	gcmTag, _ := hex.DecodeString(gcmSig)
	badTag := bytes.Clone(gcmTag)
	badTag[0] ^= 0x80
	gcmOtherBody, gcmOtherSig, err := Seal(MethodGCM, other, []byte(testPayload), "", nil)
	if err != nil {
		t.Fatal(err)
	}

	type webhook struct {
		body []byte
		sig  string
	}
	signed := func(data string) webhook { b, s := signedCBC(t, k, data); return webhook{b, s} }
	tests := []struct {
		name string
		app  *App
		w    webhook
	}{
		// CBC, authentication.
		{"cbc missing signature", cbc, webhook{goodBody, ""}},
		{"cbc blank signature", cbc, webhook{goodBody, "   "}},
		{"cbc signature garbage", cbc, webhook{goodBody, "zzzz not a signature"}},
		{"cbc signature 63 hex", cbc, webhook{goodBody, goodSig[:63]}},
		{"cbc signature 66 hex", cbc, webhook{goodBody, goodSig + "ab"}},
		{"cbc signature truncated MAC", cbc, webhook{goodBody, goodSig[:32]}},
		{"cbc signature base64 of 31 bytes", cbc, webhook{goodBody, base64.StdEncoding.EncodeToString(hmacOf(k.HMAC, []byte(goodData))[:31])}},
		{"cbc signature one hex digit changed", cbc, webhook{goodBody, string(flipped)}},
		{"cbc signature with NUL", cbc, webhook{goodBody, goodSig[:63] + "\x00"}},
		{"cbc MAC by another HMAC key", cbc, webhook{wrongMACBody, wrongMACSig}},
		{"cbc 2 MiB data, bad MAC", cbc, webhook{envelopeWith(t, bigData), goodSig}},
		// CBC, MAC valid, decryption must fail.
		{"cbc 2 MiB data, bad padding", cbc, signed(bigData)},
		{"cbc data neither hex nor base64", cbc, signed("!!!! not data !!!!")},
		{"cbc data odd-length hex", cbc, signed(goodData[:len(goodData)-1])},
		{"cbc data short IV", cbc, signed(hex.EncodeToString(make([]byte, 8)))},
		{"cbc data IV only", cbc, signed(hex.EncodeToString(make([]byte, 16)))},
		{"cbc data ciphertext not whole blocks", cbc, signed(goodData[:len(goodData)-8])},
		{"cbc data one block short", cbc, signed(goodData[:len(goodData)-32])},
		{"cbc data base64 short", cbc, signed(base64.StdEncoding.EncodeToString(make([]byte, 20)))},
		{"cbc wrong secret key", cbc, webhook{wrongSecretBody, wrongSecretSig}},
		{"cbc GCM webhook", cbc, webhook{gcmBody, gcmSig}},
		// GCM.
		{"gcm missing tag", gcm, webhook{gcmBody, ""}},
		{"gcm tag garbage", gcm, webhook{gcmBody, "not-a-tag"}},
		{"gcm tag 15 bytes", gcm, webhook{gcmBody, hex.EncodeToString(gcmTag[:15])}},
		{"gcm tag 17 bytes", gcm, webhook{gcmBody, hex.EncodeToString(append(bytes.Clone(gcmTag), 0))}},
		{"gcm tag flipped bit", gcm, webhook{gcmBody, hex.EncodeToString(badTag)}},
		{"gcm tag base64 flipped bit", gcm, webhook{gcmBody, base64.StdEncoding.EncodeToString(badTag)}},
		{"gcm data not hex", gcm, webhook{envelopeWith(t, base64.StdEncoding.EncodeToString([]byte(gcmData))), gcmSig}},
		{"gcm data odd-length hex", gcm, webhook{envelopeWith(t, gcmData[:len(gcmData)-1]), gcmSig}},
		{"gcm data shorter than an IV", gcm, webhook{envelopeWith(t, gcmData[:16]), gcmSig}},
		{"gcm data IV only", gcm, webhook{envelopeWith(t, gcmData[:24]), gcmSig}},
		{"gcm data truncated", gcm, webhook{envelopeWith(t, gcmData[:len(gcmData)-2]), gcmSig}},
		{"gcm 2 MiB data", gcm, webhook{envelopeWith(t, bigData), gcmSig}},
		{"gcm wrong key", gcm, webhook{gcmOtherBody, gcmOtherSig}},
		{"gcm CBC webhook", gcm, webhook{goodBody, goodSig}},
	}
	secrets := []string{hex.EncodeToString(k.Secret[:]), hex.EncodeToString(k.HMAC), hex.EncodeToString(g.Secret[:]), goodSig, gcmSig}
	var first string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.app.Open(tt.w.body, tt.w.sig, time.Now(), Options{KeepRaw: true})
			if domain.KindOf(err) != domain.KindUnauthorized || domain.CodeOf(err) != CodeBadSignature {
				t.Fatalf("err = %v (code %q), want KindUnauthorized bad_signature", err, domain.CodeOf(err))
			}
			assertSafeMessage(t, err, secrets...)
			if first == "" {
				first = err.Error()
			} else if err.Error() != first {
				t.Errorf("message %q differs from %q", err, first)
			}
		})
	}
}

func mustEnvelope(tb testing.TB, body []byte) Envelope {
	tb.Helper()
	env, err := ParseEnvelope(body)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

// TestDecryptAlone: Decrypt, the step Open and the Open API parser share, opens the data
// string of every valid vector to its plaintext, refuses the vectors' signature and
// decryption failures with the one bad_signature error, and refuses an app that fails
// Validate as a configuration bug.
func TestDecryptAlone(t *testing.T) {
	vf := loadVectors(t)
	opened := 0
	for _, c := range vf.Cases {
		if !c.Expect.OK && c.Expect.Reason != "signature" && c.Expect.Reason != "decrypt" {
			continue // envelope and payload refusals are Open's, not Decrypt's
		}
		t.Run(c.Name, func(t *testing.T) {
			env, err := ParseEnvelope([]byte(c.Body))
			if err != nil {
				t.Fatalf("ParseEnvelope: %v", err)
			}
			pt, err := vectorApp(t, vf, c.Method).Decrypt([]byte(c.Body), env.Data, c.signature())
			if !c.Expect.OK {
				if domain.KindOf(err) != domain.KindUnauthorized || domain.CodeOf(err) != CodeBadSignature {
					t.Fatalf("Decrypt = %q, %v; want %s", pt, err, CodeBadSignature)
				}
				return
			}
			if err != nil || string(pt) != c.Expect.Plaintext {
				t.Fatalf("Decrypt = %q, %v; want %s", pt, err, c.Expect.Plaintext)
			}
			opened++
		})
	}
	if opened == 0 {
		t.Error("no valid vector was decrypted")
	}

	broken := newTestApp(t, MethodCBC)
	broken.Keys = nil
	if _, err := broken.Decrypt([]byte(`{}`), "00", ""); domain.KindOf(err) != domain.KindInternal || domain.CodeOf(err) != CodeInvalidConfig {
		t.Errorf("Decrypt with an invalid app = %v, want KindInternal, %s", err, CodeInvalidConfig)
	}
}
