package sumsub

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"

	"github.com/kycstate/kycstate/domain"
)

// digestAlg is one algorithm Sumsub may name in X-Payload-Digest-Alg.
type digestAlg struct {
	name string
	size int // digest bytes
	new  func() hash.Hash
}

func digestAlgs() []digestAlg {
	return []digestAlg{
		{AlgSHA1, sha1.Size, sha1.New},
		{AlgSHA256, sha256.Size, sha256.New},
		{AlgSHA512, sha512.Size, sha512.New},
	}
}

// verify reports whether digest (hex, either case) is the HMAC of body under one of a's
// secrets with the algorithm alg names, or, when alg is empty, the algorithm whose
// length the digest has. Every secret is tried whichever matches, and each comparison is
// constant-time, so the time taken says nothing about which secret or how much of the
// digest was right. HMAC-SHA1 is accepted because Sumsub still sends it; as a MAC it
// stays unforgeable without the secret.
func (a *App) verify(body []byte, digest, alg string) bool {
	if digest == "" || len(digest) > 2*sha512.Size {
		return false
	}
	want, err := hex.DecodeString(digest)
	if err != nil {
		return false
	}
	var algo *digestAlg
	for _, d := range digestAlgs() {
		if (alg == "" && len(want) == d.size) || alg == d.name {
			algo = &d
			break
		}
	}
	if algo == nil || len(want) != algo.size {
		return false
	}
	ok := 0
	for _, s := range a.Secrets {
		m := hmac.New(algo.new, s)
		m.Write(body)
		if hmac.Equal(m.Sum(nil), want) {
			ok = 1
		}
	}
	return ok == 1
}

// errBadSignature is every digest failure, with one text whatever failed.
func errBadSignature() error {
	return fail("sumsub.Open", domain.KindUnauthorized, CodeBadSignature,
		"X-Payload-Digest is missing or matches no configured secret")
}
