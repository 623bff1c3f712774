// Package projection is the bbolt projection of the event log: one file holding each
// applicant's current state, its history records, the change feed, the anomalies and the
// indexes by externalUserId and by status, folded from the log by domain.Apply. It is the
// only package that imports bbolt; callers see domain types.
//
// The projection never reads the event log itself: Rebuild and Verify read any
// domain.EventSource, and the projector feeds Apply from the log.
package projection
