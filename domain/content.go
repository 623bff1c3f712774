package domain

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// ContentID identifies an event by the bytes its provider's signature authenticated
// (DESIGN.md section 15), as NewContentID makes it. A delivery that changes only what no
// signature covers (Allpass's envelope `time`) has the content id of the original, so
// the fold can tell a replay from a new event whatever time it claims.
type ContentID string

// NewContentID is lower-case hex of SHA-256 over the provider's name, the app (its
// lower-case appKey for Allpass) and the authenticated bytes, each entering the hash as
// an 8-byte big-endian length followed by its bytes: no two different triples hash the
// same input, and no provider's id can equal another's.
func NewContentID(provider, app string, authenticated []byte) ContentID {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(provider))
	field([]byte(app))
	field(authenticated)
	var sum [sha256.Size]byte
	return ContentID(hex.EncodeToString(h.Sum(sum[:0])))
}
