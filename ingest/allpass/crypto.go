package allpass

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// gcmTagLen is the length of the GCM authentication tag Allpass sends as the signature.
const gcmTagLen = 16

// errDecrypt is the internal reason a MAC-verified ciphertext did not decrypt (bad IV or
// length, bad padding). It never leaves the package: Open turns it into errBadSignature.
var errDecrypt = errors.New("decrypt failed")

// cbcDecrypter decrypts and unpads one AES-256-CBC ciphertext. decryptCBC is the only
// production implementation; the indirection lets a test count how many calls reach it.
type cbcDecrypter func(key *[32]byte, iv, ct []byte) ([]byte, error)

// openCBC authenticates data and then decrypts it with the first key generation whose
// HMAC key verifies the signature and whose secret decrypts it. It returns the plaintext
// and the bytes the MAC matched (the content id is made of them, DESIGN.md section 15):
// the data string, or the whole body when the MAC covers the body.
//
// The signature is HMAC-SHA256 over the data string or over the raw body, encoded hex or
// base64 (DESIGN.md section 2). The encoding is decided by the header's form alone (64
// characters of hex, or base64 of 32 bytes), so one decoded MAC is compared, in constant
// time, with both computed MACs; which one matched is only looked at once one did.
// Nothing is decrypted until a MAC matched. A generation whose MAC matches but whose
// secret does not decrypt (an app that rotated only the secret) falls through to the next.
func openCBC(gens []Keys, body []byte, data, signature string, dec cbcDecrypter) (plaintext, authenticated []byte, err error) {
	want, ok := decodeFixed(strings.TrimSpace(signature), sha256.Size)
	if !ok {
		return nil, nil, errBadSignature()
	}
	var raw, fallback, fallbackAuth []byte
	for i := range gens {
		k := &gens[i]
		overData, overBody := macMatch(k.HMAC, want, data, body)
		if !overData && !overBody {
			continue
		}
		auth := body
		if overData {
			auth = []byte(data)
		}
		if raw == nil {
			if raw, ok = decodeCBCData(data); !ok {
				return nil, nil, errBadSignature()
			}
		}
		pt, err := dec(&k.Secret, raw[:aes.BlockSize], raw[aes.BlockSize:])
		if err != nil {
			continue
		}
		// A wrong secret unpads by chance one time in about 256. When later generations
		// remain, plaintext that is not a JSON object is held back while they are tried.
		if i == len(gens)-1 || isJSONObject(pt) {
			return pt, auth, nil
		}
		if fallback == nil {
			fallback, fallbackAuth = pt, auth
		}
	}
	if fallback != nil {
		return fallback, fallbackAuth, nil
	}
	return nil, nil, errBadSignature()
}

// isJSONObject reports whether b is one valid UTF-8 JSON object.
func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && utf8.Valid(b) && json.Valid(b)
}

// macMatch reports whether want is HMAC-SHA256(key) of data and whether it is that of
// body. Both MACs are always computed and both compared.
func macMatch(key, want []byte, data string, body []byte) (overData, overBody bool) {
	m := hmac.New(sha256.New, key)
	io.WriteString(m, data)
	macData := m.Sum(nil)
	m.Reset()
	m.Write(body)
	macBody := m.Sum(nil)
	d, b := subtle.ConstantTimeCompare(macData, want), subtle.ConstantTimeCompare(macBody, want)
	return d == 1, b == 1
}

// decodeCBCData decodes hex(IV) + hex(ciphertext), or, when data is not hex,
// base64(IV || ciphertext). It needs at least a whole IV; decryptCBC checks the rest.
func decodeCBCData(data string) ([]byte, bool) {
	raw, err := hex.DecodeString(data)
	if err != nil {
		var ok bool
		if raw, ok = decodeBase64(data); !ok {
			return nil, false
		}
	}
	return raw, len(raw) >= aes.BlockSize
}

// decryptCBC decrypts ct with AES-256-CBC and removes its PKCS#7 padding.
func decryptCBC(key *[32]byte, iv, ct []byte) ([]byte, error) {
	if len(iv) != aes.BlockSize || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, errDecrypt
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, errDecrypt
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	return unpadPKCS7(pt)
}

// unpadPKCS7 checks and strips PKCS#7 padding from a whole number of blocks. It reads the
// last block's 16 bytes whatever the pad length and decides with one branch at the end,
// so its time does not depend on where the padding is wrong. (The MAC was verified
// before, so this is defence in depth, not the padding-oracle defence.)
func unpadPKCS7(b []byte) ([]byte, error) {
	n := len(b)
	if n == 0 || n%aes.BlockSize != 0 {
		return nil, errDecrypt
	}
	pad := int(b[n-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, aes.BlockSize)
	for i := 0; i < aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i+1, pad)
		same := subtle.ConstantTimeByteEq(b[n-1-i], byte(pad))
		good &= subtle.ConstantTimeSelect(inPad, same, 1)
	}
	if good != 1 {
		return nil, errDecrypt
	}
	return b[:n-pad], nil
}

// openGCM decrypts data = hex(IV) + hex(ciphertext) with AES-256-GCM and the tag from the
// signature header (16 bytes, hex or base64), no AAD. The IV is 12 or 16 bytes; which one
// is not stated, so both are tried and the tag decides (GCM authenticates before it
// returns any plaintext). Key generations are tried current first.
//
// It returns the plaintext and the bytes the tag authenticated, IV and ciphertext as
// decoded: not the data string, whose hex digits may be written in either case without
// changing what the tag covers, so a replay with re-cased hex keeps its content id.
func openGCM(gens []Keys, data, signature string) (plaintext, authenticated []byte, err error) {
	tag, ok := decodeFixed(strings.TrimSpace(signature), gcmTagLen)
	if !ok {
		return nil, nil, errBadSignature()
	}
	raw, err := hex.DecodeString(data)
	if err != nil {
		return nil, nil, errBadSignature()
	}
	for i := range gens {
		block, err := aes.NewCipher(gens[i].Secret[:])
		if err != nil {
			return nil, nil, errBadSignature()
		}
		for _, ivLen := range [...]int{12, 16} {
			if len(raw) < ivLen {
				continue
			}
			aead, err := cipher.NewGCMWithNonceSize(block, ivLen)
			if err != nil {
				continue
			}
			sealed := make([]byte, 0, len(raw)-ivLen+gcmTagLen)
			sealed = append(append(sealed, raw[ivLen:]...), tag...)
			if pt, err := aead.Open(sealed[:0], raw[:ivLen], sealed, nil); err == nil {
				return pt, raw, nil
			}
		}
	}
	return nil, nil, errBadSignature()
}
