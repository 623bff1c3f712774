package eventlog

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// KYC_REJECTS holds three kinds of subject (DESIGN.md section 15, "Rejects cannot be
// flooded away"):
//
//	kyc.rejects.auth.<provider>.<appKey>.<applicantId|none>  authenticated rejects, whole
//	kyc.rejects.unauth.<bucket>.<slot>                        samples of the rest
//	kyc.rejects.<reason>                                      rejects kept before the split
//
// Authenticated rejects name the app whose key verified them and the applicant their
// payload names (the token "none" when it names no valid one), so an erasure finds them
// by a subject filter. Samples live in a ring of SampleBuckets x slots subjects, each
// holding one message: every sample is published with a subject rollup, which drops the
// message it replaces. The ring has as many slots a bucket as fit a quarter of the
// stream's size bound (nats.rejects_max_bytes) at MaxSampleBytes a sample, at most
// MaxSampleSlots: so junk, whatever its volume, occupies at most a quarter of the stream
// (SampleShareBytes), and the stream's bound (oldest dropped first) keeps the rest for
// authenticated rejects. The ring is not a stream-wide MaxMsgsPerSubject: that limit
// would also cap one applicant's rejects, and, applied to an existing stream, cut the
// subjects written before the split, each of which holds every reject of one reason.
const (
	rejectPrefix = "kyc.rejects."
	authToken    = "auth"
	unauthToken  = "unauth"
	// NoApplicant is the applicant token of an authenticated reject whose payload names
	// no valid applicant id.
	NoApplicant = "none"
	// SampleBuckets and MaxSampleSlots shape the sample ring: a source address hashes
	// (with a key of this process) to a bucket, and its samples take the bucket's slots
	// in turn, so a source sending junk overwrites its own bucket's samples first.
	SampleBuckets  = 16
	MaxSampleSlots = 64
	// MaxSampleBytes bounds one stored sample (its JSON). ingest cuts a sample's body to
	// domain.SampleBodyMax and each of its (at most five) headers to a few hundred bytes,
	// which JSON escaping may grow six-fold; the body is stored base64, so escaping
	// cannot grow it. A sample over the bound is refused.
	MaxSampleBytes = 16 << 10
	maxProviderLen = 32
)

// sampleSlots is the ring's slots a bucket for a stream bounded at maxBytes: a quarter
// of it, at least one slot.
func sampleSlots(maxBytes int64) int {
	return int(min(max(maxBytes/4/(SampleBuckets*MaxSampleBytes), 1), MaxSampleSlots))
}

// SampleShareBytes bounds the samples' share of KYC_REJECTS (messages' payloads; each
// also has its subject and the rollup header, under 64 bytes): at most a quarter of the
// stream's size bound, or one sample a bucket for a very small stream.
func (l *EventLog) SampleShareBytes() int64 {
	return int64(SampleBuckets) * int64(l.samples.slots) * MaxSampleBytes
}

// storedReject is a Reject as KYC_REJECTS holds it. JSON strings are UTF-8, and a
// refused body may be any bytes; such a body, and every sample's, travels base64-encoded
// in BodyBase64 so it comes back byte for byte.
type storedReject struct {
	domain.Reject
	BodyBase64 string `json:"bodyBase64,omitempty"`
}

// RejectPlace is what a KYC_REJECTS subject says of the reject on it.
type RejectPlace struct {
	Kept        string             // domain.KeptAuthenticated, domain.KeptSample, or "" (before the split)
	Provider    string             // authenticated
	AppKey      domain.AppKey      // authenticated
	ApplicantID domain.ApplicantID // authenticated; "" for the token none
	Bucket      int                // sample
	Slot        int                // sample
	Reason      string             // before the split: the reason token
}

