package erase

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/eventlog"
	"go.uber.org/zap"
)

// The erasure ledger (DESIGN.md section 14): one JSON line per erasure in the log, with
// nothing personal in it (no externalUserId, no reason, no who), so it can be kept apart
// from the backups and outlive them. A backup restored with it is erased again where it
// is older than an erasure: each listed applicant whose restored log does not show it
// erased gets its applicantErased appended and its key destroyed before any node serves.

// LedgerEntry is one erasure of the ledger.
type LedgerEntry struct {
	Provider    string             `json:"provider"`
	App         domain.AppKey      `json:"app"`
	ApplicantID domain.ApplicantID `json:"applicantId"`
	At          time.Time          `json:"at"`  // when the erasure was made
	Seq         uint64             `json:"seq"` // its applicantErased in the origin's log
}

// ErasureIndex lists the applicants KYC_KEYS marks erased: *eventlog.Keyring.
type ErasureIndex interface {
	// ErasedApplicants lists them in tombstone order and says how many key messages it
	// read. Errors: KindUnavailable.
	ErasedApplicants(ctx context.Context) ([]eventlog.ErasedKey, int, error)
}

// ApplicantLog reads one applicant's events: *eventlog.EventLog.
type ApplicantLog interface {
	// Applicant returns the applicant's events in log order. Errors: KindInvalid for bad
	// ids, KindUnavailable.
	Applicant(ctx context.Context, app domain.AppKey, id domain.ApplicantID) ([]domain.Event, error)
}

// erasedEvent returns the applicant's first applicantErased, if its log holds one.
func erasedEvent(ctx context.Context, events ApplicantLog, app domain.AppKey, id domain.ApplicantID) (*domain.Event, error) {
	evs, err := events.Applicant(ctx, app, id)
	if err != nil {
		return nil, err
	}
	for i := range evs {
		// One whose MAC fails was not written by kycstate: it erased nothing.
		if evs[i].Type == domain.EventErased && evs[i].Origin == domain.OriginOperator && evs[i].Auth != domain.AuthFailed {
			return &evs[i], nil
		}
	}
	return nil, nil
}

// Ledger lists every erasure the log holds, in the order their tombstones were written.
// The ring is the index (every erasure writes its tombstone before its applicantErased),
// each applicant's own events give the time and sequence. An erasure begun but not yet in
// the log is not listed: it is not an erasure of the log until it is appended (and the
// node that began it finishes it). Errors: KindUnavailable.
func Ledger(ctx context.Context, index ErasureIndex, events ApplicantLog) ([]LedgerEntry, error) {
	erased, _, err := index.ErasedApplicants(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]LedgerEntry, 0, len(erased))
	for _, e := range erased {
		ev, err := erasedEvent(ctx, events, e.AppKey, e.ApplicantID)
		if err != nil {
			return nil, err
		}
		if ev == nil {
			continue
		}
		out = append(out, LedgerEntry{Provider: ev.Provider, App: ev.AppKey, ApplicantID: ev.ApplicantID,
			At: ev.EventAt.UTC(), Seq: ev.Seq})
	}
	return out, nil
}

// WriteLedger writes entries as JSON lines.
func WriteLedger(w io.Writer, entries []LedgerEntry) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadLedger reads a ledger WriteLedger wrote. Every line must be one entry with a valid
// app and applicant id; anything else is refused with its line number (KindInvalid), so
// a damaged ledger never restores with an erasure silently missing.
func ReadLedger(r io.Reader) ([]LedgerEntry, error) {
	const op = "erase.ReadLedger"
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var out []LedgerEntry
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var e LedgerEntry
		if err := dec.Decode(&e); err != nil {
			return nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("line %d: not a ledger entry: %v", line, err))
		}
		if dec.More() {
			return nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("line %d: more than one entry", line))
		}
		if !domain.IsCanonicalUUID(string(e.App)) || !domain.IsCanonicalUUID(string(e.ApplicantID)) {
			return nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("line %d: app and applicantId must be lower-case UUIDs", line))
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	return out, nil
}

// ByRestore is who an erasure made again after a restore says it was made by.
const ByRestore = "restore"

// RestoreReport says what EraseAfterRestore did.
type RestoreReport struct {
	Resumed   int // erasures under way in the backup, finished
	Ledger    int // ledger entries the restored log did not show erased, erased again
	Tombstone int // applicants KYC_KEYS marked erased without applicantErased in the log, erased
	Already   int // ledger entries the restored log already showed erased
}

// EraseAfterRestore makes a restored log as erased as its ledger and its own ring say:
// it finishes the erasures under way in the backup; erases again, by "restore" with a
// reason naming the ledger (ledgerName), each ledger entry whose applicant the restored
// log does not show erased; and erases each applicant the restored KYC_KEYS marks erased
// without an applicantErased in the restored log (backups of the two streams taken apart
// around an erasure). Each erasure appends applicantErased, then destroys the key.
// Errors: those of Erase; the first stops it (a repeat finds the done ones done).
func (e *Eraser) EraseAfterRestore(ctx context.Context, index ErasureIndex, events ApplicantLog, ledger []LedgerEntry, ledgerName string) (RestoreReport, error) {
	var rep RestoreReport
	n, err := e.ResumePending(ctx)
	rep.Resumed = n
	if err != nil {
		return rep, err
	}
	type ref struct {
		app domain.AppKey
		id  domain.ApplicantID
	}
	done := map[ref]bool{}
	for _, le := range ledger {
		r := ref{le.App, le.ApplicantID}
		if done[r] {
			continue
		}
		done[r] = true
		ev, err := erasedEvent(ctx, events, le.App, le.ApplicantID)
		if err != nil {
			return rep, err
		}
		if ev != nil {
			rep.Already++
			continue
		}
		reason := fmt.Sprintf("erasure ledger %s: erased at %s (seq %d of the log the ledger was written from); the restored backup is older",
			ledgerName, le.At.UTC().Format(time.RFC3339), le.Seq)
		if _, _, err := e.Erase(ctx, le.App, le.ApplicantID, ByRestore, reason); err != nil {
			return rep, err
		}
		rep.Ledger++
	}
	erased, _, err := index.ErasedApplicants(ctx)
	if err != nil {
		return rep, err
	}
	for _, k := range erased {
		r := ref{k.AppKey, k.ApplicantID}
		if done[r] || k.Pending {
			continue
		}
		done[r] = true
		ev, err := erasedEvent(ctx, events, k.AppKey, k.ApplicantID)
		if err != nil {
			return rep, err
		}
		if ev != nil {
			continue
		}
		reason := fmt.Sprintf("the restored %s marks it erased at %s and the restored log holds no applicantErased: the two streams were backed up apart",
			eventlog.KeyStream, k.At.UTC().Format(time.RFC3339))
		if _, _, err := e.Erase(ctx, k.AppKey, k.ApplicantID, ByRestore, reason); err != nil {
			return rep, err
		}
		rep.Tombstone++
	}
	e.log.Info("erasures applied after restore", zap.Int("resumed", rep.Resumed), zap.Int("ledger", rep.Ledger),
		zap.Int("tombstone", rep.Tombstone), zap.Int("already", rep.Already))
	return rep, nil
}
