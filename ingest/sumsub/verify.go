package sumsub

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"

	"github.com/kycstate/kycstate/ingest/webhook"
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
// length the digest has; webhook.VerifyHex tries every secret in constant time.
// HMAC-SHA1 is accepted because Sumsub still sends it; as a MAC it stays unforgeable
// without the secret.
func (a *App) verify(body []byte, digest, alg string) bool {
	for _, d := range digestAlgs() {
		if (alg == "" && len(digest) == 2*d.size) || alg == d.name {
			return webhook.VerifyHex(d.new, a.Secrets, digest, body)
		}
	}
	return false
}