// Subject returns the subject of the reject at p. Errors: KindInvalid when a field
// would not make a valid token (an Allpass id not a lower-case UUID, another provider's
// not a subject token, a provider not [a-z0-9],
// a bucket or slot out of range, a reason not [a-z0-9_]).
func (p RejectPlace) Subject() (string, error) {
	const op = "eventlog.RejectPlace.Subject"
	switch p.Kept {
	case domain.KeptAuthenticated:
		if !validProvider(p.Provider) {
			return "", domain.E(op, domain.KindInvalid, "provider is not 1 to 32 of [a-z0-9]")
		}
		// Allpass's app and applicant are lower-case UUIDs; another provider's (DESIGN.md
		// section 13) are its app's name and its own id, subject tokens both, as in
		// kyc.events.<provider>.<app>.<id>.
		valid, what := domain.IsCanonicalUUID, "a lower-case UUID"
		if p.Provider != string(domain.ProviderAllpass) {
			valid, what = domain.IsSubjectToken, "1 to 64 of A-Z, a-z, 0-9, '_' and '-'"
		}
		if !valid(string(p.AppKey)) {
			return "", domain.E(op, domain.KindInvalid, "appKey is not "+what)
		}
		id := NoApplicant
		if p.ApplicantID != "" {
			if !valid(string(p.ApplicantID)) {
				return "", domain.E(op, domain.KindInvalid, "applicantId is not "+what)
			}
			id = string(p.ApplicantID)
		}
		return rejectPrefix + authToken + "." + p.Provider + "." + string(p.AppKey) + "." + id, nil
	case domain.KeptSample:
		if p.Bucket < 0 || p.Bucket >= SampleBuckets || p.Slot < 0 || p.Slot >= MaxSampleSlots {
			return "", domain.E(op, domain.KindInvalid, "sample bucket or slot out of range")
		}
		return rejectPrefix + unauthToken + "." + strconv.Itoa(p.Bucket) + "." + strconv.Itoa(p.Slot), nil
	case "":
		if !validReason(p.Reason) || p.Reason == authToken || p.Reason == unauthToken {
			return "", domain.E(op, domain.KindInvalid, "reason is not 1 to 64 of [a-z0-9_], or names a kind of reject")
		}
		return rejectPrefix + p.Reason, nil
	}
	return "", domain.E(op, domain.KindInvalid, "unknown kind of reject "+strconv.Quote(p.Kept))
}

// ParseRejectSubject reads a KYC_REJECTS subject. It accepts exactly what
// RejectPlace.Subject makes, and nothing else: KindInvalid otherwise.
func ParseRejectSubject(subject string) (RejectPlace, error) {
	const op = "eventlog.ParseRejectSubject"
	bad := func(why string) (RejectPlace, error) {
		return RejectPlace{}, domain.E(op, domain.KindInvalid, "reject subject "+why)
	}
	rest, ok := strings.CutPrefix(subject, rejectPrefix)
	if !ok {
		return bad("does not start with " + rejectPrefix)
	}
	tokens := strings.Split(rest, ".")
	var p RejectPlace
	switch {
	case len(tokens) == 1:
		p.Reason = tokens[0]
	case len(tokens) == 4 && tokens[0] == authToken:
		p.Kept, p.Provider, p.AppKey = domain.KeptAuthenticated, tokens[1], domain.AppKey(tokens[2])
		if tokens[3] != NoApplicant {
			p.ApplicantID = domain.ApplicantID(tokens[3])
		}
	case len(tokens) == 3 && tokens[0] == unauthToken:
		p.Kept = domain.KeptSample
		var err1, err2 error
		p.Bucket, err1 = strconv.Atoi(tokens[1])
		p.Slot, err2 = strconv.Atoi(tokens[2])
		if err1 != nil || err2 != nil {
			return bad("has a sample bucket or slot that is not a number")
		}
	default:
		return bad("has an unknown shape")
	}
	// The one form: Subject must give the subject back (no leading zeros, no "none" as
	// an id, no case variant).
	if s, err := p.Subject(); err != nil || s != subject {
		return bad("is not in its canonical form")
	}
	return p, nil
}

