package ingest

import (
	"strconv"

	"github.com/kycstate/kycstate/domain"
)

// Stable codes of the refusals ingest makes itself; the wire format's own
// (allpass.CodeMalformedEnvelope and its siblings) come with its errors, and a failure of
// the log is answered with its kind's code (internal/httperr: unavailable, internal). They
// go into {"error":{"code":...}}, the rejects stream and the reject metrics, and never
// change meaning.
const (
	// CodeUnknownApp: no configured app matches the request's {app}. 404.
	CodeUnknownApp = "unknown_app"
	// CodeBodyTooLarge: the body is over the limit, or the event it makes is over the
	// log's message limit. 413.
	CodeBodyTooLarge = "body_too_large"
	// CodeMethodNotAllowed: a webhook path asked with a method other than POST. 405.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeNoRoute: no such path. 404.
	CodeNoRoute = "not_found"
	// CodeBusy: the in-flight limit was reached and no slot freed within the queue wait,
	// or the server is shutting down; retry. 503.
	CodeBusy = "busy"
	// CodeBodyUnreadable: the body broke off or could not be read. 400.
	CodeBodyUnreadable = "body_unreadable"
	// CodeBodyTooSlow: the body did not arrive within ingest.read_timeout, or fell below
	// the minimum rate (1 KiB/s after the first second). 400.
	CodeBodyTooSlow = "body_too_slow"
)

// Errors the handler itself produces. errMethod is answered 405 (refuse), which is HTTP's
// routing answer rather than an error kind.
var (
	errMethod  = domain.Public(opWebhook, domain.KindInvalid, CodeMethodNotAllowed, "method not allowed")
	errNoRoute = domain.Public(opWebhook, domain.KindNotFound, CodeNoRoute, "no such path")
	errNoApp   = domain.Public(opWebhook, domain.KindNotFound, CodeUnknownApp, "no app is configured under that name or appKey")
	// A provider kycstate does not know makes an unknown path, as for any other path.
	errNoProvider = domain.Public(opWebhook, domain.KindNotFound, CodeNoRoute,
		"no such path: the provider is not one of allpass, sumsub, persona, veriff, onfido")
	errBusy     = domain.Public(opWebhook, domain.KindUnavailable, CodeBusy, "too many requests in flight; retry later")
	errReadBody = domain.Public(opWebhook, domain.KindInvalid, CodeBodyUnreadable, "the request body could not be read")
	errTooSlow  = domain.Public(opWebhook, domain.KindInvalid, CodeBodyTooSlow,
		"the request body did not arrive within the read timeout at the minimum rate of 1 KiB/s")
)

const opWebhook = "ingest.webhook"

func errTooLarge(limit int64) error {
	return domain.Public(opWebhook, domain.KindTooLarge, CodeBodyTooLarge,
		"body over the limit of "+strconv.FormatInt(limit, 10)+" bytes")
}

// errAppend classifies a failed append. An error the log could not classify is one it
// could not confirm: KindUnavailable (503, retry), never a claim of success. A stored
// message over the server's payload limit stays KindTooLarge (413). Anything else (the
// log refusing ids that Open accepted, a conflict) is a broken invariant: 500.
func errAppend(err error) error {
	const op = "ingest.append"
	switch domain.KindOf(err) {
	case domain.KindOther, domain.KindUnavailable:
		return &domain.Error{Op: op, Kind: domain.KindUnavailable, Err: err,
			Message: "the event log did not confirm the write; retry later (a retry of the same webhook is never stored twice)"}
	case domain.KindTooLarge:
		return &domain.Error{Op: op, Code: CodeBodyTooLarge, Err: err,
			Message: "the event would exceed the log's message size limit"}
	}
	return domain.E(op, domain.KindInternal, err)
}
