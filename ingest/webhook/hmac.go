package webhook

import (
	"crypto/hmac"
	"encoding/hex"
	"hash"
)

// Sum is the HMAC (newHash) under secret of msg, its parts written one after the other,
// so a signed message made of pieces ("<t>.<body>") needs no copy of the body.
func Sum(newHash func() hash.Hash, secret []byte, msg ...[]byte) []byte {
	m := hmac.New(newHash, secret)
	for _, p := range msg {
		m.Write(p)
	}
	return m.Sum(nil)
}

// SumHex is Sum in lower-case hex, as every provider sends its signatures.
func SumHex(newHash func() hash.Hash, secret []byte, msg ...[]byte) string {
	return hex.EncodeToString(Sum(newHash, secret, msg...))
}

// Verify reports whether one of sigs is the HMAC (newHash) of msg under one of secrets.
// Every secret is tried against every signature whichever matches, each compare in
// constant time, so the time taken says nothing about which secret or signature matched
// or how much of one was right.
func Verify(newHash func() hash.Hash, secrets, sigs [][]byte, msg ...[]byte) bool {
	ok := false
	for _, s := range secrets {
		got := Sum(newHash, s, msg...)
		for _, sig := range sigs {
			ok = hmac.Equal(got, sig) || ok
		}
	}
	return ok
}

// VerifyHex is Verify of one signature given in hex, either case. A signature that is
// not hex, or not as long as the hash, matches nothing (and is not decoded when its
// length is wrong, however long it is).
func VerifyHex(newHash func() hash.Hash, secrets [][]byte, sigHex string, msg ...[]byte) bool {
	if len(sigHex) != 2*newHash().Size() {
		return false
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil {
		return false
	}
	return Verify(newHash, secrets, [][]byte{sig}, msg...)
}