func validProvider(s string) bool {
	if s == "" || len(s) > maxProviderLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

const maxReasonLen = 64

func validReason(s string) bool {
	if s == "" || len(s) > maxReasonLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// sampleRing chooses where the next sample goes. The hash key is random per process, so
// no sender can choose addresses that land on the bucket of another.
type sampleRing struct {
	seed  maphash.Seed
	slots int
	next  [SampleBuckets]atomic.Uint32
}

func newSampleRing(slots int) *sampleRing { return &sampleRing{seed: maphash.MakeSeed(), slots: slots} }

// place is the next slot of the bucket of remoteAddr's host.
func (s *sampleRing) place(remoteAddr string) RejectPlace {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	b := int(maphash.String(s.seed, host) % SampleBuckets)
	slot := int((s.next[b].Add(1) - 1) % uint32(s.slots))
	return RejectPlace{Kept: domain.KeptSample, Bucket: b, Slot: slot}
}

// Reject keeps r in KYC_REJECTS: an authenticated reject (r.Kept KeptAuthenticated,
// with its Provider, AppKey and ApplicantID) whole on its applicant's subject; a sample
// (KeptSample) in the sample ring, replacing the sample in its slot.
//
// r.Seq is ignored (the stream assigns it). Errors: KindInvalid for a reject that says
// neither, or whose ids are not lower-case UUIDs; KindTooLarge for a sample over
// MaxSampleBytes or a reject over the server's maximum payload; KindUnavailable when
// the stream does not confirm before ctx's deadline (the caller's, as for Append), or
// when the stream does not allow rollups (an existing stream that could not be updated:
// samples are then not kept, see Open); domain.ErrNoRoomForSample (KindUnavailable) when a
// sample would take room an authenticated reject may need (roomForSample).
// KYC_REJECTS is size-bounded with Discard Old: keeping a new authenticated reject may
// drop the oldest; keeping a sample never does.
func (l *EventLog) Reject(ctx context.Context, r domain.Reject) error {
	const op = "eventlog.EventLog.Reject"
	r.Seq = 0
	var place RejectPlace
	var hdr nats.Header
	switch r.Kept {
	case domain.KeptAuthenticated:
		place = RejectPlace{Kept: r.Kept, Provider: r.Provider, AppKey: r.AppKey, ApplicantID: r.ApplicantID}
	case domain.KeptSample:
		if !l.rollup {
			return domain.E(op, domain.KindUnavailable, RejectStream+" does not allow rollups; samples are not kept")
		}
		if err := l.roomForSample(ctx); err != nil {
			return err
		}
		place = l.samples.place(r.RemoteAddr)
		hdr = nats.Header{jetstream.MsgRollup: []string{jetstream.MsgRollupSubject}}
	default:
		return domain.E(op, domain.KindInvalid, "a reject is kept either authenticated or as a sample")
	}
	subject, err := place.Subject()
	if err != nil {
		return domain.E(op, domain.KindInvalid, err)
	}
	sr := storedReject{Reject: r}
	if r.Kept == domain.KeptSample || !utf8.ValidString(r.Body) {
		sr.Body, sr.BodyBase64 = "", base64.StdEncoding.EncodeToString([]byte(r.Body))
	}
	data, err := json.Marshal(sr)
	if err != nil {
		return domain.E(op, domain.KindInternal, err)
	}
	if r.Kept == domain.KeptSample && len(data) > MaxSampleBytes {
		return domain.E(op, domain.KindTooLarge,
			fmt.Sprintf("sample of %d bytes exceeds %d", len(data), MaxSampleBytes))
	}
	if max := l.conn.NC.MaxPayload(); max > 0 && int64(len(data)) > max {
		return domain.E(op, domain.KindTooLarge,
			fmt.Sprintf("reject of %d bytes exceeds the server's maximum payload %d", len(data), max))
	}
	ack, err := l.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: hdr, Data: data},
		jetstream.WithExpectStream(RejectStream))
	if err != nil {
		return publishErr(op, err)
	}
	if ack.Stream != RejectStream {
		return domain.E(op, domain.KindInternal,
			fmt.Sprintf("acknowledged by stream %q, not %s", ack.Stream, RejectStream))
	}
	return nil
}

// roomForSample returns nil when KYC_REJECTS has room for a sample: its bytes stay
// sampleHeadroom under its bound. A sample replaces the one in its slot, but JetStream
// stores the new message, enforcing the size bound (dropping the oldest message, of any
// kind), before the rollup removes the old one: in a full stream every sample would drop
// the oldest reject, however small the ring's share. So a sample is kept only while the
// stream is not near its bound; the headroom absorbs what other writers add between
// this look and the publish. Errors: KindUnavailable, wrapping domain.ErrNoRoomForSample
// when there is no room.
func (l *EventLog) roomForSample(ctx context.Context) error {
	const op = "eventlog.EventLog.Reject"
	rctx, cancel := context.WithTimeout(ctx, l.requestTimeout)
	defer cancel()
	info, err := l.rejects.Info(rctx)
	if err != nil {
		return domain.E(op, domain.KindUnavailable, fmt.Errorf("stream info of %s: %w", RejectStream, err))
	}
	if maxBytes := info.Config.MaxBytes; maxBytes > 0 && int64(info.State.Bytes)+sampleHeadroom(maxBytes) > maxBytes {
		return domain.E(op, domain.KindUnavailable, domain.ErrNoRoomForSample)
	}
	return nil
}

// sampleHeadroom is the room KYC_REJECTS bounded at maxBytes must have left for a
// sample to be kept: an eighth of it, and at least two samples a bucket of the ring.
func sampleHeadroom(maxBytes int64) int64 {
	return max(maxBytes/8, 2*SampleBuckets*MaxSampleBytes)
}

