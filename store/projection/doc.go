// Package projection is the bbolt projection of the event log: one file holding each
// applicant's current state, its history records, the change feed, the anomalies and the
// indexes by externalUserId and by status, folded from the log by domain.Apply. It is the
// only package that imports bbolt; callers see domain types.
//
// The projection never reads the event log itself: Rebuild and Verify read any
// domain.EventSource, and the projector feeds Apply from the log.
//
// What it guarantees:
//
//   - A batch is one bbolt write transaction with the checkpoint inside it. Checkpoint
//     advances, and WaitFor's waiters wake, only after that transaction has committed;
//     events at or below the checkpoint are skipped, so a batch replayed after a crash
//     applies nothing twice.
//   - The stored encoding is deterministic, so Apply batch by batch and a bulk Rebuild
//     store the same keys and values, and Verify compares digests folded afresh with the
//     file's.
//   - SchemaVersion covers every format the file stores. A file of a newer version is
//     refused as written by a newer kycstate, one older than this build reads with a word
//     to rebuild, and a damaged one (bbolt's panics included) as corrupted: an error of
//     its kind, never a panic, and after a fault in bbolt no further access to the file.
//   - Reads return copies and never block Apply. The file holds no key: a sealed
//     externalUserId is found by its blind index, which the caller computes.
package projection
