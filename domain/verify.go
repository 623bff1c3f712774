package domain

import "fmt"

// DifferenceKind says how the projection disagrees with the log.
type DifferenceKind string

const (
	DiffMissing    DifferenceKind = "missing"    // in the log, not in the projection
	DiffExtra      DifferenceKind = "extra"      // in the projection, not in the log
	DiffDigest     DifferenceKind = "digest"     // the digest chains differ
	DiffCount      DifferenceKind = "count"      // same digest, different event count or last seq
	DiffCheckpoint DifferenceKind = "checkpoint" // the projection claims sequences the log does not have
	// DiffUnauthenticated is an event of the log whose MAC under the log key fails
	// (AuthFailed): something other than kycstate wrote it (DESIGN.md section 15). The
	// projection may agree with the log, and verify still fails.
	DiffUnauthenticated DifferenceKind = "unauthenticated"
)

// VerifyDifference is one disagreement between the log and the projection.
type VerifyDifference struct {
	Kind        DifferenceKind `json:"kind"`
	ApplicantID ApplicantID    `json:"applicantId,omitempty"` // empty for DiffCheckpoint
	Log         string         `json:"log"`                   // what the log says
	Projection  string         `json:"projection"`            // what the projection holds
}

func (d VerifyDifference) String() string {
	if d.ApplicantID == "" {
		return fmt.Sprintf("%s: log %s, projection %s", d.Kind, d.Log, d.Projection)
	}
	return fmt.Sprintf("%s %s: log %s, projection %s", d.Kind, d.ApplicantID, d.Log, d.Projection)
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Checkpoint uint64 // the projection's checkpoint; the log was compared up to it
	LogLast    uint64 // the log's last sequence when Verify started
	Applicants int    // applicants in the log up to Checkpoint
	Events     uint64 // events in the log up to Checkpoint
	// Of Events, by their MAC (Event.Auth): signed by this log's key, unsigned (stored
	// before the log key was made: read as before) and unauthenticated (the MAC fails;
	// each is also a DiffUnauthenticated). Events the reader could not check (a log
	// opened without keys.master) are in none of the three.
	Signed, Unsigned, Unauthenticated uint64
	Differences                       []VerifyDifference
}

// Unchecked is how many of Events were read without a check of their MAC.
func (r VerifyResult) Unchecked() uint64 {
	return r.Events - min(r.Events, r.Signed+r.Unsigned+r.Unauthenticated)
}
