// Scrub: no page of the file that a commit freed keeps what it held (DESIGN.md section
// 15, erasure leaves no link). bbolt copies a page on write and leaves the old copy, as
// it was, on its freelist until a later commit reuses it: after an erasure, the pages
// that held the applicant's blind index (its state, its lookup entry, and every earlier
// copy of them) may still hold it in the file.

package projection

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

// bucketScrub holds the junk a scrub writes over the free pages; it is deleted in the
// same scrub, and a scrub that finds one left behind (a crash in between) deletes it.
var bucketScrub = []byte("scrub")

// scrubValue is the size of one junk value: leaves of at most four of them, or of the
// two or three bbolt puts in a leaf it splits, fit one page of 4 KiB, so every leaf takes
// one free page (a leaf of two pages would need two adjacent free ones).
const scrubValue = 900

// scrubRounds bounds the rounds of junk. Each round takes nine tenths of the free pages
// it finds (its branch pages take some more), so the junk never takes many more pages
// than were free and the file does not grow scrub after scrub; a handful of rounds take
// them all, more means something else is wrong.
const scrubRounds = 12

// ScrubStats says what a Scrub did.
type ScrubStats struct {
	FreePages  int           // free pages before the scrub, all overwritten
	JunkPages  int           // pages the junk took (free ones first, then new ones)
	FileGrowth int64         // bytes the file's pages grew by: junk beyond the free pages
	Took       time.Duration // the scrub's time, commits (and their fsyncs) included
}

// Scrub overwrites every free page of the file: it writes junk, in one transaction, until
// bbolt has reused each free page for it, then deletes the junk, whose pages become the
// free ones. It costs the free pages' size in writes (not the file's, as a compaction
// would) and grows the file by little more than the junk's branch pages.
//
// A page freed by a commit stays pending (not reusable) while a read transaction that
// began before that commit is open; Scrub waits up to wait for such readers (the API's
// reads last milliseconds) and fails with KindUnavailable if they are still there: the
// caller scrubs again later. Errors: KindConflict on a read-only projection, and those
// of Apply.
func (p *Projection) Scrub(wait time.Duration) (ScrubStats, error) {
	const op = "projection.Projection.Scrub"
	if p.readOnly {
		return ScrubStats{}, domain.E(op, domain.KindConflict, "projection opened read-only")
	}
	start := time.Now()
	if err := p.update(op, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketScrub) != nil {
			return tx.DeleteBucket(bucketScrub)
		}
		return nil
	}); err != nil {
		return ScrubStats{}, err
	}
	// A write transaction begun and rolled back releases the pages no reader holds any
	// more and writes nothing; its stats then say how many are free, and how many open
	// readers still hold.
	var stats bolt.Stats
	for deadline := start.Add(wait); ; {
		var err error
		if stats, err = p.freeStats(op); err != nil {
			return ScrubStats{}, err
		}
		if stats.PendingPageN == 0 {
			break
		}
		if time.Now().After(deadline) {
			return ScrubStats{}, domain.E(op, domain.KindUnavailable, fmt.Sprintf(
				"%d freed pages are held by open reads; not scrubbed", stats.PendingPageN))
		}
		time.Sleep(5 * time.Millisecond)
	}
	res := ScrubStats{FreePages: stats.FreePageN}
	before, err := p.highWater(op)
	if err != nil {
		return res, err
	}
	junk := make([]byte, scrubValue)
	for i := range junk {
		junk[i] = 0x5a
	}
	pages := stats.TxStats.GetPageCount()
	var n uint64
	for round := 0; stats.FreePageN > 0; round++ {
		if round == scrubRounds {
			return res, domain.E(op, domain.KindInternal, fmt.Sprintf(
				"%d pages still free after %d rounds of junk", stats.FreePageN, scrubRounds))
		}
		// Two values a leaf at the least: leaves for nine tenths of the free pages, and a
		// few more, so that the last rounds, over a few pages, take them all.
		values := 2*stats.FreePageN*9/10 + 4
		err := p.update(op, func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketScrub)
			if err != nil {
				return err
			}
			var key [8]byte
			for range values {
				n++
				binary.BigEndian.PutUint64(key[:], n)
				if err := b.Put(key[:], junk); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return res, err
		}
		// Right after the commit: the pages the junk's own commit freed are pending, and
		// hold only what the file still holds live, nothing that was freed before.
		stats = p.db.Stats()
	}
	res.JunkPages = int(stats.TxStats.GetPageCount() - pages)
	if err := p.update(op, func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketScrub) }); err != nil {
		return res, err
	}
	after, err := p.highWater(op)
	if err != nil {
		return res, err
	}
	res.FileGrowth = after - before
	res.Took = time.Since(start)
	return res, nil
}

// freeStats begins a write transaction, which releases the freed pages no open read
// holds, and rolls it back; bbolt's stats then count the free and the pending pages.
func (p *Projection) freeStats(op string) (stats bolt.Stats, err error) {
	if err := p.usable(op); err != nil {
		return stats, err
	}
	defer p.recoverCorrupt(op, &err)
	tx, err := p.db.Begin(true)
	if err != nil {
		return stats, p.txErr(op, err)
	}
	if err := tx.Rollback(); err != nil {
		return stats, p.txErr(op, err)
	}
	return p.db.Stats(), nil
}

// highWater is the size the file's pages take (bbolt grows the file itself in steps).
func (p *Projection) highWater(op string) (size int64, err error) {
	err = p.view(op, func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	})
	return size, err
}
