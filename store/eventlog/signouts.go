package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// SignOuts are the console sessions signed out, shared by every query node through a
// JetStream key-value bucket: a session cookie signed out on one node stops working on
// all of them (the cookies are signed statelessly, so each node would otherwise go on
// accepting a copied cookie until it expires). An entry names a session id and when the
// session would have expired; the bucket forgets entries after SignOutMaxAge.
type SignOuts struct {
	kv jetstream.KeyValue
}

// SignOutBucket is the key-value bucket of signed-out console sessions.
const SignOutBucket = "KYC_SIGNOUTS"

// SignOutMaxAge is how long the bucket keeps a sign-out: longer than any console session
// lasts (8 hours by default), so a session is never accepted again before it expires.
const SignOutMaxAge = 24 * time.Hour

// OpenSignOuts creates or opens the sign-out bucket with the log's replicas. Errors:
// KindInvalid without a connection, KindUnavailable.
func OpenSignOuts(ctx context.Context, c *Conn, replicas int) (*SignOuts, error) {
	const op = "eventlog.OpenSignOuts"
	if c == nil || c.JS == nil {
		return nil, domain.E(op, domain.KindInvalid, "no NATS connection")
	}
	kv, err := openBucket(ctx, c, jetstream.KeyValueConfig{
		Bucket: SignOutBucket, Description: "kycstate console sessions signed out, until they would have expired",
		History: 1, TTL: SignOutMaxAge, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	})
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, err)
	}
	return &SignOuts{kv: kv}, nil
}

// SignOut records that session id is signed out; expires is when it would have expired.
// Errors: KindInvalid for an id that is not a key ([-_=a-zA-Z0-9], at most 128
// characters), KindUnavailable when the bucket does not answer.
func (s *SignOuts) SignOut(ctx context.Context, id string, expires time.Time) error {
	const op = "eventlog.SignOuts.SignOut"
	if !validSessionID(id) {
		return domain.E(op, domain.KindInvalid, "session id is not a key")
	}
	if _, err := s.kv.Put(ctx, id, expires.UTC().AppendFormat(nil, time.RFC3339)); err != nil {
		return domain.E(op, domain.KindUnavailable, fmt.Errorf("bucket %s: %w", SignOutBucket, err))
	}
	return nil
}

// SignedOut reports whether session id was signed out (on any node) and would not have
// expired by now. An id that is not a key was never signed out. Errors: KindUnavailable.
func (s *SignOuts) SignedOut(ctx context.Context, id string, now time.Time) (bool, error) {
	const op = "eventlog.SignOuts.SignedOut"
	if !validSessionID(id) {
		return false, nil
	}
	e, err := s.kv.Get(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, domain.E(op, domain.KindUnavailable, fmt.Errorf("bucket %s: %w", SignOutBucket, err))
	}
	expires, err := time.Parse(time.RFC3339, string(e.Value()))
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