// Rejects calls fn for each kept reject in order, starting at sequence from: the
// authenticated ones, the samples (Kept says which) and those kept before the split.
//
// It reads up to the last reject at the time of the call; rejects dropped by the size
// bound, replaced in the sample ring or deleted by an erasure are simply absent
// (sequences jump). fn's error is returned as it is; otherwise ctx.Err(), KindInternal
// for a message that is not a reject, KindUnavailable when the stream stops answering.
func (l *EventLog) Rejects(ctx context.Context, from uint64, fn func(domain.Reject) error) error {
	const op = "eventlog.EventLog.Rejects"
	last, err := lastSeq(ctx, op, l.rejects)
	if err != nil {
		return err
	}
	from = max(from, 1)
	if from > last {
		return nil
	}
	return scan(ctx, l, span{
		op: op, stream: l.rejects, from: from, until: last, maxBatch: 256, prefetch: 256,
	}, bySeq(decodeReject), func(rs []domain.Reject) error {
		for _, r := range rs {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
}

func decodeReject(seq uint64, data []byte) (domain.Reject, error) {
	const op = "eventlog.decodeReject"
	var sr storedReject
	if err := json.Unmarshal(data, &sr); err != nil {
		return domain.Reject{}, domain.E(op, domain.KindInternal, fmt.Errorf("reject seq %d: %w", seq, err))
	}
	if sr.BodyBase64 != "" {
		body, err := base64.StdEncoding.DecodeString(sr.BodyBase64)
		if err != nil {
			return domain.Reject{}, domain.E(op, domain.KindInternal, fmt.Errorf("reject seq %d body: %w", seq, err))
		}
		sr.Body = string(body)
	}
	sr.Seq = seq
	return sr.Reject, nil
}

// DeleteRejects securely deletes every authenticated reject kept for the applicant (app,
// id), of any provider: JetStream overwrites each message in its file rather than only
// marking it deleted, so the refused body (readable with the app's key) leaves no bytes
// behind. It returns how many it deleted, and is idempotent: erasure repeats it until
// done.
//
// Rejects kept before the split (kyc.rejects.<reason>) do not name their applicant, and
// samples were authenticated by no key: neither is found here. Both leave with the
// stream's age bound (nats.rejects_max_age). Errors: KindInvalid for ids that are not
// lower-case UUIDs, KindUnavailable when the stream does not answer or confirm.
func (l *EventLog) DeleteRejects(ctx context.Context, app domain.AppKey, id domain.ApplicantID) (int, error) {
	const op = "eventlog.EventLog.DeleteRejects"
	if !domain.IsCanonicalUUID(string(app)) || !domain.IsCanonicalUUID(string(id)) {
		return 0, domain.E(op, domain.KindInvalid, "appKey and applicantId must be lower-case UUIDs")
	}
	return l.deleteRejects(ctx, rejectPrefix+authToken+".*."+string(app)+"."+string(id), id)
}

// DeleteProviderRejects is DeleteRejects for an applicant of provider p: the rejects
// kept under kyc.rejects's authenticated subject of that provider, app and id (an
// Allpass applicant's as DeleteRejects finds them). Errors: KindInvalid when the three
// make no reject subject; KindUnavailable.
func (l *EventLog) DeleteProviderRejects(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID) (int, error) {
	const op = "eventlog.EventLog.DeleteRejects"
	p = domain.ProviderOf(string(p))
	if p == domain.ProviderAllpass {
		return l.DeleteRejects(ctx, app, id)
	}
	if id == "" {
		return 0, domain.E(op, domain.KindInvalid, "an applicant's rejects need its id")
	}
	filter, err := RejectPlace{Kept: domain.KeptAuthenticated, Provider: string(p), AppKey: app, ApplicantID: id}.Subject()
	if err != nil {
		return 0, domain.E(op, domain.KindInvalid, err)
	}
	return l.deleteRejects(ctx, filter, id)
}

func (l *EventLog) deleteRejects(ctx context.Context, filter string, id domain.ApplicantID) (int, error) {
	const op = "eventlog.EventLog.DeleteRejects"
	n := 0
	for seq := uint64(1); ; {
		rctx, cancel := context.WithTimeout(ctx, l.requestTimeout)
		msg, err := l.rejects.GetMsg(rctx, seq, jetstream.WithGetMsgSubject(filter))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, nil
		}
		if err != nil {
			return n, domain.E(op, domain.KindUnavailable, fmt.Errorf("find rejects: %w", err))
		}
		seq = msg.Sequence + 1
		gone, err := secureDelete(ctx, l.rejects, msg.Sequence, l.requestTimeout)
		if gone {
			continue // dropped by the size or age bound meanwhile
		}
		if err != nil {
			return n, domain.E(op, domain.KindUnavailable, fmt.Errorf("secure delete of %s seq %d: %w", RejectStream, msg.Sequence, err))
		}
		n++
		l.log.Info("reject of an erased applicant deleted", zap.String("applicantId", string(id)),
			zap.Uint64("rejectSeq", msg.Sequence))
	}
}
