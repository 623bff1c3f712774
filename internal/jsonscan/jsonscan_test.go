package jsonscan

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestWords checks Plain and Quiet against byte-by-byte tests: every byte value at every
// place among fillers of each kind, and a million random words.
func TestWords(t *testing.T) {
	plain := func(c byte) bool { return c >= 0x20 && c != '"' && c != '\\' }
	quiet := func(c byte) bool { return c != '"' && c != '\\' }
	ascii := func(c byte) bool { return plain(c) && c < 0x80 }
	check := func(w [8]byte) {
		wantPlain, wantQuiet, wantASCII := true, true, true
		for _, c := range w {
			wantPlain = wantPlain && plain(c)
			wantQuiet = wantQuiet && quiet(c)
			wantASCII = wantASCII && ascii(c)
		}
		x := Word(w[:], 0)
		if y := WordString(string(w[:]), 0); y != x {
			t.Fatalf("WordString(%q) = %#x, Word %#x", w[:], y, x)
		}
		if got := PlainASCII(x); got != wantASCII {
			t.Fatalf("PlainASCII(%q) = %v, want %v", w[:], got, wantASCII)
		}
		if got := Plain(x); got != wantPlain {
			t.Fatalf("Plain(%q) = %v, want %v", w[:], got, wantPlain)
		}
		if got := Quiet(x); got != wantQuiet {
			t.Fatalf("Quiet(%q) = %v, want %v", w[:], got, wantQuiet)
		}
	}
	for _, fill := range []byte{'A', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xff, '"' + 1, '\\' - 1, '\\' + 1} {
		for c := range 256 {
			for at := range 8 {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[at] = byte(c)
				check(w)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		check(w)
	}
}
