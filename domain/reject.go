package domain

import "time"

// Reject is a refused webhook, kept so that nothing is lost to a misconfigured key: the
// request as received, what it was answered, and who sent it. ingest fills it, the event
// log keeps it (KYC_REJECTS), `kycstate rejects reprocess` opens it again.
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

	// Provider is the provider of the path the webhook came to (DESIGN.md section 13:
	// POST /webhooks/{provider}/{app}); "" is Allpass, as every reject kept before
	// other providers was.
	Provider string `json:"provider,omitempty"`
}
