// Package jsonscan is what kycstate's hand-written JSON code shares: word-at-a-time
// tests that let a scanner pass over the inside of long strings (hex or base64 blobs,
// mostly) eight bytes at a time; AppendString, which quotes a string byte for byte as
// encoding/json does; and Object, which splits one untrusted JSON object into its members
// (the provider adapters read webhooks with it).
//
// Each word test is exact: it says whether some byte of the word is of a kind, never
// which one, so a scanner that finds a word that fails goes on byte by byte, and a word
// that passes really holds no byte the scanner must stop at (the tests check every byte
// value at every place). An encoder that quotes with AppendString writes what json.Marshal
// would, so a hand-written encoder and the standard one never disagree on the wire.
// Object refuses rather than guesses: a body nested too deep, not one object, or naming a
// known member twice is an error, never read one way here and another way by an
// auditor's tool. It is pure: no state, nothing beyond the standard library.
package jsonscan

import "encoding/binary"

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// Word returns the eight bytes of b at i as one word; i+8 must not pass len(b).
func Word(b []byte, i int) uint64 { return binary.LittleEndian.Uint64(b[i:]) }

// WordString is Word for a string.
func WordString(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// hasByte reports whether some byte of w is c (the zero-byte test on w^c).
func hasByte(w uint64, c byte) bool {
	x := w ^ (ones * uint64(c))
	return (x-ones)&^x&highs != 0
}

// hasBelow reports whether some byte of w is below n; exact for n <= 128.
func hasBelow(w uint64, n byte) bool { return (w-ones*uint64(n))&^w&highs != 0 }

// Plain reports whether every byte of w stands for itself inside a JSON string: none is
// a control character (below 0x20), a quote or a backslash.
func Plain(w uint64) bool { return !hasBelow(w, 0x20) && !hasByte(w, '"') && !hasByte(w, '\\') }

// PlainASCII reports whether every byte of w is ASCII and stands for itself inside a
// JSON string: what an encoder may copy without a look at UTF-8.
func PlainASCII(w uint64) bool { return w&highs == 0 && Plain(w) }

// Quiet reports whether no byte of w is a quote or a backslash: what a scanner that
// only looks for a string's end must stop at.
func Quiet(w uint64) bool { return !hasByte(w, '"') && !hasByte(w, '\\') }
