package eventlog

import (
	"context"
	"errors"
	"fmt"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// A standby (DESIGN.md section 14) is a second server whose KYC_EVENTS and KYC_KEYS are
// JetStream mirrors of the primary's, reached over a leafnode connection in another
// JetStream domain. What was found on nats-server 2.15 and is relied on here (the
// standby tests check each):
//
//   - A mirror copies messages, not deletions: a message the origin securely deletes
//     stays in the mirror's files, in clear. So a standby's query node destroys erased
//     applicants' keys in its own mirror (Keyring.ShredErased, Keyring.ShredApplicant).
//   - A mirror's messages can be deleted, securely too, and the mirror does not fetch
//     them again (it follows the origin from its own last sequence, across restarts).
//   - A mirror is promoted by updating its configuration: no mirror, the stream's own
//     subjects. The sequences stay, so every node's checkpoint stays valid.

// StandbyStreams are the streams a standby mirrors: the log and its keys. KYC_REJECTS is
// not mirrored: it holds refused bodies for days, and a standby takes no webhooks.
var StandbyStreams = []string{EventStream, KeyStream}

// MirrorConfig is the configuration of the mirror of stream on a standby, following the
// primary's stream in JetStream domain primaryDomain.
func MirrorConfig(cfg Config, stream, primaryDomain string) (jetstream.StreamConfig, error) {
	var sc jetstream.StreamConfig
	switch stream {
	case EventStream:
		sc = EventStreamConfig(cfg)
	case KeyStream:
		sc = KeyStreamConfig(cfg)
	default:
		return sc, domain.E("eventlog.MirrorConfig", domain.KindInvalid, fmt.Sprintf("%s is not mirrored to a standby", stream))
	}
	sc.Description = "kycstate standby: mirror of " + stream + " in JetStream domain " + primaryDomain
	// A mirror takes no subjects, keeps no duplicate window (it stores what the origin
	// stored) and takes no publishes, atomic or not.
	sc.Subjects, sc.Duplicates, sc.AllowAtomicPublish = nil, 0, false
	sc.Mirror = &jetstream.StreamSource{Name: stream, Domain: primaryDomain}
	return sc, nil
}

// CreateMirrors creates, on the server at c, the mirrors of KYC_EVENTS and KYC_KEYS of
// the primary in JetStream domain primaryDomain; a mirror already there is left as it
// is. Errors: KindConflict when the server has one of them as a stream of its own (it is
// a primary, or was promoted), KindInvalid or KindUnavailable as the server answers.
func CreateMirrors(ctx context.Context, c *Conn, cfg Config, primaryDomain string, log *zap.Logger) error {
	const op = "eventlog.CreateMirrors"
	if primaryDomain == "" {
		return domain.E(op, domain.KindInvalid, "the primary's JetStream domain is required")
	}
	cfg = cfg.withDefaults()
	for _, name := range StandbyStreams {
		want, err := MirrorConfig(cfg, name, primaryDomain)
		if err != nil {
			return err
		}
		s, err := c.JS.Stream(ctx, name)
		switch {
		case err == nil:
			if s.CachedInfo().Config.Mirror == nil {
				return domain.E(op, domain.KindConflict, fmt.Sprintf("this server has %s as a stream of its own, not a mirror: it is a primary", name))
			}
			continue
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return streamErr(op, name, err)
		}
		if _, err := c.JS.CreateStream(ctx, want); err != nil {
			return streamErr(op, name, err)
		}
		if log != nil {
			log.Info("mirror created", zap.String("stream", name), zap.String("primaryDomain", primaryDomain))
		}
	}
	return nil
}

// Promote turns the standby's mirrors into the streams of record, configured as a
// primary's (subjects, duplicate window, atomic batches), keeping every message and
// sequence. It returns the streams it promoted; a stream that is no mirror is left alone,
// so promoting twice is harmless. Errors: KindNotFound when the server lacks one of the
// streams, KindInvalid or KindUnavailable as the server answers.
func Promote(ctx context.Context, c *Conn, cfg Config) ([]string, error) {
	const op = "eventlog.Promote"
	cfg = cfg.withDefaults()
	var done []string
	for _, name := range StandbyStreams {
		s, err := c.JS.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return done, domain.E(op, domain.KindNotFound, fmt.Sprintf("this server has no %s", name))
		}
		if err != nil {
			return done, streamErr(op, name, err)
		}
		have := s.CachedInfo().Config
		if have.Mirror == nil {
			continue
		}
		want := EventStreamConfig(cfg)
		if name == KeyStream {
			want = KeyStreamConfig(cfg)
		}
		// Replicas and storage stay as the standby has them: they are the standby
		// server's, and storage cannot change in place.
		want.Replicas, want.Storage = have.Replicas, have.Storage
		if _, err := c.JS.UpdateStream(ctx, want); err != nil {
			return done, streamErr(op, name, err)
		}
		done = append(done, name)
	}
	return done, nil
}

// IsMirror reports whether the log's KYC_EVENTS is a mirror: the node reads a standby,
// which only the primary writes.
func (l *EventLog) IsMirror() bool {
	info := l.events.CachedInfo()
	return info != nil && info.Config.Mirror != nil
}
