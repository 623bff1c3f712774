// The sealed form of a snapshot: a stream of AES-256-GCM chunks under the snapshot's own
// key, so that a projection of any size is sealed and opened in constant memory.
//
//	"KYCSNAP1"  then, per chunk:  length (uint32, big-endian) || sealed chunk
//
// Chunk i (from 0) holds at most sealChunk bytes and is sealed with the nonce
// i (8 bytes, big-endian) || 0 0 0 || last (1 for the final chunk, else 0), and with the
// snapshot's name as additional data. A key seals one snapshot only, so no nonce repeats.
// The counter makes reordered or repeated chunks fail; the final flag makes a stream cut
// at a chunk boundary fail (its new last chunk was sealed as not last), as do bytes after
// the final chunk; the name makes a snapshot's object copied under another name fail.

package eventlog

import (
	"bufio"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/kycstate/kycstate/domain"
)

const (
	sealMagic = "KYCSNAP1"
	sealChunk = 64 << 10
)

// ErrSnapshotDamaged: a snapshot's sealed bytes do not open: cut short, reordered,
// altered, or sealed for another name.
var ErrSnapshotDamaged = errors.New("snapshot does not open: its sealed bytes were cut short, reordered or altered")

func snapshotAAD(name string) []byte { return []byte("kycstate.snapshot.v1\x00" + name) }

func snapshotNonce(a cipher.AEAD, i uint64, last bool) []byte {
	n := make([]byte, a.NonceSize())
	binary.BigEndian.PutUint64(n, i)
	if last {
		n[len(n)-1] = 1
	}
	return n
}

type sealWriter struct {
	aead   cipher.AEAD
	aad    []byte
	w      io.Writer
	buf    []byte // the chunk being filled
	out    []byte
	i      uint64
	header bool
	err    error
	closed bool
}

func newSealWriter(a cipher.AEAD, name string, w io.Writer) *sealWriter {
	return &sealWriter{aead: a, aad: snapshotAAD(name), w: w, buf: make([]byte, 0, sealChunk),
		out: make([]byte, 4, 4+sealChunk+a.Overhead())}
}

// Write fills the chunk under way, sealing it once it is full and more follows: only
// Close knows which chunk is the last.
func (s *sealWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.closed {
		return 0, errors.New("snapshot sealer closed")
	}
	done := 0
	for done < len(p) {
		if len(s.buf) == sealChunk {
			if err := s.flush(false); err != nil {
				return done, err
			}
		}
		n := copy(s.buf[len(s.buf):sealChunk], p[done:])
		s.buf = s.buf[:len(s.buf)+n]
		done += n
	}
	return done, nil
}

// Close seals the last chunk. It does not close the writer underneath.
func (s *sealWriter) Close() error {
	if s.closed || s.err != nil {
		return s.err
	}
	s.closed = true
	return s.flush(true)
}

func (s *sealWriter) flush(last bool) error {
	if !s.header {
		if _, err := io.WriteString(s.w, sealMagic); err != nil {
			s.err = err
			return err
		}
		s.header = true
	}
	out := s.aead.Seal(s.out[:4], snapshotNonce(s.aead, s.i, last), s.buf, s.aad)
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	if _, err := s.w.Write(out); err != nil {
		s.err = err
		return err
	}
	s.i++
	s.buf = s.buf[:0]
	return nil
}

type openReader struct {
	aead  cipher.AEAD
	aad   []byte
	r     *bufio.Reader
	plain []byte // opened, not yet read
	ct    []byte
	i     uint64
	start bool
	done  bool
	err   error
}

func newOpenReader(a cipher.AEAD, name string, r io.Reader) *openReader {
	return &openReader{aead: a, aad: snapshotAAD(name), r: bufio.NewReaderSize(r, 64<<10),
		ct: make([]byte, sealChunk+a.Overhead())}
}

func (o *openReader) Read(p []byte) (int, error) {
	for len(o.plain) == 0 {
		if o.err != nil {
			return 0, o.err
		}
		if o.done {
			return 0, io.EOF
		}
		o.err = o.next()
	}
	n := copy(p, o.plain)
	o.plain = o.plain[n:]
	return n, nil
}

// next opens the next chunk. A read error of the stream underneath (its own digest
// check, a lost connection) is returned as it is; anything that does not open is damage.
func (o *openReader) next() error {
	const op = "eventlog.Keyring.OpenSnapshot"
	damaged := func(why string) error {
		return domain.E(op, domain.KindInternal, fmt.Errorf("%w (%s)", ErrSnapshotDamaged, why))
	}
	readFull := func(b []byte, what string) error {
		_, err := io.ReadFull(o.r, b)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return damaged("it ends inside " + what)
		}
		return err
	}
	if !o.start {
		magic := make([]byte, len(sealMagic))
		if err := readFull(magic, "its header"); err != nil {
			return err
		}
		if string(magic) != sealMagic {
			return damaged("not a sealed snapshot")
		}
		o.start = true
	}
	var lenb [4]byte
	if err := readFull(lenb[:], "a chunk's length"); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint32(lenb[:]))
	if n < o.aead.Overhead() || n > len(o.ct) {
		return damaged(fmt.Sprintf("a chunk of %d bytes", n))
	}
	if err := readFull(o.ct[:n], "a chunk"); err != nil {
		return err
	}
	_, err := o.r.Peek(1)
	last := errors.Is(err, io.EOF)
	if err != nil && !last {
		return err
	}
	plain, err := o.aead.Open(o.ct[:0], snapshotNonce(o.aead, o.i, last), o.ct[:n], o.aad)
	if err != nil {
		return damaged(fmt.Sprintf("chunk %d", o.i))
	}
	o.i++
	o.plain, o.done = plain, last
	return nil
}
