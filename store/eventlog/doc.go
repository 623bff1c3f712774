// Package eventlog is kycstate's event log: the JetStream streams KYC_EVENTS (every
// accepted webhook, the source of truth) and KYC_REJECTS (refused webhooks, kept for
// reprocessing). It is the only package that builds JetStream streams; callers see
// domain types.
//
//	conn.go     the connection: an embedded nats-server or an external NATS, one code path
//	stream.go   the streams' configuration, created idempotently, differences logged
//	append.go   Append: one stored event, answered once the stream has acknowledged it
//	scan.go     Read, Follow and Applicant over one ordered-consumer scanner
//	rejects.go  the rejects stream
//	codec.go    the stored event's encoder and its fast decoder, encoding/json the fallback
//
// EventLog implements domain.EventSource, which projection.Rebuild and projection.Verify
// read.
package eventlog
