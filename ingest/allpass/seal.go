package allpass

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
)

// Seal makes a webhook exactly as Allpass sends it, for the simulator and for tests:
// the body {"status":true,"statusCode":200,"data":"...","time":"..."} (time left out when
// envelopeTime is empty) and the x-allpass-signature value.
//
//   - CBC: data = hex(16-byte IV) + hex(AES-256-CBC ciphertext, PKCS#7 padded); the
//     signature is hex(HMAC-SHA256(keys.HMAC, data string)).
//   - GCM: data = hex(12-byte IV) + hex(ciphertext); the signature is hex(16-byte tag).
//
// IVs are read from rnd (crypto/rand when nil). Only Keys.Secret and, for CBC,
// Keys.HMAC are used. Seal does not check that plaintext is a valid payload.
func Seal(method Method, keys Keys, plaintext []byte, envelopeTime string, rnd io.Reader) (body []byte, signature string, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	block, err := aes.NewCipher(keys.Secret[:])
	if err != nil {
		return nil, "", err
	}
	var data string
	switch method {
	case MethodCBC:
		if len(keys.HMAC) == 0 {
			return nil, "", fmt.Errorf("allpass.Seal: %s needs an HMAC key", method)
		}
		iv := make([]byte, aes.BlockSize)
		if _, err := io.ReadFull(rnd, iv); err != nil {
			return nil, "", fmt.Errorf("allpass.Seal: reading IV: %w", err)
		}
		ct := padPKCS7(plaintext)
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, ct)
		data = hex.EncodeToString(iv) + hex.EncodeToString(ct)
		m := hmac.New(sha256.New, keys.HMAC)
		io.WriteString(m, data)
		signature = hex.EncodeToString(m.Sum(nil))
	case MethodGCM:
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, "", err
		}
		iv := make([]byte, aead.NonceSize())
		if _, err := io.ReadFull(rnd, iv); err != nil {
			return nil, "", fmt.Errorf("allpass.Seal: reading IV: %w", err)
		}
		sealed := aead.Seal(nil, iv, plaintext, nil)
		ct, tag := sealed[:len(sealed)-aead.Overhead()], sealed[len(sealed)-aead.Overhead():]
		data = hex.EncodeToString(iv) + hex.EncodeToString(ct)
		signature = hex.EncodeToString(tag)
	default:
		return nil, "", fmt.Errorf("allpass.Seal: unknown method %q", method)
	}
	body, err = json.Marshal(struct {
		Status     bool   `json:"status"`
		StatusCode int    `json:"statusCode"`
		Data       string `json:"data"`
		Time       string `json:"time,omitempty"`
	}{true, 200, data, envelopeTime})
	if err != nil {
		return nil, "", err
	}
	return body, signature, nil
}

// padPKCS7 returns a copy of b padded to a whole number of AES blocks.
func padPKCS7(b []byte) []byte {
	n := aes.BlockSize - len(b)%aes.BlockSize
	out := make([]byte, len(b)+n)
	copy(out, b)
	for i := len(b); i < len(out); i++ {
		out[i] = byte(n)
	}
	return out
}
