// Package eventlog is kycstate's event log and everything else it keeps in JetStream:
// KYC_EVENTS (every accepted webhook and operator event, the source of truth),
// KYC_REJECTS (refused webhooks, kept for reprocessing), KYC_KEYS (the data-key ring that
// seals personal data, and the keys of projection snapshots), KYC_SIGNOUTS (console
// sessions signed out), KYC_SNAPSHOTS (projection snapshots, each sealed under a key of
// its own) and the leases of periodic jobs. It is the only package that builds JetStream streams or buckets; callers
// see domain types. EventLog implements domain.EventSource, which projection.Rebuild and
// projection.Verify read.
//
// What it guarantees:
//
//   - Append returns a sequence only once the stream has acknowledged the event, so a
//     caller that answers after it (ingest's 200) never claims a write the stream lacks;
//     the same message id inside the duplicate window is stored once and answers with
//     the original.
//   - KYC_EVENTS loses nothing to a limit (no age, size or count limit, Discard New), nor
//     does KYC_KEYS: a key dropped by a limit would be an erasure no one asked for. An
//     existing stream's settings that differ from the configuration are logged and left
//     as they are, except KYC_REJECTS's age limit and KYC_EVENTS's atomic batches.
//   - Read, Follow and Applicant deliver in stream order without gaps or repeats, across
//     reconnects; on failure what was delivered is a clean prefix.
//   - The stored event is written byte for byte as DESIGN.md section 3 says, the payload
//     verbatim; its fast decoder and encoding/json read it alike.
//   - With master keys, personal fields are stored only sealed under the applicant's own
//     data key, bound to the event's clear fields. An erasure is recorded as pending
//     before its key is destroyed, so one a crash interrupted is found and finished, and
//     no key is ever made again for an erased applicant.
//   - A snapshot is stored only sealed, under a key of its own in KYC_KEYS; once that
//     key is destroyed no copy of the snapshot opens. A snapshot object becomes visible
//     only once every chunk of it is stored.
package eventlog
