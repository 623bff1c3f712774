package domain

import (
	"errors"
	"time"
)

// Reject is a refused webhook, kept so that nothing is lost to a misconfigured key: the
// request as received, what it was answered, and who sent it. ingest fills it, the event
// log keeps it (KYC_REJECTS), `kycstate rejects reprocess` opens it again.
//
// How it is kept (Kept) follows what authenticated it (DESIGN.md section 15, "Rejects
// cannot be flooded away"). A webhook whose MAC or tag verified but that was still
// refused (an invalid payload, the log refusing the write) is kept whole, under the app
// and the applicant it names, so that junk cannot evict it and an erasure finds it. A
// request that no key authenticates is kept only as a rate-limited sample, its body cut
// to its first SampleBodyMax bytes (BodySize says how long it was), in a share of the
// stream of fixed size. Rejects kept before that split have Kept "" and are whole.
//
// Its JSON is the format the rejects stream stores and `rejects list --format jsonl`
// prints, so its field names stay as they are; Status and Headers are the webhook's
// HTTP answer and request headers because a webhook is an HTTP request.
type Reject struct {
	Seq        uint64            `json:"seq,omitempty"`
	App        string            `json:"app"`    // the {app} path segment, "" for the generic path
	Reason     string            `json:"reason"` // the error code answered
	Message    string            `json:"message"`
	Status     int               `json:"status"` // HTTP status answered
	Body       string            `json:"body"`
	Headers    map[string]string `json:"headers"` // the headers that matter (x-allpass-signature, content-type)
	RemoteAddr string            `json:"remoteAddr"`
	ReceivedAt time.Time         `json:"receivedAt"`

	// Kept is KeptAuthenticated, KeptSample, or "" for a reject kept before the split.
	Kept string `json:"kept,omitempty"`
	// Provider is the provider of the path the webhook came to (DESIGN.md section 13:
	// POST /webhooks/{provider}/{app}); "" is Allpass, as every reject kept before
	// other providers was. An authenticated reject also names the configured app whose
	// key verified it (AppKey) and the applicant its payload names (ApplicantID, ""
	// when it names no valid one).
	Provider    string      `json:"provider,omitempty"`
	AppKey      AppKey      `json:"appKey,omitempty"`
	ApplicantID ApplicantID `json:"applicantId,omitempty"`
	// BodySize is a sample's body length as received; Body holds at most its first
	// SampleBodyMax bytes.
	BodySize int `json:"bodySize,omitempty"`
}

// Values of Reject.Kept.
const (
	KeptAuthenticated = "authenticated"
	KeptSample        = "sample"
)

// SampleBodyMax is how much of a body a sample keeps: an Allpass webhook is smaller, so
// a sample of a genuine webhook refused under a misconfigured key is whole and can be
// reprocessed; junk costs at most this much.
const SampleBodyMax = 4 << 10

// ErrNoRoomForSample is why a sample is not kept when the rejects stream is nearly
// full: keeping it would drop the oldest reject, perhaps an authenticated one.
var ErrNoRoomForSample = errors.New("rejects stream nearly full: samples are not kept, so that they drop no authenticated reject")

// Truncated reports whether r is a sample whose body was cut: it cannot be reprocessed.
func (r Reject) Truncated() bool { return r.Kept == KeptSample && r.BodySize > len(r.Body) }
