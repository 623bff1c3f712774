// Snapshot keys: each projection snapshot is sealed under a random key of its own, kept
// in KYC_KEYS on kyc.keys.snapshot.<name> wrapped under keys.master as data keys are
// (keys rewrap covers it). Destroying the key erases the snapshot, wherever copies of its
// object went: that is how an erasure reaches the snapshots taken before it.

package eventlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

const (
	snapshotKeyPrefix = "kyc.keys.snapshot."
	kindSnapshot      = "snapshot"
)

func snapshotKeySubject(name string) (string, error) {
	if _, ok := SnapshotNameCheckpoint(name); !ok {
		return "", domain.E("eventlog.snapshotKey", domain.KindInvalid, fmt.Sprintf("%q is not a snapshot name", name))
	}
	return snapshotKeyPrefix + name, nil
}

// SealSnapshot makes the key of snapshot name, stores it wrapped in KYC_KEYS, and returns
// a writer that seals what is written to it into w; its Close writes the last chunk, and
// a snapshot not closed does not open. Errors: KindInvalid for a bad name; KindConflict
// when the name has a key already; KindUnavailable when KYC_KEYS does not answer.
func (k *Keyring) SealSnapshot(ctx context.Context, name string, w io.Writer) (io.WriteCloser, error) {
	const op = "eventlog.Keyring.SealSnapshot"
	subject, err := snapshotKeySubject(name)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	data, _ := json.Marshal(keyMsg{V: 1, Kind: kindSnapshot, ID: name, KeyID: k.current.id,
		Key: wrap(k.current, raw, subject), At: time.Now().UTC()})
	_, err = k.l.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data},
		jetstream.WithExpectStream(KeyStream), jetstream.WithExpectLastSequencePerSubject(0))
	if isWrongLastSeq(err) {
		return nil, domain.E(op, domain.KindConflict, fmt.Sprintf("snapshot %s has a key already", name))
	}
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, fmt.Errorf("store snapshot key: %w", err))
	}
	aead, err := newAEAD(raw)
	if err != nil {
		return nil, domain.E(op, domain.KindInternal, err)
	}
	return newSealWriter(aead, name, w), nil
}

// OpenSnapshot returns a reader of snapshot name's bytes, opened from r (its object).
// The reader fails, with KindInternal wrapping ErrSnapshotDamaged, on bytes that were
// cut short, reordered or altered, or sealed for another name. Errors: KindNotFound
// wrapping ErrNoKey when the snapshot's key is gone (destroyed by an erasure, or never
// stored); KindConflict when keys.master does not open it; KindUnavailable.
func (k *Keyring) OpenSnapshot(ctx context.Context, name string, r io.Reader) (io.Reader, error) {
	const op = "eventlog.Keyring.OpenSnapshot"
	subject, err := snapshotKeySubject(name)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, k.l.requestTimeout)
	msg, err := k.stream.GetLastMsgForSubject(rctx, subject)
	cancel()
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, domain.E(op, domain.KindNotFound, fmt.Errorf("snapshot %s: %w", name, ErrNoKey))
	}
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, fmt.Errorf("read snapshot key: %w", err))
	}
	var m keyMsg
	if err := json.Unmarshal(msg.Data, &m); err != nil || m.Kind != kindSnapshot {
		return nil, domain.E(op, domain.KindInternal, fmt.Sprintf("%s seq %d is not a snapshot key", KeyStream, msg.Sequence))
	}
	master, ok := k.masters[m.KeyID]
	if !ok {
		return nil, domain.E(op, domain.KindConflict, fmt.Sprintf(
			"snapshot %s's key is wrapped under master key id %s, which is neither keys.master (id %s) nor in keys.previous", name, m.KeyID, k.current.id))
	}
	raw, err := unwrap(master, m.Key, subject)
	if err != nil {
		return nil, domain.E(op, domain.KindConflict, fmt.Sprintf("%s seq %d does not unwrap under master key id %s", KeyStream, msg.Sequence, m.KeyID))
	}
	aead, err := newAEAD(raw)
	if err != nil {
		return nil, domain.E(op, domain.KindInternal, err)
	}
	return newOpenReader(aead, name, r), nil
}

// DestroySnapshotKey securely deletes the key of snapshot name (every message on its
// subject, overwritten in JetStream's files, not only marked deleted): from then on the
// snapshot opens nowhere. Destroying a key that is gone does nothing. Errors:
// KindUnavailable when a deletion is not confirmed.
func (k *Keyring) DestroySnapshotKey(ctx context.Context, name string) error {
	const op = "eventlog.Keyring.DestroySnapshotKey"
	subject, err := snapshotKeySubject(name)
	if err != nil {
		return err
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, k.l.requestTimeout)
		msg, err := k.stream.GetLastMsgForSubject(rctx, subject)
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return domain.E(op, domain.KindUnavailable, fmt.Errorf("find snapshot key: %w", err))
		}
		if _, err := secureDelete(ctx, k.stream, msg.Sequence, k.l.requestTimeout); err != nil {
			return domain.E(op, domain.KindUnavailable, fmt.Errorf("secure delete of %s seq %d: %w", KeyStream, msg.Sequence, err))
		}
		k.log.Info("snapshot key destroyed", zap.String("snapshot", name), zap.Uint64("keySeq", msg.Sequence))
	}
}

// SnapshotKeys lists the snapshots whose key KYC_KEYS holds, by name. Errors:
// KindUnavailable.
func (k *Keyring) SnapshotKeys(ctx context.Context) ([]string, error) {
	const op = "eventlog.Keyring.SnapshotKeys"
	rctx, cancel := context.WithTimeout(ctx, k.l.requestTimeout)
	defer cancel()
	si, err := k.stream.Info(rctx, jetstream.WithSubjectFilter(snapshotKeyPrefix+">"))
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, err)
	}
	names := make([]string, 0, len(si.State.Subjects))
	for subject := range si.State.Subjects {
		if name, ok := strings.CutPrefix(subject, snapshotKeyPrefix); ok {
			names = append(names, name)
		}
	}
	return names, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
