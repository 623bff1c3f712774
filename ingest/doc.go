// Package ingest turns Allpass webhooks, and those of the other providers (DESIGN.md
// section 13: Sumsub, Persona, Veriff, Onfido, each opened by its own pure adapter in
// ingest/<provider> through the registry of providers.go), into events on the event log,
// and is the only writer of webhooks to it.
//
// Its job: answer each webhook with 200 only once the log has acknowledged the event
// (a duplicate the log recognises is a 200 too), refuse everything else with a JSON error
// whose code is stable and whose message names the problem without a key, a signature or
// plaintext, and keep the refused requests it read (except a body over the limit) in the
// rejects stream, so that a misconfigured key loses nothing: Reprocess re-opens them once
// the keys are fixed. A refusal a key authenticated is kept whole under its applicant; one
// no key authenticated only as a rate-limited, truncated sample, so junk cannot evict the
// others.
//
// Invariants:
//   - Never 200 without the log's acknowledgement; a write the log cannot confirm is 503
//     with Retry-After, and a retry of the same delivery is stored once (its Nats-Msg-Id).
//   - The MAC or tag is verified before anything is decrypted (another provider's
//     signature before its body is parsed), and the whole body is read before anything
//     acts on it (the wire formats, ingest/allpass and ingest/<provider>, do the checks;
//     they import no HTTP and no NATS).
//   - Appends that arrive while a write is in flight are group-committed: one write for
//     the batch, each webhook answered from that write's acknowledgement.
//   - Admission before work: a body is read whole, under a timeout and a minimum rate,
//     before its request takes an in-flight slot, and connections per source address are
//     capped (Listener); a slow sender costs its own connection, never a slot.
//   - Requests in flight are bounded; past the bound a request waits a bounded time for a
//     slot before it is answered 503, and refusing costs less than serving.
//   - What belongs to a request (its size, its payload) is answered to that request; only
//     the log's own failures count against readiness.
package ingest
