package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SignOuts are the console sessions signed out, shared by every query node through the
// stream KYC_SIGNOUTS: a session cookie signed out on one node stops working on all of
// them (the cookies are signed statelessly, so each node would otherwise go on accepting
// a copied cookie until it expires). A message on kyc.signouts.<session id> says when the
// session would have expired; the stream forgets it after SignOutMaxAge.
type SignOuts struct {
	stream jetstream.Stream
	js     jetstream.JetStream
}

// The stream of signed-out console sessions.
const (
	SignOutStream   = "KYC_SIGNOUTS"
	SignOutSubjects = "kyc.signouts.>"
)

// SignOutMaxAge is how long a sign-out is kept: longer than any console session lasts
// (8 hours by default), so a session is never accepted again before it expires.
const SignOutMaxAge = 24 * time.Hour

// SignOutStreamConfig is KYC_SIGNOUTS: file storage, replicated like KYC_EVENTS, the last
// message of each session kept for SignOutMaxAge. Direct gets are off, as for KYC_KEYS:
// every read goes to the stream leader and sees the latest sign-out, where a direct get
// may be answered by a replica still catching up (after a node's restart, say) that has
// not got it yet.
func SignOutStreamConfig(cfg Config) jetstream.StreamConfig {
	cfg = cfg.withDefaults()
	return jetstream.StreamConfig{
		Name:              SignOutStream,
		Description:       "kycstate console sessions signed out, until they would have expired",
		Subjects:          []string{SignOutSubjects},
		Retention:         jetstream.LimitsPolicy,
		MaxConsumers:      -1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            SignOutMaxAge,
		MaxMsgsPerSubject: 1,
		MaxMsgSize:        -1,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		Duplicates:        2 * time.Minute,
		AllowDirect:       false,
	}
}

// OpenSignOuts creates or opens KYC_SIGNOUTS beside l's streams. Errors: KindUnavailable.
func OpenSignOuts(ctx context.Context, l *EventLog) (*SignOuts, error) {
	s, err := l.ensureStream(ctx, "eventlog.OpenSignOuts", SignOutStreamConfig(l.cfg))
	if err != nil {
		return nil, err
	}
	return &SignOuts{stream: s, js: l.js}, nil
}

// SignOut records that session id is signed out; expires is when it would have expired.
// Errors: KindInvalid for an id that is not a subject token ([-_=a-zA-Z0-9], at most 128
// characters), KindUnavailable when the stream does not confirm it.
func (s *SignOuts) SignOut(ctx context.Context, id string, expires time.Time) error {
	const op = "eventlog.SignOuts.SignOut"
	if !validSessionID(id) {
		return domain.E(op, domain.KindInvalid, "session id is not a subject token")
	}
	msg := &nats.Msg{Subject: "kyc.signouts." + id, Data: expires.UTC().AppendFormat(nil, time.RFC3339)}
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(SignOutStream)); err != nil {
		return domain.E(op, domain.KindUnavailable, fmt.Errorf("%s: %w", SignOutStream, err))
	}
	return nil
}

// SignedOut reports whether session id was signed out (on any node) and would not have
// expired by now. An id that is not a subject token was never signed out. Errors:
// KindUnavailable.
func (s *SignOuts) SignedOut(ctx context.Context, id string, now time.Time) (bool, error) {
	const op = "eventlog.SignOuts.SignedOut"
	if !validSessionID(id) {
		return false, nil
	}
	m, err := s.stream.GetLastMsgForSubject(ctx, "kyc.signouts."+id)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, domain.E(op, domain.KindUnavailable, fmt.Errorf("%s: %w", SignOutStream, err))
	}
	expires, err := time.Parse(time.RFC3339, string(m.Data))
	if err != nil {
		return true, nil // unreadable: keep it signed out
	}
	return now.Before(expires), nil
}

func validSessionID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '=':
		default:
			return false
		}
	}
	return true
}
